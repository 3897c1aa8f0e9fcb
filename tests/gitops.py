"""Helpers the tests share for real git repositories and the component entrypoint."""

from __future__ import annotations

import subprocess
from pathlib import Path

#: A repository's entrypoint that includes the published FirecREST CI/CD component.
ENTRYPOINT = """stages: [test]
include:
  - component: $CI_SERVER_FQDN/firecrest-ci/templates/firecrest-job@main
    inputs:
      script: ci/hpc-job.sh
      time: 2m
"""


def git(cwd: Path, *args: str) -> str:
    """Run git with a throwaway identity; return its stdout."""
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
