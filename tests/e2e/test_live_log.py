"""The live log on the sandbox: big logs, read errors, a separate stderr, the end marker, the order."""

from __future__ import annotations

import re
import threading
from pathlib import Path

import pytest

from tests.e2e.conftest import run_action, run_command, start_cli

#: 6,000,000 bytes of 100-byte lines: over the real server's 5 MiB output buffer, so one read gets a 413.
SIX_MB = "head -c 6000000 /dev/zero | tr '\\0' x | fold -w 99"
SKIPPED = re.compile(r"^--- firecrest-ci: \d+\.\d MB skipped; the whole file is \S+ ---$", re.M)


def test_6_mb_then_a_failure_line_shows_the_failure_in_the_log_and_the_summary(sandbox, workspace):
    run = run_action(
        sandbox, workspace, system="cluster", command=f"{SIX_MB}; echo 'FAILURE: solver diverged'; exit 2"
    )
    assert run.returncode == 1
    assert SKIPPED.search(run.stdout)
    assert "FAILURE: solver diverged" in run.stdout
    assert "FAILURE: solver diverged" in run.summary
    assert run.stdout.index("FAILURE: solver diverged") < run.stdout.index("is FAILED")


@pytest.mark.slow
def test_12_mb_written_over_seconds_shows_a_skip_note_and_the_last_line(sandbox, workspace):
    done = run_command(sandbox, f"{SIX_MB}; sleep 2; {SIX_MB}; sleep 2; echo 'the last line'", cwd=workspace)
    assert done.returncode == 0, done.stderr
    assert len(SKIPPED.findall(done.stdout)) >= 1
    assert done.stdout.rstrip().endswith("the last line")
    assert len(done.stdout) < 8_000_000  # the middle was skipped, not printed


def test_a_failed_log_read_does_not_stop_streaming(sandbox, workspace):
    proc = start_cli(sandbox, "echo before; sleep 3; echo after", workspace)
    out: list[str] = []
    err: list[str] = []
    readers = [
        threading.Thread(target=lambda: out.extend(iter(proc.stdout.readline, "")), daemon=True),
        threading.Thread(target=lambda: err.extend(iter(proc.stderr.readline, "")), daemon=True),
    ]
    for reader in readers:
        reader.start()
    try:
        assert sandbox.wait_for(lambda: "before\n" in out, 20), (out, err)
        sandbox.configure(unhealthy={"cluster": {"filesystem": "storage is down"}})
        assert sandbox.wait_for(lambda: any("cannot read" in line for line in err), 10), err
        sandbox.configure(unhealthy={})
        proc.wait(timeout=30)
    finally:
        sandbox.configure(unhealthy={})
        if proc.poll() is None:
            proc.kill()
    for reader in readers:
        reader.join(timeout=5)
    assert proc.returncode == 0, "".join(err)
    assert out == ["before\n", "after\n"]
    assert sum("cannot read" in line for line in err) == 1


def test_a_separate_stderr_file_is_in_the_live_log_and_the_summary(sandbox, workspace):
    (workspace / "job.sh").write_text(
        "#!/bin/bash\n#SBATCH --error=err.txt\n"
        "echo on stdout\nsleep 1\necho 'Traceback: on stderr' >&2\nexit 1\n"
    )
    run = run_action(sandbox, workspace, system="cluster", script="job.sh")
    assert run.returncode == 1
    assert "on stdout" in run.stdout
    assert re.search(r"^==> \S+/err\.txt <==\nTraceback: on stderr$", run.stdout, re.M)
    assert "Traceback: on stderr" in run.summary
    assert run.stdout.index("Traceback: on stderr") < run.stdout.index("is FAILED")


def test_the_last_lines_come_before_the_final_state(sandbox, workspace):
    run = run_action(
        sandbox, workspace, system="cluster", command="echo first; sleep 1; echo the-very-last-line"
    )
    assert run.returncode == 0, run.stdout
    assert run.stdout.index("the-very-last-line") < run.stdout.index("is COMPLETED")


def test_the_end_marker_is_never_shown_and_a_forged_one_does_not_end_following(sandbox, workspace):
    forged = "firecrest-ci-end-" + "0" * 32
    done = run_command(
        sandbox, f"echo {forged}; sleep 1; echo still here", "--cleanup", "never", cwd=workspace
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"{forged}\nstill here\n"
    job = sandbox.jobs_named()[-1]
    raw = Path(job["standardOutput"]).read_text()
    markers = re.findall(r"^firecrest-ci-end-[0-9a-f]{32}$", raw, re.M)
    assert markers[0] == forged and len(markers) == 2  # the script's own marker was written, and hidden
    assert markers[1] not in done.stdout + done.stderr


def test_the_final_state_is_the_schedulers_even_after_the_real_marker(sandbox, workspace):
    # The job reads its own batch script to print the run's real marker early, then fails.
    early = "grep -o 'firecrest-ci-end-[0-9a-f]*' \"$0\" | head -1; sleep 1; echo after the marker; exit 3"
    done = run_command(sandbox, early, cwd=workspace)
    assert done.returncode == 1
    assert "FAILED with exit code 3" in done.stderr
    assert done.stdout == "after the marker\n"
