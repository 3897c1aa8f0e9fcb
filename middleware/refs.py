"""Which ref names and commit SHAs the middleware passes on to git. Pure; no I/O.

One copy of git's `check-ref-format` rules, under both the policy (which
refuses a bad name at intake, with a reason the sender can read) and the
mirror and the API trigger (which never hand git a name it would refuse), so
that a name git cannot store is refused once instead of failing in the
mirror on every retry. `tests/middleware/test_refs.py` holds the rules
against the real `git` binary.
"""

from __future__ import annotations

import re

#: A full, lowercase commit SHA-1. Checked with fullmatch: `$` would let a trailing newline through.
SHA = re.compile(r"[0-9a-f]{40}")
#: An all-zero SHA: what GitHub sends as `after` when a branch is deleted.
ZERO_SHA = re.compile(r"0+")
#: Longer branch or tag names are refused: runs.ref holds 300 characters, file systems 255 bytes a name.
MAX_NAME_BYTES = 255
#: Characters git refuses anywhere in a ref: control characters, space, DEL and `~^:?*[\`.
_BAD_CHAR = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]")


def is_sha(value: str | None) -> bool:
    """A full 40-character lowercase commit SHA, and nothing after it."""
    return value is not None and SHA.fullmatch(value) is not None


def _refname_problem(ref: str) -> str | None:
    """Why `git check-ref-format --allow-onelevel <ref>` refuses `ref`, or None (git's refs.c rules)."""
    if not ref:
        return "the name is empty"
    if not ref.isascii():
        try:
            ref.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate, which JSON can carry
            return "it is not valid UTF-8"
    bad = _BAD_CHAR.search(ref)
    if bad:
        return f"{bad.group()!r} is not allowed (no control characters, spaces or ~^:?*[\\)"
    if ref == "@":
        return "'@' alone means HEAD"
    for component in ref.split("/"):
        if not component:
            return "it starts or ends with '/' or has '//'"
        if component.startswith("."):
            return f"the component {component!r} starts with '.'"
        if component.endswith(".lock"):
            return f"the component {component!r} ends with '.lock'"
    if ".." in ref:
        return "it contains '..'"
    if "@{" in ref:
        return "it contains '@{'"
    if ref.endswith("."):
        return "it ends with '.'"
    return None


def ref_problem(name: str) -> str | None:
    """Why `name` cannot be a branch or tag name here, or None if it can.

    git's rules for a branch (`git check-ref-format --branch`: a valid
    `refs/heads/<name>`, not starting with `-`, not `HEAD`), plus two of ours:
    `@` alone (git reads it as HEAD in a revision) and names over 255 bytes.
    """
    if name.startswith("-"):
        return "it starts with '-'"
    if name == "HEAD":
        return "'HEAD' names the current commit"
    problem = _refname_problem(name)
    if problem is None and len(name.encode("utf-8")) > MAX_NAME_BYTES:
        problem = f"it is longer than {MAX_NAME_BYTES} bytes"
    return problem


def safe_ref(name: str) -> bool:
    """A branch or tag name git accepts and no command line could mistake for an option."""
    return ref_problem(name) is None


def safe_full_ref(ref: str) -> bool:
    """A full ref (`refs/heads/main`, `refs/pull/3/head`) that `git check-ref-format` accepts."""
    return ref.startswith("refs/") and _refname_problem(ref) is None
