"""Copy the files matching the artifact globs back from the job's directory.

Globs are relative to the directory the job script ran in (the checkout for
`git` and `upload` staging) and use `*`, `?` and `**` as in GitHub's
upload-artifact. The remote tree is walked with plain `ls`, bounded in depth
and entries so a huge output tree cannot stall the step.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from ci_runner.client import ApiError, Gateway
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
    files: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def remote_files(gateway: Gateway, system: str, root: str) -> list[tuple[str, int]]:
    """(relative path, size) of every file under `root`, breadth first, bounded."""
    found: list[tuple[str, int]] = []
    queue: list[tuple[str, int]] = [("", 0)]
    seen = 0
    while queue:
        relative, depth = queue.pop(0)
        directory = f"{root.rstrip('/')}/{relative}".rstrip("/")
        for entry in gateway.list_dir(system, directory):
            seen += 1
            if seen > MAX_ENTRIES:
                return found
            name = str(entry.get("name", "")).rsplit("/", 1)[-1]
            if name in ("", ".", "..", ".git"):
                continue
            path = f"{relative}/{name}" if relative else name
            if entry.get("type") == "d" and depth < MAX_DEPTH:
                queue.append((path, depth + 1))
            elif entry.get("type") == "-":
                found.append((path, int(str(entry.get("size") or 0))))
    return found


def collect(
    gateway: Gateway,
    system: str,
    root: str,
    globs: tuple[str, ...],
    destination: Path,
    reporter: Reporter,
    *,
    max_size: int | None,
) -> Collected:
    result = Collected()
    patterns = [glob_to_regex(g) for g in globs]
    try:
        candidates = remote_files(gateway, system, root)
    except ApiError as error:
        reporter.warning(f"cannot list {root} for artifacts: {error.message}")
        return result
    for relative, size in candidates:
        if not any(p.fullmatch(relative) for p in patterns):
            continue
        if len(result.files) >= MAX_FILES:
            result.skipped.append(f"{relative} (more than {MAX_FILES} files)")
            continue
        if max_size is not None and size >= max_size:
            result.skipped.append(f"{relative} ({size} bytes, over the direct transfer limit)")
            continue
        target = destination / PurePosixPath(relative)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            gateway.download(system, f"{root.rstrip('/')}/{relative}", str(target))
        except ApiError as error:
            result.skipped.append(f"{relative} ({error.message})")
            continue
        result.files.append(relative)
    for skipped in result.skipped:
        reporter.warning(f"artifact not copied: {skipped}")
    if not result.files:
        reporter.warning(f"no artifact matched {', '.join(globs)} under {root}")
    else:
        reporter.info(f"copied {len(result.files)} artifact(s) to {destination}")
    return result
