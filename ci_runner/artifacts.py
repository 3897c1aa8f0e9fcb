"""Copy the files matching the artifact globs back from the job's directory.

Globs are relative to the directory the job script ran in (the checkout for
`git` and `upload` staging) and use `*`, `?` and `**` as in GitHub's
upload-artifact. The remote tree is walked with plain `ls`, bounded in depth
and entries so a huge output tree cannot stall the step. Each file takes the
path `transfers` picks for its size, so large ones come through the staging
area when the server has one.

A symbolic link that matches a glob is copied as the regular file it points
to (directories behind links are not walked); a link, or a directory, the
server refuses to show costs one warning, not the rest of the collection.
Locally every file lands below the artifacts directory and never passes
through a symbolic link there: it is written to a temporary name beside its
place and renamed over it.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from ci_runner import transfers
from ci_runner.client import ApiError, Gateway
from ci_runner.errors import RunnerError
from ci_runner.report import Reporter

MAX_DEPTH = 12
MAX_ENTRIES = 10_000
MAX_FILES = 1_000


def glob_to_regex(pattern: str) -> re.Pattern[str]:
    out = []
    i = 0
    text = pattern.strip()
    text = text[2:] if text.startswith("./") else text
    while i < len(text):
        if text.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif text.startswith("**", i):
            out.append(".*")
            i += 2
        elif text[i] == "*":
            out.append("[^/]*")
            i += 1
        elif text[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(text[i]))
            i += 1
    return re.compile("".join(out))


@dataclass
class Collected:
    #: Remote files that matched a glob, whether copied or not.
    matched: int = 0
    files: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


class _Unsafe(Exception):
    """Writing there would leave the artifacts directory or follow a symbolic link."""


def remote_files(
    gateway: Gateway,
    system: str,
    root: str,
    wanted: Callable[[str], bool] = lambda _path: True,
    notes: list[str] | None = None,
) -> list[tuple[str, int]]:
    """(relative path, size) of the files under `root`, breadth first, bounded.

    Links that are `wanted` are resolved to the regular file they point to.
    Whatever the server refuses to list or resolve is noted and passed over;
    only a refusal to list `root` itself is raised.
    """
    notes = [] if notes is None else notes
    found: list[tuple[str, int]] = []
    queue: list[tuple[str, int]] = [("", 0)]
    seen = 0
    base = root.rstrip("/")
    while queue:
        relative, depth = queue.pop(0)
        try:
            entries = gateway.list_dir(system, f"{base}/{relative}".rstrip("/"))
        except ApiError as error:
            if not relative:
                raise
            notes.append(f"{relative}/ (cannot list it: {error.message})")
            continue
        for entry in entries:
            seen += 1
            if seen > MAX_ENTRIES:
                return found
            name = str(entry.get("name", "")).rsplit("/", 1)[-1]
            if name in ("", ".", "..", ".git"):
                continue
            path = f"{relative}/{name}" if relative else name
            kind = entry.get("type")
            if kind == "d" and depth < MAX_DEPTH:
                queue.append((path, depth + 1))
            elif kind == "-":
                found.append((path, int(str(entry.get("size") or 0))))
            elif kind == "l" and wanted(path):
                resolved = _resolve_link(gateway, system, f"{base}/{path}", path, notes)
                if resolved is not None:
                    found.append((path, resolved))
    return found


def _resolve_link(gateway: Gateway, system: str, remote: str, path: str, notes: list[str]) -> int | None:
    """The size of the regular file a link points to, or None with a note saying why not."""
    try:
        info = gateway.stat(system, remote, dereference=True)
    except ApiError as error:
        notes.append(f"{path} (a symbolic link the server cannot resolve: {error.message})")
        return None
    mode = int(info.get("mode") or 0)
    if stat.S_ISREG(mode):
        return int(info.get("size") or 0)
    what = "a directory" if stat.S_ISDIR(mode) else "no regular file"
    notes.append(f"{path} (a symbolic link to {what}; not followed)")
    return None


def local_target(destination: Path, relative: str) -> Path:
    """Where `relative` lands below `destination`, creating its directories; never through a link."""
    pure = PurePosixPath(relative)
    if pure.is_absolute() or not pure.parts or any(part in (".", "..") for part in pure.parts):
        raise _Unsafe(f"{relative!r} is not a path inside the artifacts directory")
    current = destination
    for part in pure.parts[:-1]:
        current = current / part
        if current.is_symlink():
            raise _Unsafe(f"{current} is a symbolic link; not writing through it")
        if not current.exists():
            current.mkdir()
        elif not current.is_dir():
            raise _Unsafe(f"{current} is not a directory")
    return current / pure.parts[-1]


def _copy(
    gateway: Gateway,
    system: str,
    limits: transfers.Limits,
    source: str,
    size: int,
    target: Path,
    reporter: Reporter,
    account: str | None,
) -> None:
    """Download to a fresh temporary name beside `target`, then rename it into place.

    The rename replaces a symbolic link at `target` instead of following it.
    """
    handle, partial = tempfile.mkstemp(prefix=".firecrest-ci-", dir=target.parent)
    os.close(handle)
    try:
        transfers.download(gateway, system, limits, source, size, Path(partial), reporter, account=account)
        os.replace(partial, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(partial)


def collect(
    gateway: Gateway,
    system: str,
    root: str,
    globs: tuple[str, ...],
    destination: Path,
    reporter: Reporter,
    *,
    limits: transfers.Limits,
    account: str | None = None,
    label: str = "artifact",
) -> Collected:
    """Copy what matches; `label` names the files in the warnings (artifacts, JUnit reports)."""
    result = Collected()
    patterns = [glob_to_regex(g) for g in globs]

    def wanted(relative: str) -> bool:
        return any(p.fullmatch(relative) for p in patterns)

    notes: list[str] = []
    try:
        candidates = remote_files(gateway, system, root, wanted, notes)
        destination.mkdir(parents=True, exist_ok=True)
        home = destination.resolve()
    except ApiError as error:
        reporter.warning(f"cannot list {root} for {label}s: {error.message}")
        return result
    except OSError as error:
        reporter.warning(f"cannot use {destination} for {label}s: {error}")
        return result
    for relative, size in candidates:
        if not wanted(relative):
            continue
        result.matched += 1
        if len(result.files) >= MAX_FILES:
            result.skipped.append(f"{relative} (more than {MAX_FILES} files)")
            continue
        source = f"{root.rstrip('/')}/{relative}"
        try:
            target = local_target(home, relative)
            _copy(gateway, system, limits, source, size, target, reporter, account)
        except (_Unsafe, OSError) as error:
            result.skipped.append(f"{relative} ({error})")
            continue
        except (ApiError, RunnerError) as error:
            result.skipped.append(f"{relative} ({error.message})")
            continue
        result.files.append(relative)
    for note in notes:
        reporter.warning(f"{label} search passed over {note}")
    for skipped in result.skipped:
        reporter.warning(f"{label} not copied: {skipped}")
    if not result.matched:
        reporter.warning(f"no {label} matched {', '.join(globs)} under {root}")
    elif not result.files:
        reporter.warning(f"none of the {result.matched} matching {label}(s) could be copied")
    else:
        reporter.info(f"copied {len(result.files)} of {result.matched} matching {label}(s) to {destination}")
    return result
