"""The `/filesystem/{system}/ops/*` operations, confined to the system's file system.

The real server runs `ls`, `head`, `tail`, `dd`, `stat`, `mkdir`, `rm`,
`base64`, `sha256sum` over SSH (src/firecrest/filesystem/ops/commands/) and
turns their stderr into the error (status picked from the text). This module
does the same work in-process and produces the same answers and texts:
head/tail follow `head -c -N` / `tail -c +N` exactly, with the positions the
router reports; output at or above the SSH read buffer (max_ops_file_size)
is a 413; `rm` is recursive. Paths are checked like the real server checks
them (absolute, normalised, under a file system path) and, because this is a
local directory, symlinks are resolved too: anything that ends up outside is
the real 400.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import shutil
import stat as statmod
from pathlib import Path
from typing import Any

from sandbox.firecrest.errors import OUTPUT_LIMIT, ApiError, remote_error

#: `view` reads this much by default (the real router's default `size`).
VIEW_DEFAULT_SIZE = 5 * 1024 * 1024


def outside(path: str, system: str) -> ApiError:
    return ApiError(
        400,
        f"The provided path ({path}) does not match any of the defined filesystem paths "
        f"for the requested system ({system}).",
    )


def confine(root: Path, system: str, raw: str | None) -> str:
    """The normalised path for `raw`, or the real server's 400 when it is not inside `root`."""
    if raw is None:
        raise ApiError(400, "All filesystem requests require a path or source_path parameter.")
    if not os.path.isabs(raw):
        raise ApiError(400, f"The provided path ({raw}) is not an absolute path.")
    norm = os.path.normpath(raw)
    if "\0" in norm:
        raise outside(norm, system)
    for candidate in (Path(norm), Path(os.path.realpath(norm))):
        if candidate != root and root not in candidate.parents:
            raise outside(norm, system)
    return norm


def _limit(data: bytes, limit: int) -> str:
    """Decode command output like the real SSH client, refusing what fills its buffer."""
    if len(data) >= limit:
        raise OUTPUT_LIMIT
    return data.decode("utf-8", errors="replace")


# -- ls ------------------------------------------------------------------------------


def entry(path: str, name: str, user: str, group: str, *, numeric: bool, follow: bool) -> dict[str, Any]:
    info = os.stat(path) if follow else os.lstat(path)
    mode = statmod.filemode(info.st_mode)
    is_link = statmod.S_ISLNK(info.st_mode)
    return {
        "name": name,
        "type": mode[0],
        "linkTarget": os.readlink(path) if is_link else None,
        "user": str(info.st_uid) if numeric else user,
        "group": str(info.st_gid) if numeric else group,
        "permissions": mode[1:],
        "lastModified": dt.datetime.fromtimestamp(info.st_mtime).strftime("%Y-%m-%dT%H:%M:%S"),
        "size": str(info.st_size),
    }


def ls(
    path: str,
    raw: str,
    *,
    user: str,
    group: str,
    hidden: bool = False,
    recursive: bool = False,
    numeric: bool = False,
    dereference: bool = False,
) -> list[dict[str, Any]]:
    """`ls -l [-A] [-R] [-L] -- path`, parsed the way the real LsCommand parses it."""
    if not os.path.lexists(path) or (dereference and not os.path.exists(path)):
        raise remote_error(f"ls: cannot access '{raw}': No such file or directory", 2)
    # Without -L, `ls -l` shows a symlink given on the command line as the link itself.
    if not os.path.isdir(path) or (os.path.islink(path) and not dereference):
        return [entry(path, raw, user, group, numeric=numeric, follow=dereference)]
    found: list[dict[str, Any]] = []

    def walk(directory: str, prefix: str) -> None:
        try:
            names = sorted(os.listdir(directory))
        except PermissionError:
            raise remote_error(f"ls: cannot open directory '{directory}': Permission denied", 2) from None
        subdirs = []
        for child in names:
            if not hidden and child.startswith("."):
                continue
            full = os.path.join(directory, child)
            follow = dereference and os.path.exists(full)
            found.append(entry(full, f"{prefix}{child}", user, group, numeric=numeric, follow=follow))
            if recursive and os.path.isdir(full) and (dereference or not os.path.islink(full)):
                subdirs.append((full, f"{prefix}{child}/"))
        for full, sub_prefix in subdirs:
            walk(full, sub_prefix)

    walk(path, "")
    return found


# -- head and tail ---------------------------------------------------------------------


