from ci_runner.result import judge


def body(real, key):
    return real[key]["body"]["jobs"][0]


def test_completed_with_zero_passes(real_responses):
    outcome = judge("c", "10", body(real_responses, "info_final_ok"), working_dir="/w", output_path=None)
    assert outcome.passed
    assert outcome.reason == "job 10 COMPLETED with exit code 0 after 00:00:04"


def test_exit_3_fails_with_its_code(real_responses):
    outcome = judge("c", "11", body(real_responses, "info_final_fail"), working_dir="/w", output_path=None)
    assert not outcome.passed
    assert outcome.exit_code == 3
    assert outcome.reason == "job 11 FAILED with exit code 3 after 00:00:00"


def test_timeout_with_exit_code_zero_still_fails(real_responses):
    info = body(real_responses, "info_final_timeout")
    assert info["status"]["exitCode"] == 0
    outcome = judge("c", "12", info, working_dir="/w", output_path=None)
    assert not outcome.passed
    assert outcome.reason == "job 12 TIMEOUT after 00:01:09"


def test_cancelled_by_uid_fails(real_responses):
    outcome = judge("c", "13", body(real_responses, "info_final_cancel"), working_dir="/w", output_path=None)
    assert not outcome.passed
    assert outcome.state == "CANCELLED by 1001"


def test_a_runner_stop_overrides_a_completed_state(real_responses):
    outcome = judge(
        "c",
        "10",
        body(real_responses, "info_final_ok"),
        working_dir="/w",
        output_path=None,
        stopped_by_runner="job 10 exceeded the runner timeout",
    )
    assert not outcome.passed
    assert outcome.reason == "job 10 exceeded the runner timeout"


def test_staging_failure_is_named():
    info = {"status": {"state": "FAILED", "exitCode": 97}, "time": {"elapsed": 1}}
    outcome = judge("c", "5", info, working_dir="/w", output_path=None)
    assert "staging failed" in outcome.reason
