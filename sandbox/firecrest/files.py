"""The `/filesystem/{system}/ops/*` operations, confined to the system's file system.

Answers and error texts follow the real server, which runs `ls`, `head`,
`tail`, `dd`, `stat`, `mkdir`, `rm` over SSH and reports their stderr. Paths
are resolved (symlinks included) and must stay below the file system root;
anything else is a 400, as on the real server.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import shutil
import stat as statmod
from pathlib import Path
from typing import Any

from sandbox.firecrest.jobs import JobError


def confine(root: Path, system: str, raw: str | None) -> Path:
    """The real path for `raw`, or the real server's 400 when it leaves the file system."""
    outside = JobError(
        400,
        f"The provided path ({raw}) does not match any of the defined filesystem paths "
        f"for the requested system ({system}).",
    )
    if not raw or not raw.startswith("/") or "\0" in raw:
        raise outside
    candidate = Path(os.path.realpath(raw))
    if candidate != root and root not in candidate.parents:
        raise outside
    return candidate


def _failed(tool: str, message: str, status: int = 404, exit_status: int = 1) -> JobError:
    return JobError(
        status, f"Remote process failed with exit status:{exit_status} and error message:{tool}: {message}"
    )


def _missing(tool: str, path: Path | str, verb: str = "cannot access") -> JobError:
    return _failed(tool, f"{verb} '{path}': No such file or directory", 404, 2 if tool == "ls" else 1)


def _permissions(mode: int) -> str:
    return statmod.filemode(mode)[1:]


def _type(mode: int) -> str:
    if statmod.S_ISDIR(mode):
        return "d"
    if statmod.S_ISLNK(mode):
        return "l"
    return "-"


def entry(path: Path, name: str, user: str, group: str) -> dict[str, Any]:
    info = path.lstat()
    return {
        "name": name,
        "type": _type(info.st_mode),
        "linkTarget": os.readlink(path) if statmod.S_ISLNK(info.st_mode) else None,
        "user": user,
        "group": group,
        "permissions": _permissions(info.st_mode),
        "lastModified": dt.datetime.fromtimestamp(info.st_mtime).strftime("%Y-%m-%dT%H:%M:%S"),
        "size": str(info.st_size),
    }


def ls(path: Path, *, hidden: bool, recursive: bool, user: str, group: str) -> list[dict[str, Any]]:
    if not path.exists():
        raise _missing("ls", path)
    if not path.is_dir():
        return [entry(path, str(path), user, group)]
    found: list[dict[str, Any]] = []
    stack = [(path, "")]
    while stack:
        directory, prefix = stack.pop(0)
        for child in sorted(directory.iterdir(), key=lambda p: p.name):
            if not hidden and child.name.startswith("."):
                continue
            name = f"{prefix}{child.name}"
            found.append(entry(child, name, user, group))
            if recursive and child.is_dir() and not child.is_symlink():
                stack.append((child, f"{name}/"))
    return found


def _count(raw: str | None, what: str) -> int | None:
    if raw is None or raw == "":
        return None
    try:
        return int(raw)
    except ValueError:
        raise JobError(400, f"`{what}` must be an integer") from None


def _read(path: Path, tool: str) -> bytes:
    if path.is_dir():
        raise _failed(tool, f"error reading '{path}': Is a directory", 500)
    if not path.exists():
        raise _failed(tool, f"cannot open '{path}' for reading: No such file or directory")
    return path.read_bytes()


