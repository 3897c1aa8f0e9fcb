"""Ask the source repository what a ref points to, with the real `git` binary.

Used by the API trigger (`ref: main | pr:N | tag:T`). Refs are validated
before they reach git, and the URL was validated when it was registered.
"""

from __future__ import annotations

import subprocess

from middleware.refs import safe_full_ref

TIMEOUT = 20


class RefNotFound(LookupError):
    pass


class SourceUnavailable(RuntimeError):
    pass


def resolve(clone_url: str, ref: str) -> str:
    """The commit `ref` (a full ref like refs/heads/main) points to at the source."""
    if not safe_full_ref(ref):
        raise RefNotFound(f"{ref!r} is not a valid ref")
    try:
        done = subprocess.run(
            ["git", "ls-remote", "--", clone_url, ref, f"{ref}^{{}}"],
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            env={"GIT_TERMINAL_PROMPT": "0", "PATH": "/usr/bin:/bin:/usr/local/bin"},
        )
    except subprocess.TimeoutExpired:
        raise SourceUnavailable(f"the source did not answer within {TIMEOUT} s") from None
    if done.returncode != 0:
        raise SourceUnavailable("the source repository cannot be read (git ls-remote failed)")
    refs: dict[str, str] = {}
    for line in done.stdout.splitlines():
        sha_part, _, name = line.partition("\t")
        refs[name] = sha_part
    sha = refs.get(f"{ref}^{{}}") or refs.get(ref)
    if not sha:
        raise RefNotFound(f"{ref} does not exist in the source repository")
    return sha
