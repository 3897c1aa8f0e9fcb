"""Addresses of the pages, for what links to them from outside: check runs, statuses, answers."""

from __future__ import annotations

from urllib.parse import quote


def run_page(public_url: str, run_id: int) -> str:
    """The run's page in the run viewer."""
    return f"{public_url.rstrip('/')}/runs/{run_id}"


def commit_runs_page(public_url: str, repository_id: int, sha: str) -> str:
    """The repository's runs of one commit (what a webhook answer links to before run ids exist)."""
    return f"{public_url.rstrip('/')}/repositories/{repository_id}/runs?commit={quote(sha, safe='')}"
