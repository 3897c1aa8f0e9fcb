"""The `ci-runner run` CLI against the sandbox: each lifecycle step for real."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

from tests.e2e.conftest import SECRET, run_cli, run_command, running_jobs, start_cli


def test_a_passing_job_streams_its_log_and_exits_zero(sandbox, workspace):
    done = run_command(
        sandbox,
        "echo hello from $SLURM_JOB_NAME; echo to-stderr >&2; echo FOO=$FOO",
        "--env",
        "FOO=bar",
        cwd=workspace,
    )
    assert done.returncode == 0, done.stderr
    assert "hello from fci-" in done.stdout
    assert "to-stderr" in done.stdout  # default output merges stderr, as on Slurm
    assert "FOO=bar" in done.stdout
    assert "COMPLETED with exit code 0" in done.stderr
    jobs = sandbox.jobs_named()
    assert len(jobs) == 1


def test_exit_3_fails_with_exit_code_1_and_names_the_code(sandbox, workspace):
    done = run_command(sandbox, "exit 3", cwd=workspace)
    assert done.returncode == 1
    assert "FAILED with exit code 3" in done.stderr


def test_slurm_time_limit_gives_timeout_and_fails(sandbox, workspace):
    (workspace / "job.sh").write_text("#!/bin/bash\n#SBATCH --time=0:01\necho started\nsleep 30\n")
    done = run_cli(sandbox, "--system", "cluster", "--staging", "none", "--script", "job.sh", cwd=workspace)
    assert done.returncode == 1
    assert "TIMEOUT" in done.stderr
    assert "started" in done.stdout


def test_sbatch_output_is_honoured_and_streamed(sandbox, workspace):
    (workspace / "job.sh").write_text("#!/bin/bash\n#SBATCH --output=custom-%j.log\necho custom line\n")
    done = run_cli(
        sandbox,
        "--system",
        "cluster",
        "--staging",
        "none",
        "--script",
        "job.sh",
        "--cleanup",
        "never",
        cwd=workspace,
    )
    assert done.returncode == 0, done.stderr
    assert "custom line" in done.stdout
    job = sandbox.jobs_named()[-1]
    raw = Path(job["workingDirectory"], f"custom-{job['jobId']}.log").read_text()
    assert re.fullmatch(r"custom line\nfirecrest-ci-end-[0-9a-f]{32}\n", raw)  # the end marker, never shown


def test_unhealthy_system_is_named_and_nothing_is_submitted(sandbox, workspace):
    sandbox.configure(unhealthy={"cluster": {"scheduler": "slurmctld is down"}})
    done = run_command(sandbox, "true", cwd=workspace)
    assert done.returncode == 3
    assert "system cluster is not available: scheduler is unhealthy" in done.stderr
    assert "slurmctld is down" in done.stderr
    assert sandbox.jobs_named() == []


def test_unknown_system_lists_the_known_ones(sandbox, workspace):
    done = run_cli(sandbox, "--system", "nope", "--staging", "none", "--command", "true", cwd=workspace)
    assert done.returncode == 2
    assert "known systems: cluster, daint" in done.stderr
    assert "Traceback" not in done.stderr


def test_sigint_cancels_the_job_quickly(sandbox, workspace):
    proc = start_cli(sandbox, "echo running; sleep 120", workspace)
    try:
        running = running_jobs(sandbox)
        assert running, "the job never started"
        job_id = running[0]["jobId"]
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=10)
        cancelled = sandbox.wait_for(
            lambda: [
                j
                for j in sandbox.jobs_named()
                if j["jobId"] == job_id and str(j.get("state", "")).startswith("CANCELLED by ")
            ],
            timeout=5,
        )
        elapsed = time.monotonic() - sent
        print(f"SIGINT to CANCELLED: {elapsed:.2f} s")
    finally:
        if proc.poll() is None:
            proc.kill()
    stderr = proc.stderr.read() if proc.stderr else ""
    assert cancelled, f"job {job_id} not cancelled: {sandbox.jobs_named()}"
    assert elapsed < 5
    assert proc.returncode == 130
    assert f"cancelled job {job_id}" in stderr


def test_sigterm_cancels_too(sandbox, workspace):
    proc = start_cli(sandbox, "sleep 120", workspace)
    try:
        assert running_jobs(sandbox)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143
    assert sandbox.wait_for(
        lambda: all(str(j["state"]).startswith("CANCELLED") for j in sandbox.jobs_named()), 5
    )


def test_runner_timeout_cancels_the_job(sandbox, workspace):
    done = run_command(
        sandbox,
        "echo begun; sleep 60",
        "--timeout",
        "2s",
        cwd=workspace,
    )
    assert done.returncode == 1
    assert "exceeded the runner timeout of 00:00:02 and was cancelled" in done.stderr
    assert sandbox.wait_for(lambda: str(sandbox.jobs_named()[0]["state"]).startswith("CANCELLED"), 5)


def test_pending_timeout_cancels_a_job_that_never_starts(sandbox, workspace):
    sandbox.configure(pending_seconds=60)
    done = run_command(
        sandbox,
        "true",
        "--pending-timeout",
        "1s",
        cwd=workspace,
    )
    assert done.returncode == 1
    assert "still pending after 00:00:01 and was cancelled" in done.stderr
    assert sandbox.wait_for(lambda: str(sandbox.jobs_named()[0]["state"]).startswith("CANCELLED"), 5)


def test_a_job_invisible_for_a_while_is_still_followed(sandbox, workspace):
    sandbox.configure(job_invisible_seconds=2)
    done = run_command(sandbox, "echo seen", cwd=workspace)
    assert done.returncode == 0, done.stderr
    assert "seen" in done.stdout


def test_faults_never_make_two_jobs_or_a_false_pass(sandbox, workspace):
    sandbox.configure(fault_5xx_rate=0.3, fault_429_rate=0.3, fault_seed=20261125)
    passing = run_command(sandbox, "echo ok; sleep 1", cwd=workspace)
    failing = run_command(sandbox, "echo bad; exit 4", cwd=workspace)
    faults = sandbox.stats()
    sandbox.configure(fault_5xx_rate=0.0, fault_429_rate=0.0)
    assert passing.returncode == 0, passing.stderr
    assert failing.returncode == 1, failing.stderr
    assert "exit code 4" in failing.stderr
    names = [j["name"] for j in sandbox.jobs_named()]
    assert len(names) == 2 and len(set(names)) == 2, names
    assert "retrying" in passing.stdout + passing.stderr + failing.stderr
    assert faults  # the sandbox did inject faults (counted in its stats)


def test_git_staging_runs_the_exact_commit(sandbox, workspace, tmp_path):
    origin = tmp_path / "origin"
    origin.mkdir()
    git = ["git", "-C", str(origin), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q", "-b", "main"], check=True)
    (origin / "version.txt").write_text("first\n")
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "first"], check=True)
    sha = subprocess.run(
        [*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    (origin / "version.txt").write_text("second\n")
    subprocess.run([*git, "commit", "-qam", "second"], check=True)
    done = run_cli(
        sandbox,
        "--system",
        "cluster",
        "--staging",
        "git",
        "--repo-url",
        str(origin),
        "--sha",
        sha,
        "--command",
        "cat version.txt",
        cwd=workspace,
    )
    assert done.returncode == 0, done.stderr
    assert "first" in done.stdout and "second" not in done.stdout


def test_upload_staging_and_artifacts_round_trip(sandbox, workspace, tmp_path):
    (workspace / "data.txt").write_text("payload\n")
    (workspace / "job.sh").write_text(
        "#!/bin/bash\nmkdir -p results/deep\ncp data.txt results/out.txt\necho x > results/deep/y.dat\n"
    )
    artifacts = tmp_path / "artifacts"
    done = run_cli(
        sandbox,
        "--system",
        "cluster",
        "--staging",
        "upload",
        "--script",
        "job.sh",
        "--artifacts",
        "results/*.txt",
        "--artifacts",
        "results/**/*.dat",
        "--artifacts-dir",
        str(artifacts),
        cwd=workspace,
    )
    assert done.returncode == 0, done.stderr
    assert (artifacts / "results" / "out.txt").read_text() == "payload\n"
    assert (artifacts / "results" / "deep" / "y.dat").read_text() == "x\n"


def test_upload_over_the_limit_of_a_server_without_transfers_is_refused_before_submitting(sandbox, workspace):
    sandbox.configure(data_transfer=None)
    (workspace / "big.bin").write_bytes(os.urandom(6 * 1024 * 1024))
    done = run_cli(sandbox, "--system", "cluster", "--staging", "upload", "--command", "true", cwd=workspace)
    assert done.returncode == 2
    assert (
        "the workspace archive is more than 5.0 MiB: this FirecREST server moves at most 5.0 MiB directly, "
        "and it has no staged-transfer backend for larger files (its dataOperation.data_transfer is null), "
        "so upload staging cannot work; use staging 'git'"
    ) in done.stderr
    assert [j for j in sandbox.jobs() if j["jobId"] not in sandbox.earlier] == []  # not even a transfer job


def test_cleanup_removes_only_the_per_run_directory_after_success(sandbox, workspace):
    done = run_command(sandbox, "pwd", cwd=workspace)
    assert done.returncode == 0, done.stderr
    workdir = Path(sandbox.jobs_named()[0]["workingDirectory"])
    assert "/firecrest-ci/local/workspace/" in str(workdir)
    assert not workdir.exists()
    assert workdir.parent.exists()
    failed = run_command(sandbox, "exit 1", cwd=workspace)
    assert failed.returncode == 1
    assert Path(sandbox.jobs_named()[-1]["workingDirectory"]).exists()


def test_missing_credentials_are_named(sandbox, workspace):
    done = run_command(
        sandbox,
        "true",
        cwd=workspace,
        FIRECREST_CLIENT_SECRET="",
        AUTH_TOKEN_URL="",
    )
    assert done.returncode == 2
    assert "AUTH_TOKEN_URL, FIRECREST_CLIENT_SECRET" in done.stderr


def test_wrong_secret_is_a_configuration_error_without_the_secret(sandbox, workspace):
    wrong = "wrong-secret-value-xyz"
    done = run_command(
        sandbox,
        "true",
        cwd=workspace,
        FIRECREST_CLIENT_SECRET=wrong,
    )
    assert done.returncode == 2
    assert "refused the client credentials" in done.stderr
    assert wrong not in done.stdout + done.stderr
    assert SECRET not in done.stdout + done.stderr


def test_unreachable_firecrest_is_infrastructure(sandbox, workspace):
    done = run_command(
        sandbox,
        "true",
        cwd=workspace,
        FIRECREST_URL="http://127.0.0.1:9",
        FIRECREST_CI_RETRY_TIMEOUT="2",
    )
    assert done.returncode == 3
    assert "unreachable" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_refused_token_is_renewed_and_the_run_goes_on(sandbox, workspace):
    proc = start_cli(sandbox, "echo before; sleep 2; echo after", workspace)
    try:
        assert running_jobs(sandbox)
        issued = len(sandbox.tokens())
        sandbox.client.post("/_sandbox/tokens/revoke").raise_for_status()  # the server forgets every token
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "before" in out and "after" in out
    assert "refused the token (Access token is invalid.); fetching a new one" in err
    assert issued >= 1 and len(sandbox.tokens()) >= 1


def test_cancelling_a_finished_job_counts_as_done(sandbox, workspace):
    from ci_runner.client import Credentials, Gateway
    from ci_runner.redact import Redactor
    from ci_runner.report import Reporter
    from ci_runner.runner import cancel

    done = run_command(sandbox, "true", cwd=workspace)
    assert done.returncode == 0
    job_id = sandbox.jobs_named()[-1]["jobId"]
    gateway = Gateway(Credentials.from_values(sandbox.env), request_timeout=5, retry_timeout=10)
    import io

    err = io.StringIO()
    cancel(gateway, "cluster", job_id, Reporter(Redactor(), out=io.StringIO(), err=err))
    assert f"job {job_id} was already over" in err.getvalue()
    assert "already completing or completed" in err.getvalue()
