"""Issue 9 §4: configuration mistakes are exit 2 naming the URL or path; infrastructure stays exit 3."""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path

from tests.e2e.conftest import run_cli, run_command, start_cli
from tests.gitops import git


def origin_repo(tmp_path: Path) -> tuple[Path, str]:
    """A repository with one commit, and a full clone of it to run from."""
    origin = tmp_path / "origin"
    origin.mkdir()
    git(origin, "init", "-q", "-b", "main")
    (origin / "version.txt").write_text("head\n")
    git(origin, "add", ".")
    git(origin, "commit", "-qm", "one")
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(origin), str(clone)], check=True)
    return clone, git(origin, "rev-parse", "HEAD")


def test_firecrest_url_with_a_wrong_path_is_exit_2_naming_it(sandbox, workspace):
    wrong = f"{sandbox.handle.url}/api/v1"
    done = run_command(sandbox, "true", cwd=workspace, FIRECREST_URL=wrong)
    assert done.returncode == 2, done.stderr
    assert f"FirecREST at {wrong} answered 404" in done.stderr and "check FIRECREST_URL" in done.stderr
    assert "unexpected" not in done.stderr


def test_a_url_without_a_scheme_is_exit_2_at_once(sandbox, workspace):
    started = time.monotonic()
    bare = sandbox.handle.url.removeprefix("http://")
    done = run_command(sandbox, "true", cwd=workspace, FIRECREST_URL=bare)
    assert done.returncode == 2, done.stderr
    assert f"FIRECREST_URL is '{bare}', which is not an http(s) URL" in done.stderr
    assert time.monotonic() - started < 15  # no retries
    token = run_command(sandbox, "true", cwd=workspace, AUTH_TOKEN_URL="auth.example.org/token")
    assert token.returncode == 2 and "AUTH_TOKEN_URL is 'auth.example.org/token'" in token.stderr


def test_a_token_url_answering_404_names_the_token_url(sandbox, workspace):
    wrong = f"{sandbox.handle.url}/auth/realms/nope/token"
    done = run_command(sandbox, "true", cwd=workspace, AUTH_TOKEN_URL=wrong)
    assert done.returncode == 2, done.stderr
    assert f"the token endpoint {wrong} does not exist (404" in done.stderr
    assert "check AUTH_TOKEN_URL" in done.stderr and "client id and secret" not in done.stderr


def test_a_working_dir_outside_the_file_systems_is_exit_2_naming_it(sandbox, workspace):
    done = run_command(sandbox, "true", "--working-dir", "/etc/x", cwd=workspace)
    assert done.returncode == 2, done.stderr
    assert "working directory /etc/x is not on a file system FirecREST serves on cluster" in done.stderr
    assert sandbox.jobs_named() == []


def test_a_sha_missing_from_the_workspaces_repository_is_exit_2_before_submitting(sandbox, tmp_path):
    clone, _sha = origin_repo(tmp_path)
    origin = str(tmp_path / "origin")
    args = ("--system", "cluster", "--staging", "git", "--repo-url", origin, "--command", "true")
    done = run_cli(sandbox, *args, "--sha", "d" * 40, cwd=clone)
    assert done.returncode == 2, done.stderr
    assert f"commit {'d' * 40} is not in {clone}, a full clone of {origin}" in done.stderr
    assert sandbox.jobs_named() == []


def test_git_staging_without_sha_takes_the_workspaces_head(sandbox, tmp_path):
    clone, sha = origin_repo(tmp_path)
    args = ("--system", "cluster", "--staging", "git", "--repo-url", str(tmp_path / "origin"))
    done = run_cli(sandbox, *args, "--command", "git rev-parse HEAD; cat version.txt", cwd=clone)
    assert done.returncode == 0, done.stderr
    assert sha in done.stdout and "head" in done.stdout
    assert "got None" not in done.stderr


def test_a_refused_connection_is_retried_for_the_configured_time_only(sandbox, workspace):
    started = time.monotonic()
    done = run_command(
        sandbox, "true", cwd=workspace, FIRECREST_URL="http://127.0.0.1:9", FIRECREST_CI_RETRY_TIMEOUT="3"
    )
    elapsed = time.monotonic() - started
    assert done.returncode == 3, done.stderr
    assert "unreachable" in done.stderr and "gave up after 3 s (--retry-timeout" in done.stderr
    assert 3 <= elapsed < 20, elapsed
    assert "stamina" not in done.stderr


def test_an_unhealthy_scheduler_after_an_unclear_submit_stops_early(sandbox, workspace):
    sandbox.client.post(
        "/_sandbox/faults", json={"request": "POST /compute/{system}/jobs", "faults": ["502"]}
    ).raise_for_status()
    proc = start_cli(sandbox, "true", workspace, FIRECREST_CI_RETRY_TIMEOUT="120")
    assert proc.stderr is not None
    lines: list[str] = []
    unclear = threading.Event()

    def read() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(line)
            if "got no clear answer" in line:
                unclear.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert unclear.wait(30), "".join(lines)
        sandbox.configure(unhealthy={"cluster": {"scheduler": "slurmctld is not responding"}})
        went_down = time.monotonic()
        proc.wait(timeout=60)
        stopped_after = time.monotonic() - went_down
    finally:
        if proc.poll() is None:
            proc.kill()
    reader.join(5)
    stderr = "".join(lines)
    assert proc.returncode == 3, stderr
    assert stopped_after < 10, stopped_after  # the retry budget was 120 s
    assert "scheduler is unhealthy (slurmctld is not responding)" in stderr
    assert "may have created it" in stderr and "fci-" in stderr
    assert "retrying" not in stderr.split("got no clear answer", 1)[1]


def test_short_token_lifetimes_do_not_cost_a_token_per_request(sandbox, workspace):
    sandbox.configure(token_lifetime=60)
    sandbox.client.post("/_sandbox/stats/reset").raise_for_status()
    done = run_command(sandbox, "for i in 1 2 3 4 5 6; do echo $i; sleep 1; done", cwd=workspace)
    stats = sandbox.stats()
    sandbox.configure(token_lifetime=300)
    assert done.returncode == 0, done.stderr
    print(f"\n{stats['token_requests']} token requests for {stats['total']} API calls")
    assert stats["total"] >= 10
    assert stats["token_requests"] <= 2
