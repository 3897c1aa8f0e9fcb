"""Issue 9 §3: exactly one HPC job per run, under faults that create a job and lose the answer.

The sandbox lists a new job only after a few seconds (as job info did before
FirecREST 2.5.1) and shows Slurm's placeholder record for jobs that ended
within a second, so every way of missing a created job is in play.
"""

from __future__ import annotations

import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tests.e2e.conftest import run_command

RUNS = 16
PARALLEL = 4


def script_submit_faults(sandbox, *labels: str) -> None:
    response = sandbox.client.post(
        "/_sandbox/faults", json={"request": "POST /compute/{system}/jobs", "faults": list(labels)}
    )
    assert response.status_code == 200, response.text


def test_many_runs_under_30_percent_faults_make_one_job_each(sandbox, tmp_path):
    sandbox.configure(
        fault_5xx_rate=0.25,
        fault_timeout_rate=0.05,
        fault_timeout_seconds=3,
        fault_seed=9,
        job_invisible_seconds=3,
        placeholder_seconds=5,
    )
    workspaces = []
    for index in range(RUNS):
        workspaces.append(tmp_path / f"w{index}")
        workspaces[-1].mkdir()
    started = time.monotonic()
    with ThreadPoolExecutor(PARALLEL) as pool:
        runs = list(
            pool.map(
                lambda ws: run_command(sandbox, "echo ok", cwd=Path(ws), FIRECREST_CI_REQUEST_TIMEOUT="2"),
                workspaces,
            )
        )
    elapsed = time.monotonic() - started
    faults = sandbox.stats()["faults"]
    per_name = Counter(job["name"] for job in sandbox.jobs_named())
    names = {
        line.split("(", 1)[1].split(")", 1)[0]
        for r in runs
        for line in r.stderr.splitlines()
        if "submitted job" in line
    }
    unclear = sum(r.stderr.count("got no clear answer") for r in runs)
    found = sum(r.stderr.count("was created by submit attempt") for r in runs)
    print(
        f"\n{RUNS} runs in {elapsed:.0f} s: {sum(per_name.values())} jobs, "
        f"{sum(n - 1 for n in per_name.values())} duplicates, {unclear} unclear submit answers "
        f"({found} hid a created job, found by name), "
        f"exit codes {Counter(r.returncode for r in runs)}, faults injected {faults}"
    )
    assert [r.returncode for r in runs] == [0] * RUNS, [r.stderr for r in runs if r.returncode]
    assert len(per_name) == RUNS and set(per_name.values()) == {1}, per_name
    assert names == set(per_name)
    assert faults.get("502-after-commit", 0) + faults.get("500-after-commit", 0) > 0
    assert not any("stamina" in r.stderr for r in runs)  # the retry library's own lines stay away


def test_a_lost_submit_answer_is_found_after_the_job_shows_up(sandbox, workspace):
    sandbox.configure(job_invisible_seconds=4)  # past the old look-ups' 3.3 s
    script_submit_faults(sandbox, "502-after-commit")
    done = run_command(sandbox, "echo found", cwd=workspace)
    assert done.returncode == 0, done.stderr
    assert "got no clear answer" in done.stderr and "was created by submit attempt 1" in done.stderr
    assert len(sandbox.jobs_named()) == 1


def test_the_404_grace_counts_from_the_submit_that_created_the_job(sandbox, workspace):
    # The first POST creates nothing: the runner looks for the job for the whole window, posts
    # again 20 s later, and the new job stays unlisted for 6 s more. Counted from the first
    # POST, the grace would be over and the healthy job reported as unreadable (exit 3).
    sandbox.configure(job_invisible_seconds=6)
    script_submit_faults(sandbox, "502")
    done = run_command(sandbox, "echo second", cwd=workspace)
    assert done.returncode == 0, done.stderr
    assert "second" in done.stdout
    jobs = sandbox.jobs_named()
    assert len(jobs) == 1


def test_a_quick_job_shown_as_slurms_placeholder_is_still_found(sandbox, workspace):
    sandbox.configure(job_invisible_seconds=1, placeholder_seconds=60)
    script_submit_faults(sandbox, "502-after-commit")
    done = run_command(sandbox, "true", cwd=workspace)
    assert done.returncode == 0, done.stderr
    assert "was created by submit attempt 1" in done.stderr
    assert len(sandbox.jobs_named()) == 1