def _text(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


def head(path: Path, raw_bytes: str | None, raw_lines: str | None, skip_trailing: bool) -> dict[str, Any]:
    n_bytes, n_lines = _count(raw_bytes, "bytes"), _count(raw_lines, "lines")
    if n_bytes is not None and n_lines is not None:
        raise JobError(400, "Only one of `bytes` or `lines` can be specified.")
    data = _read(path, "head")
    if n_bytes is not None:
        content = data[: len(data) - n_bytes] if skip_trailing else data[:n_bytes]
        end = -n_bytes if skip_trailing else n_bytes
        kind = "bytes"
    else:
        count = 10 if n_lines is None else n_lines
        lines = data.splitlines(keepends=True)
        content = b"".join(lines[: len(lines) - count] if skip_trailing else lines[:count])
        end = -count if skip_trailing else count
        kind = "lines"
    return {"content": _text(content), "contentType": kind, "startPosition": 0, "endPosition": end}


def tail(path: Path, raw_bytes: str | None, raw_lines: str | None, skip_heading: bool) -> dict[str, Any]:
    n_bytes, n_lines = _count(raw_bytes, "bytes"), _count(raw_lines, "lines")
    if n_bytes is not None and n_lines is not None:
        raise JobError(400, "Only one of `bytes` or `lines` can be specified.")
    data = _read(path, "tail")
    if n_bytes is not None:
        # `tail -c +N` starts at byte N (1-based); `tail -c N` is the last N bytes.
        content = data[max(n_bytes - 1, 0) :] if skip_heading else data[-n_bytes:] if n_bytes else b""
        start = n_bytes if skip_heading else -n_bytes
        kind = "bytes"
    else:
        count = 10 if n_lines is None else n_lines
        lines = data.splitlines(keepends=True)
        content = b"".join(lines[max(count - 1, 0) :] if skip_heading else lines[-count:] if count else [])
        start = count if skip_heading else -count
        kind = "lines"
    return {"content": _text(content), "contentType": kind, "startPosition": start, "endPosition": -1}


def view(path: Path, raw_size: str | None, raw_offset: str | None, limit: int) -> str:
    size, offset = _count(raw_size, "size"), _count(raw_offset, "offset") or 0
    if offset < 0:
        raise JobError(400, "`offset` value must be an integer value equal or greater than 0")
    if size is not None and size <= 0:
        raise JobError(400, "`size` value must be an integer value greater than 0")
    if size is not None and size > limit:
        raise JobError(400, f"`size` value must be less than {limit} bytes")
    if not path.exists():
        raise _failed("dd", f"failed to open '{path}': No such file or directory")
    data = path.read_bytes()[offset:]
    if size is None and len(data) > limit:
        raise JobError(400, f"File is too large to be viewed (max size: {limit} bytes)")
    return _text(data[: size or len(data)])


def file_stat(path: Path, dereference: bool) -> dict[str, int]:
    if not os.path.lexists(path):
        raise _missing("stat", path, "cannot statx")
    info = path.stat() if dereference else path.lstat()
    return {
        "mode": info.st_mode,
        "ino": info.st_ino,
        "dev": info.st_dev,
        "nlink": info.st_nlink,
        "uid": info.st_uid,
        "gid": info.st_gid,
        "size": info.st_size,
        "atime": int(info.st_atime),
        "ctime": int(info.st_ctime),
        "mtime": int(info.st_mtime),
    }


def checksum(path: Path) -> dict[str, str]:
    data = _read(path, "sha256sum")
    return {"algorithm": "SHA256", "checksum": hashlib.sha256(data).hexdigest()}


def mkdir(path: Path, parents: bool) -> None:
    try:
        path.mkdir(parents=parents, exist_ok=parents)
    except FileExistsError:
        raise _failed("mkdir", f"cannot create directory '{path}': File exists", 400) from None
    except FileNotFoundError:
        raise _failed("mkdir", f"cannot create directory '{path}': No such file or directory") from None


def rm(path: Path, root: Path) -> None:
    if path == root:
        raise _failed("rm", f"cannot remove '{path}': Permission denied", 403)
    if not os.path.lexists(path):
        raise _failed("rm", f"cannot remove '{path}': No such file or directory")
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


def upload(directory: Path, filename: str, data: bytes, limit: int) -> None:
    if len(data) > limit:
        raise JobError(413, "File to upload is too large.")
    if not filename or "/" in filename or filename in (".", ".."):
        raise JobError(400, "Invalid file name.")
    if not directory.is_dir():
        raise _failed("base64", f"{directory}/{filename}: No such file or directory")
    (directory / filename).write_bytes(data)


def download(path: Path, limit: int) -> bytes:
    data = _read(path, "base64")
    if len(data) > limit:
        raise JobError(413, "File to download is too large.")
    return data
