"""Turn the user's script into the batch script that is submitted.

Slurm reads `#SBATCH` lines only in the leading comment block, so the unique
job name goes there, and the prologue goes right after it, before the user's
first command: it makes the job's output files private, then stages the
code. The user's own lines are kept byte for byte.

Clone credentials never appear in the script: the runner passes them in the
job's environment (base64, since Slurm's `--export` splits on commas), a
one-shot git credential helper reads them, and the prologue unsets them
before the user's commands run.
"""

from __future__ import annotations

import base64
import re
import shlex
from dataclasses import dataclass

SOURCE_DIR = "src"
UPLOAD_ARCHIVE = "firecrest-ci-source.tar.gz"
STAGING_FAILED_EXIT = 97
#: Job environment variables carrying the clone credentials (base64 of the user and the password).
GIT_USERNAME_ENV = "FCI_GIT_USERNAME"
GIT_PASSWORD_ENV = "FCI_GIT_PASSWORD"  # noqa: S105 - a variable name, not a secret
#: Answers git's `get` from the two variables; `credential.helper=` before it drops the user's own
#: helpers, so no `store` helper ever writes the credentials to disk.
_CREDENTIAL_HELPER = (
    '!f() { test "$1" = get || return 0; '
    f'echo "username=$(printf %s "${GIT_USERNAME_ENV}" | base64 -d)"; '
    f'echo "password=$(printf %s "${GIT_PASSWORD_ENV}" | base64 -d)"; '
    "}; f"
)

_NAME_OPTION = re.compile(r"^#SBATCH\s+(?:--job-name(?:=|\s+)|-J\s*)(\S+)")
_OUTPUT_OPTION = re.compile(r"^#SBATCH\s+(?:--output(?:=|\s+)|-o\s*)(\S+)")
_ERROR_OPTION = re.compile(r"^#SBATCH\s+(?:--error(?:=|\s+)|-e\s*)(\S+)")


@dataclass(frozen=True)
class BatchScript:
    text: str
    output_pattern: str | None
    error_pattern: str | None
    #: The line the script prints last, for the runner's live log (None: not a Bourne shell script).
    end_marker: str | None = None


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


def git_credential_env(username: str | None, password: str | None) -> dict[str, str]:
    """The job environment that hands clone credentials to the prologue's credential helper."""
    if not username and not password:
        return {}

    def encode(value: str | None) -> str:
        return base64.b64encode((value or "").encode()).decode()

    return {GIT_USERNAME_ENV: encode(username), GIT_PASSWORD_ENV: encode(password)}


def _shell_path(pattern: str) -> str | None:
    """A Slurm filename pattern as a double-quoted shell word, or None if it uses other codes."""
    job_id = "${SLURM_JOB_ID}"
    codes = {"j": job_id, "A": job_id, "x": "${SLURM_JOB_NAME}", "u": "${USER}", "%": "%"}
    if "\\" in pattern:
        return None
    word = []
    for literal, code in re.findall(r"([^%]*)(?:%([^%]?|%))?", pattern):
        word.append(re.sub(r'([\\"$`])', r"\\\1", literal))
        if code:
            if code not in codes:
                return None
            word.append(codes[code])
    return '"' + "".join(word) + '"'


def _private_output(output: str | None, error: str | None) -> list[str]:
    """Slurm creates the output files with the submitter's umask: take group and others' access away."""
    patterns = [output or "slurm-%j.out", *([error] if error else [])]
    words = dict.fromkeys(word for word in map(_shell_path, patterns) if word)
    return [f"chmod go= -- {word} 2>/dev/null || :" for word in words]


def _staging_prologue(staging: str, repo_url: str | None, sha: str | None, git_auth: bool) -> list[str]:
    fail = f"exit {STAGING_FAILED_EXIT}"
    if staging == "git":
        url, rev = shlex.quote(repo_url or ""), shlex.quote(sha or "")
        helper = ""
        if git_auth:
            helper = f"-c credential.helper= -c credential.helper={shlex.quote(_CREDENTIAL_HELPER)} "
        return [
            "# --- firecrest-ci: fetch the exact commit under test ---",
            f'echo "firecrest-ci: fetching {sha} into $PWD/{SOURCE_DIR}"',
            f"git init -q {SOURCE_DIR} || {fail}",
            f"cd {SOURCE_DIR} || {fail}",
            f'fci_git() {{ GIT_TERMINAL_PROMPT=0 git {helper}"$@"; }}',
            f"if ! fci_git fetch -q --depth 1 -- {url} {rev} 2>/dev/null; then",
            f"  fci_git fetch -q -- {url} '+refs/heads/*:refs/remotes/origin/*' || "
            f'{{ echo "firecrest-ci: cannot fetch" {url} >&2; {fail}; }}',
            "fi",
            f"git -c advice.detachedHead=false checkout -q --force {rev} || "
            f'{{ echo "firecrest-ci: commit {sha} not found in" {url} >&2; {fail}; }}',
            f"unset -f fci_git; unset {GIT_USERNAME_ENV} {GIT_PASSWORD_ENV}",
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
    git_auth: bool = False,
    end_marker: str | None = None,
) -> BatchScript:
    """Header (with the unique name), prologue, then the user's body.

    `repo_url` must carry no credentials; with `git_auth` the fetch takes them
    from the job environment that `git_credential_env` builds. `end_marker`
    (see `_end_marker`) tells the runner the moment the script is over.
    """
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
    usable = end_marker and re.fullmatch(r"[\w-]+", end_marker) and _bourne_shell(shebang)
    marker = end_marker if usable else None
    lines = [shebang, f"#SBATCH --job-name={job_name}", *kept]
    lines += _end_marker(marker) if marker else []
    if _bourne_shell(shebang):  # other interpreters: the run's directory (mode 700) keeps them private
        lines += ["# --- firecrest-ci: the job's output is its user's alone ---"]
        lines += _private_output(output, error)
    lines += _staging_prologue(staging, repo_url, sha, git_auth)
    has_commands = any(line.strip() and not line.strip().startswith("#") for line in body)
    lines += ["(", *body, "", ")"] if marker and has_commands else body
    return BatchScript("\n".join(lines) + "\n", output, error, marker)


_BOURNE_SHELLS = frozenset({"sh", "bash", "dash", "ksh", "mksh", "zsh", "ash"})


def _bourne_shell(shebang: str) -> bool:
    """Does the shebang name a shell that understands `trap ... EXIT` and `( ... )`?"""
    words = shebang[2:].split()
    if words and words[0].rsplit("/", 1)[-1] == "env":
        words = [word for word in words[1:] if not word.startswith("-")]
    return bool(words) and words[0].rsplit("/", 1)[-1] in _BOURNE_SHELLS


def _end_marker(marker: str) -> list[str]:
    """Print the marker when the script exits, however it exits (bash: SIGTERM too).

    The user's body then runs in a subshell, so its own `trap ... EXIT` or
    `exec >file` cannot take the marker's place or its destination.
    """
    return [
        "# --- firecrest-ci: the last line tells the runner the script is over ---",
        f"trap 'printf \"%s\\n\" {marker}' EXIT",
    ]


def expand_output_pattern(pattern: str, *, job_id: str, job_name: str, user: str) -> str:
    """Slurm's filename patterns (`%j`, `%x`, `%u`, `%%`) for the log fallback path."""
    replacements = {"j": job_id, "x": job_name, "u": user, "A": job_id, "%": "%"}
    return re.sub(r"%([a-zA-Z%])", lambda m: replacements.get(m.group(1), m.group(0)), pattern)