def _read(path: str, raw: str, tool: str) -> bytes:
    if not os.path.exists(path):
        raise remote_error(f"{tool}: cannot open '{raw}' for reading: No such file or directory")
    if os.path.isdir(path):
        raise remote_error(f"{tool}: error reading '{raw}': Is a directory")
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except PermissionError:
        raise remote_error(f"{tool}: cannot open '{raw}' for reading: Permission denied") from None


def _lines(data: bytes) -> list[bytes]:
    return data.splitlines(keepends=True)


def head_content(data: bytes, n_bytes: int | None, n_lines: int | None, skip_trailing: bool) -> bytes:
    """`head` as the real HeadCommand calls it (a zero count means "not given", as there)."""
    if n_bytes:
        count = -n_bytes if skip_trailing else n_bytes
        return data[: max(len(data) + count, 0)] if count < 0 else data[:count]
    if n_lines:
        count = -n_lines if skip_trailing else n_lines
        lines = _lines(data)
        return b"".join(lines[: max(len(lines) + count, 0)] if count < 0 else lines[:count])
    return b"".join(_lines(data)[:10])


def tail_content(data: bytes, n_bytes: int | None, n_lines: int | None, skip_heading: bool) -> bytes:
    """`tail` as the real TailCommand calls it: `+N` starts at item N (1-based, +0 = +1)."""
    if n_bytes:
        if skip_heading:
            return data[max(n_bytes - 1, 0) :]
        return data[-n_bytes:]
    if n_lines:
        lines = _lines(data)
        if skip_heading:
            return b"".join(lines[max(n_lines - 1, 0) :])
        return b"".join(lines[-n_lines:])
    return b"".join(_lines(data)[-10:])


def _signed(
    tool: str, n_bytes: int | None, n_lines: int | None, skip: bool
) -> tuple[int | None, int | None, bool]:
    """Negative counts as the commands read them: the real server pastes the number after its sign.

    `head --bytes='-3'` is "all but the last 3" and `tail --bytes='-3'` "the last 3";
    with the skip flag the option becomes `--bytes='--3'` / `--bytes='+-3'`, which both refuse.
    """
    sign = "-" if tool == "head" else "+"
    for what, value in (("bytes", n_bytes), ("lines", n_lines)):
        if value is not None and value < 0 and skip:
            raise remote_error(f"{tool}: invalid number of {what}: '{sign}{value}'")
    negative = bool((n_bytes and n_bytes < 0) or (not n_bytes and n_lines and n_lines < 0))
    n_bytes = abs(n_bytes) if n_bytes else n_bytes
    n_lines = abs(n_lines) if n_lines else n_lines
    return n_bytes, n_lines, skip or (negative and tool == "head")


def head(
    path: str, raw: str, n_bytes: int | None, n_lines: int | None, skip_trailing: bool, limit: int
) -> dict[str, Any]:
    if n_bytes and n_lines:
        raise ApiError(400, "Only one of `bytes` or `lines` can be specified.")
    counts = _signed("head", n_bytes, n_lines, skip_trailing)
    content = head_content(_read(path, raw, "head"), *counts)
    # The router's own arithmetic, quirks included (a `lines` of 0 still decides the position).
    end = 10
    if n_lines is not None:
        end = -n_lines if skip_trailing else n_lines
    elif n_bytes is not None:
        end = -n_bytes if skip_trailing else n_bytes
    return {
        "content": _limit(content, limit),
        "contentType": "bytes" if n_bytes else "lines",
        "startPosition": 0,
        "endPosition": end,
    }


def tail(
    path: str, raw: str, n_bytes: int | None, n_lines: int | None, skip_heading: bool, limit: int
) -> dict[str, Any]:
    if n_bytes and n_lines:
        raise ApiError(400, "Only one of `bytes` or `lines` can be specified.")
    counts = _signed("tail", n_bytes, n_lines, skip_heading)
    content = tail_content(_read(path, raw, "tail"), *counts)
    start = 10
    if n_lines is not None:
        start = n_lines if skip_heading else -n_lines
    elif n_bytes is not None:
        start = n_bytes if skip_heading else -n_bytes
    return {
        "content": _limit(content, limit),
        "contentType": "bytes" if n_bytes else "lines",
        "startPosition": start,
        "endPosition": -1,
    }


# -- view, stat, checksum, download ------------------------------------------------------


