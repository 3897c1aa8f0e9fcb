"""Files above the direct-transfer limit, through the real CLI: staged through the sandbox's S3 stand-in."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time

from tests.e2e.conftest import run_cli, runner_env

MIB = 1024 * 1024


def test_an_8_mib_incompressible_workspace_is_uploaded_and_checked_by_sha256_on_the_hpc_side(
    sandbox, workspace
):
    payload = os.urandom(8 * MIB)
    (workspace / "big.bin").write_bytes(payload)
    (workspace / "job.sh").write_text("#!/bin/bash\nsha256sum big.bin\n")
    done = run_cli(sandbox, "--system", "cluster", "--staging", "upload", "--script", "job.sh", cwd=workspace)
    assert done.returncode == 0, done.stderr
    assert f"{hashlib.sha256(payload).hexdigest()}  big.bin" in done.stdout
    assert "goes through the staging area, job" in done.stderr
    names = [job["name"] for job in sandbox.jobs() if job["jobId"] not in sandbox.earlier]
    assert names[0] == "IngressFileTransfer" and names[1].startswith("fci-")


def test_an_8_mib_artifact_comes_back_intact(sandbox, workspace, tmp_path):
    artifacts = tmp_path / "artifacts"
    done = run_cli(
        sandbox,
        "--system",
        "cluster",
        "--staging",
        "none",
        "--command",
        "mkdir -p out && head -c 8388608 /dev/urandom > out/big.bin && sha256sum out/big.bin",
        "--artifacts",
        "out/*.bin",
        "--artifacts-dir",
        str(artifacts),
        cwd=workspace,
    )
    assert done.returncode == 0, done.stderr
    copied = (artifacts / "out" / "big.bin").read_bytes()
    assert len(copied) == 8 * MIB
    assert f"{hashlib.sha256(copied).hexdigest()}  out/big.bin" in done.stdout
    assert "copied 1 of 1 matching artifact(s)" in done.stderr


def test_an_artifact_above_the_limit_on_a_server_without_transfers_is_named(sandbox, workspace, tmp_path):
    sandbox.configure(data_transfer=None)
    done = run_cli(
        sandbox,
        "--system",
        "cluster",
        "--staging",
        "none",
        "--command",
        "head -c 4000000 /dev/urandom > big.bin",
        "--artifacts",
        "*.bin",
        "--artifacts-dir",
        str(tmp_path / "artifacts"),
        cwd=workspace,
    )
    assert done.returncode == 0, done.stderr
    assert "artifact not copied: big.bin (3.8 MiB: this FirecREST server moves at most 3.7 MiB" in done.stderr
    assert "(its dataOperation.data_transfer is null)" in done.stderr
    assert "none of the 1 matching artifact(s) could be copied" in done.stderr
    assert "no artifact matched" not in done.stderr


def test_sigint_cancels_a_staged_upload_in_flight(sandbox, workspace):
    (workspace / "big.bin").write_bytes(os.urandom(6 * MIB))
    sandbox.configure(pending_seconds=60)  # the transfer job waits in the queue
    sandbox.client.post("/_sandbox/stats/reset")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ci_runner",
            "run",
            "--system",
            "cluster",
            "--staging",
            "upload",
            "--command",
            "true",
        ],
        cwd=workspace,
        env=runner_env(sandbox),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        polled = sandbox.wait_for(
            lambda: sandbox.stats()["requests"].get("GET /compute/{system}/jobs/{job_id}"), timeout=30
        )
        assert polled, "the runner never waited for a transfer job"
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=10)
        elapsed = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
    stderr = proc.stderr.read() if proc.stderr else ""
    jobs = [job for job in sandbox.jobs() if job["jobId"] not in sandbox.earlier]
    assert [(job["name"], job["state"].split(" ")[0]) for job in jobs] == [
        ("IngressFileTransfer", "CANCELLED")
    ]
    assert proc.returncode == 130, stderr
    assert f"cancelled transfer job {jobs[0]['jobId']}" in stderr
    assert elapsed < 5
