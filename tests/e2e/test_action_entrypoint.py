"""The Action's exact container entrypoint, with the environment GitHub gives a Docker action."""

from __future__ import annotations

import re
import signal
import subprocess
import time

from tests.e2e.conftest import SECRET, action_env, entrypoint_command, post_entrypoint_command, run_action

INJECTION = r"""
echo '::add-mask::hello'
echo '::error::injected error'
echo '::set-output name=job_id::999'
echo '::endgroup::'
echo '::stop-commands::guess'
echo '::guess::'
echo '::warning::still inert'
echo done
"""


def test_pass_writes_outputs_summary_and_state(sandbox, workspace):
    run = run_action(sandbox, workspace, system="cluster", command="echo hello action")
    assert run.returncode == 0, run.stdout + run.stderr
    outputs = run.outputs()
    assert outputs["state"] == "COMPLETED"
    assert outputs["exit_code"] == "0"
    assert outputs["job_id"] == sandbox.jobs_named()[-1]["jobId"]
    assert outputs["output_path"].endswith(f"slurm-{outputs['job_id']}.out")
    assert "/fireuser/firecrest-ci/octo-org/hpc-code/4242-1-" in outputs["working_dir"]
    assert "| State | COMPLETED |" in run.summary
    assert "hello action" in run.summary
    assert run.state() == {"job_id": outputs["job_id"], "system": "cluster", "job_finished": "true"}
    assert "::group::" in run.stdout and "::endgroup::" in run.stdout


def test_exit_3_fails_the_step_with_exit_code_output(sandbox, workspace):
    run = run_action(sandbox, workspace, system="cluster", command="echo failing; exit 3")
    assert run.returncode == 1
    assert run.outputs()["exit_code"] == "3"
    assert run.outputs()["state"] == "FAILED"
    assert re.search(r"^::error title=firecrest-ci::job \d+ FAILED with exit code 3", run.stdout, re.M)


def test_timeout_fails_the_step(sandbox, workspace):
    (workspace / "t.sh").write_text("#!/bin/bash\n#SBATCH --time=0:01\nsleep 30\n")
    run = run_action(sandbox, workspace, system="cluster", script="t.sh")
    assert run.returncode == 1
    assert run.outputs()["state"] == "TIMEOUT"
    assert run.outputs()["exit_code"] == "0"


def test_job_log_cannot_inject_workflow_commands(sandbox, workspace):
    run = run_action(sandbox, workspace, system="cluster", command=INJECTION)
    assert run.returncode == 0, run.stdout + run.stderr
    lines = run.stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("::stop-commands::"))
    token = lines[start].removeprefix("::stop-commands::")
    end = lines.index(f"::{token}::")
    inside = lines[start + 1 : end]
    for needle in ("::add-mask::hello", "::error::injected error", "::endgroup::", "::warning::still inert"):
        assert inside.count(needle) == 1, needle
    for needle in ("::add-mask::hello", "::error::injected error", "::warning::still inert"):
        assert lines.count(needle) == 1, needle  # never outside the stopped block
    assert lines[end + 1] == "::endgroup::"  # only the runner's own group end is live
    assert token not in "\n".join(inside)
    assert run.outputs()["job_id"] != "999"


def test_secrets_never_reach_output_or_github_files(sandbox, workspace):
    run = run_action(sandbox, workspace, system="cluster", command="echo fine; env | sort")
    failed = run_action(sandbox, workspace, system="cluster", command="exit 2")
    refused = run_action(
        sandbox, workspace, system="cluster", command="true", client_secret="wrong-" + SECRET
    )
    tokens = sandbox.tokens()
    assert tokens
    for one in (run, failed, refused):
        # The one allowed exception: the ::add-mask:: line that tells GitHub to hide a token.
        stdout = "\n".join(line for line in one.stdout.splitlines() if not line.startswith("::add-mask::"))
        texts = [stdout, one.stderr] + [p.read_text() for p in one.files.values()]
        for text in texts:
            assert SECRET not in text
            for token in tokens:
                assert token not in text
    assert refused.returncode == 2
    masks = [line for line in run.stdout.splitlines() if line.startswith("::add-mask::")]
    assert len(masks) >= 1  # the runtime-derived access token is masked...
    token = masks[0].removeprefix("::add-mask::")
    body = run.stdout.replace(masks[0], "")
    assert token not in body  # ...and printed nowhere else
    for path in run.files.values():
        assert token not in path.read_text()


def test_sigint_cancels_and_post_step_has_nothing_left(sandbox, workspace):
    env, files = action_env(sandbox, workspace, {"system": "cluster", "command": "sleep 120"})
    proc = subprocess.Popen(entrypoint_command(), cwd=workspace, env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert sandbox.wait_for(lambda: [j for j in sandbox.jobs_named() if j["state"] == "RUNNING"], 20)
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=10)
        assert sandbox.wait_for(lambda: str(sandbox.jobs_named()[-1]["state"]).startswith("CANCELLED by "), 5)
        assert time.monotonic() - sent < 5
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130
    state = dict(line.split("=", 1) for line in files["GITHUB_STATE"].read_text().splitlines())
    assert state["job_finished"] == "true"


def test_post_entrypoint_cancels_a_job_left_running(sandbox, workspace):
    env, files = action_env(sandbox, workspace, {"system": "cluster", "command": "sleep 120"})
    proc = subprocess.Popen(entrypoint_command(), cwd=workspace, env=env, stdout=subprocess.DEVNULL)
    try:
        running = sandbox.wait_for(lambda: [j for j in sandbox.jobs_named() if j["state"] == "RUNNING"], 20)
        assert running
    finally:
        proc.kill()  # the runner killed the container: no chance to cancel
        proc.wait()
    state = dict(line.split("=", 1) for line in files["GITHUB_STATE"].read_text().splitlines())
    assert "job_finished" not in state
    post_env = dict(env)
    post_env.update({f"STATE_{k}": v for k, v in state.items()})
    done = subprocess.run(post_entrypoint_command(), env=post_env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stdout + done.stderr
    assert sandbox.wait_for(lambda: str(sandbox.jobs_named()[-1]["state"]).startswith("CANCELLED by "), 5)
    assert f"cancelled job {running[0]['jobId']}" in done.stdout


def test_post_entrypoint_does_nothing_after_a_finished_run(sandbox, workspace):
    run = run_action(sandbox, workspace, system="cluster", command="true")
    env, _ = action_env(sandbox, workspace, {"system": "cluster"})
    env.update({f"STATE_{k}": v for k, v in run.state().items()})
    done = subprocess.run(post_entrypoint_command(), env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0
    assert done.stdout == ""


def test_bad_inputs_fail_fast_with_an_annotation(sandbox, workspace):
    run = run_action(sandbox, workspace, system="cluster", command="true", staging="ftp")
    assert run.returncode == 2
    assert "::error title=firecrest-ci::staging 'ftp' is not one of: git, upload, none" in run.stdout
    assert sandbox.jobs_named() == []
