"""Turn the user's script into the batch script that is submitted.

Slurm reads `#SBATCH` lines only in the leading comment block, so the unique
job name goes there, and the staging prologue goes right after it, before
the user's first command. The user's own lines are kept byte for byte.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

SOURCE_DIR = "src"
UPLOAD_ARCHIVE = "firecrest-ci-source.tar.gz"
STAGING_FAILED_EXIT = 97

_NAME_OPTION = re.compile(r"^#SBATCH\s+(?:--job-name(?:=|\s+)|-J\s*)(\S+)")
_OUTPUT_OPTION = re.compile(r"^#SBATCH\s+(?:--output(?:=|\s+)|-o\s*)(\S+)")
_ERROR_OPTION = re.compile(r"^#SBATCH\s+(?:--error(?:=|\s+)|-e\s*)(\S+)")


@dataclass(frozen=True)
class BatchScript:
    text: str
    output_pattern: str | None
    error_pattern: str | None


def split_header(script: str) -> tuple[list[str], list[str]]:
    """The shebang plus leading comment/blank block, and the rest."""
    lines = script.splitlines()
    end = 0
    for index, line in enumerate(lines):
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            break
        end = index + 1
    return lines[:end], lines[end:]


def _staging_prologue(staging: str, repo_url: str | None, sha: str | None) -> list[str]:
    fail = f"exit {STAGING_FAILED_EXIT}"
    if staging == "git":
        url, rev = shlex.quote(repo_url or ""), shlex.quote(sha or "")
        return [
            "# --- firecrest-ci: fetch the exact commit under test ---",
            f'echo "firecrest-ci: fetching {sha} into $PWD/{SOURCE_DIR}"',
            f"git init -q {SOURCE_DIR} || {fail}",
            f"cd {SOURCE_DIR} || {fail}",
            f"if ! git fetch -q --depth 1 -- {url} {rev} 2>/dev/null; then",
            f"  git fetch -q -- {url} '+refs/heads/*:refs/remotes/origin/*' || "
            f'{{ echo "firecrest-ci: cannot fetch {repo_url}" >&2; {fail}; }}',
            "fi",
            f"git -c advice.detachedHead=false checkout -q --force {rev} || "
            f'{{ echo "firecrest-ci: commit {sha} not found in {repo_url}" >&2; {fail}; }}',
            "# --- firecrest-ci: end of staging ---",
        ]
    if staging == "upload":
        return [
            "# --- firecrest-ci: unpack the uploaded workspace ---",
            f"mkdir -p {SOURCE_DIR} && tar -xzf {UPLOAD_ARCHIVE} -C {SOURCE_DIR} || "
            f'{{ echo "firecrest-ci: cannot unpack {UPLOAD_ARCHIVE}" >&2; {fail}; }}',
            f"rm -f {UPLOAD_ARCHIVE}",
            f"cd {SOURCE_DIR} || {fail}",
            "# --- firecrest-ci: end of staging ---",
        ]
    return []


def build_batch_script(
    user_script: str,
    *,
    job_name: str,
    staging: str,
    repo_url: str | None = None,
    sha: str | None = None,
) -> BatchScript:
    """Header (with the unique name), staging prologue, then the user's body."""
    header, body = split_header(user_script)
    shebang = header[0] if header and header[0].startswith("#!") else "#!/bin/bash"
    rest = header[1:] if header and header[0].startswith("#!") else header
    output = error = None
    kept: list[str] = []
    for line in rest:
        stripped = line.strip()
        if _NAME_OPTION.match(stripped):
            continue  # the run's unique name replaces it; see JobSpec.job_name
        if match := _OUTPUT_OPTION.match(stripped):
            output = match.group(1)
        if match := _ERROR_OPTION.match(stripped):
            error = match.group(1)
        kept.append(line)
    lines = [shebang, f"#SBATCH --job-name={job_name}", *kept]
    lines += _staging_prologue(staging, repo_url, sha)
    lines += body
    return BatchScript("\n".join(lines) + "\n", output, error)


def expand_output_pattern(pattern: str, *, job_id: str, job_name: str, user: str) -> str:
    """Slurm's filename patterns (`%j`, `%x`, `%u`, `%%`) for the log fallback path."""
    replacements = {"j": job_id, "x": job_name, "u": user, "A": job_id, "%": "%"}
    return re.sub(r"%([a-zA-Z%])", lambda m: replacements.get(m.group(1), m.group(0)), pattern)
