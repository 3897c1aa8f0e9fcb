"""The summary's cost and wait figures, from the job records a real FirecREST v2 server gives."""

from __future__ import annotations

import pytest

from ci_runner.github import render_summary
from ci_runner.result import judge


def record(real, key):
    return real[key]["body"]["jobs"][0]


def row(text: str, name: str) -> str:
    return next(line for line in text.splitlines() if line.startswith(f"| {name} |"))


def test_elapsed_node_hours_and_queue_wait_from_a_real_record(real_responses):
    info = record(real_responses, "info_final_ok")
    start = info["time"]["start"]
    outcome = judge("c", "10", info, working_dir="/w", output_path=None, submitted_at=start - 75)
    assert (outcome.nodes, outcome.elapsed, outcome.queue_wait) == (1, 4.0, 75.0)
    assert outcome.node_hours == pytest.approx(4 / 3600)
    text = render_summary(outcome, "")
    assert row(text, "Elapsed") == "| Elapsed | 00:00:04 |"
    assert row(text, "Node-hours") == "| Node-hours | 0.0011 (1 node \u00d7 00:00:04) |"
    assert row(text, "Queue wait") == "| Queue wait | 00:01:15 |"


def test_nodes_multiply_the_elapsed_time(real_responses):
    info = {**record(real_responses, "info_final_ok"), "allocationNodes": 16}
    info["time"] = {**info["time"], "elapsed": 5400}
    outcome = judge("c", "10", info, working_dir="/w", output_path=None)
    assert (
        row(render_summary(outcome, ""), "Node-hours") == "| Node-hours | 24.00 (16 nodes \u00d7 01:30:00) |"
    )


@pytest.mark.parametrize("submission", [1000, {"set": True, "infinite": False, "number": 1000}])
def test_a_submission_time_in_the_record_wins_over_the_runners_clock(submission):
    info = {
        "status": {"state": "COMPLETED", "exitCode": 0},
        "time": {"submission": submission, "start": 1090},
    }
    outcome = judge("c", "1", info, working_dir="/w", output_path=None, submitted_at=1080)
    assert outcome.queue_wait == 90.0


def test_a_job_that_never_started_has_no_queue_wait(real_responses):
    info = record(real_responses, "info_immediately")
    assert info["time"]["start"] is None
    outcome = judge("c", "10", info, working_dir="/w", output_path=None, submitted_at=1.0)
    assert outcome.queue_wait is None
    assert row(render_summary(outcome, ""), "Queue wait") == "| Queue wait | \u2013 |"


def test_clock_skew_never_makes_the_wait_negative(real_responses):
    info = record(real_responses, "info_final_ok")
    outcome = judge(
        "c", "10", info, working_dir="/w", output_path=None, submitted_at=info["time"]["start"] + 2
    )
    assert outcome.queue_wait == 0.0


@pytest.mark.parametrize(
    "info",
    [
        {"status": {"state": "COMPLETED", "exitCode": 0}},
        {"status": {"state": "COMPLETED", "exitCode": 0}, "time": None, "nodes": "nid[001-004]"},
        {
            "status": {"state": "FAILED", "exitCode": "x"},
            "time": {"elapsed": "soon", "start": "later", "submission": {"set": False, "number": 0}},
            "allocationNodes": "2",
            "nodes": True,
        },
    ],
)
def test_missing_or_odd_values_show_a_dash_and_never_crash(info):
    outcome = judge("c", "1", info, working_dir="/w", output_path=None, submitted_at=None)
    text = render_summary(outcome, "")
    for name in ("Elapsed", "Node-hours", "Queue wait"):
        assert row(text, name) == f"| {name} | \u2013 |", name