def view(path: str, raw: str, size: int, offset: int, limit: int) -> str:
    """`dd bs=size skip=offset//size count=2`, then the requested slice of the decoded text."""
    if offset < 0:
        raise ApiError(400, "`offset` value must be an integer value equal or greater than 0")
    if size <= 0:
        raise ApiError(400, "`size` value must be an integer value greater than 0")
    if size > limit:
        raise ApiError(400, f"`size` value must be less than {limit} bytes")
    if not os.path.exists(path):
        raise remote_error(f"dd: failed to open '{raw}': No such file or directory")
    if os.path.isdir(path):
        raise remote_error(f"dd: error reading '{raw}': Is a directory")
    skip = offset // size
    with open(path, "rb") as handle:
        handle.seek(skip * size)
        chunk = handle.read(2 * size)
    text = _limit(chunk, limit)
    start = offset % size
    return text[start : start + size]


def file_stat(path: str, raw: str, dereference: bool) -> dict[str, int]:
    if not os.path.lexists(path) or (dereference and not os.path.exists(path)):
        raise remote_error(f"stat: cannot statx '{raw}': No such file or directory")
    info = os.stat(path) if dereference else os.lstat(path)
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


def checksum(path: str, raw: str) -> dict[str, str]:
    if not os.path.exists(path):
        raise remote_error(f"sha256sum: {raw}: No such file or directory")
    if os.path.isdir(path):
        raise remote_error(f"sha256sum: {raw}: Is a directory")
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return {"algorithm": "SHA256", "checksum": digest.hexdigest()}


def download(path: str, raw: str, limit: int) -> bytes:
    """`base64 --wrap=0`: the encoded text must fit the read buffer, then the decoded size the limit."""
    if not os.path.exists(path):
        raise remote_error(f"base64: {raw}: No such file or directory")
    if os.path.isdir(path):
        raise remote_error("base64: read error: Is a directory")
    size = os.path.getsize(path)
    if 4 * ((size + 2) // 3) >= limit:
        raise OUTPUT_LIMIT
    data = Path(path).read_bytes()
    if len(data) > limit:
        raise ApiError(413, "File to download is too large.")
    return data


# -- mkdir, rm, upload ---------------------------------------------------------------------


def mkdir(path: str, raw: str, parents: bool) -> None:
    try:
        if parents:
            os.makedirs(path, exist_ok=True)
            if not os.path.isdir(path):
                raise FileExistsError(path)
        else:
            os.mkdir(path)
    except FileExistsError:
        raise remote_error(f"mkdir: cannot create directory '{raw}': File exists") from None
    except FileNotFoundError:
        raise remote_error(f"mkdir: cannot create directory '{raw}': No such file or directory") from None
    except NotADirectoryError:
        raise remote_error(f"mkdir: cannot create directory '{raw}': Not a directory") from None


def chmod(path: str, raw: str, mode: str) -> None:
    """`chmod -v <mode> -- <path>` with a numeric mode (the sandbox does not parse symbolic ones)."""
    if not mode.isdigit() or len(mode) > 4 or any(digit in "89" for digit in mode):
        raise remote_error(f"chmod: invalid mode: '{mode}'\nTry 'chmod --help' for more information.")
    try:
        os.chmod(path, int(mode, 8))
    except FileNotFoundError:
        raise remote_error(f"chmod: cannot access '{raw}': No such file or directory") from None
    except PermissionError:
        raise remote_error(f"chmod: changing permissions of '{raw}': Operation not permitted") from None


def rm(path: str, raw: str, root: Path) -> None:
    """`rm -r --interactive=never`; the file system root and the homes in it are not the user's."""
    if not os.path.lexists(path):
        raise remote_error(f"rm: cannot remove '{raw}': No such file or directory")
    if Path(path) == root or Path(path).parent == root:
        raise remote_error(f"rm: cannot remove '{raw}': Permission denied")
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    else:
        os.unlink(path)


def upload(directory: str, root: Path, system: str, filename: str, data: bytes, limit: int) -> None:
    """`base64 -d > '<path>/<filename>'` after the real size check."""
    if len(data) > limit:
        raise ApiError(413, "File to upload is too large.")
    target = confine(root, system, f"{directory}/{filename}")
    shown = f"{directory}/{filename}"
    if not os.path.isdir(os.path.dirname(target)):
        raise remote_error(f"bash: line 1: {shown}: No such file or directory")
    if os.path.isdir(target):
        raise remote_error(f"bash: line 1: {shown}: Is a directory")
    with open(target, "wb") as handle:
        handle.write(data)
