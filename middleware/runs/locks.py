"""One worker at a time per source repository: a Redis lock in production, a file lock
on the embedded default (workers there share one machine)."""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import redis

LOCK_TIMEOUT = 900  # a mirror step never takes this long; the lock expires if a worker dies


class LockBusy(RuntimeError):
    """Another worker holds the repository; the task should retry shortly."""


@contextmanager
def repository_lock(
    repository_id: int,
    *,
    redis_url: str | None,
    lock_dir: Path,
    wait: float = 30,
    timeout: float = LOCK_TIMEOUT,
) -> Iterator[None]:
    name = f"firecrest-ci:mirror:{repository_id}"
    if redis_url:
        client = redis.Redis.from_url(redis_url)
        lock = client.lock(name, timeout=timeout, blocking_timeout=wait)
        if not lock.acquire():
            raise LockBusy(f"repository {repository_id} is being mirrored by another worker")
        try:
            yield
        finally:
            with contextlib.suppress(redis.exceptions.LockError):  # expired: another worker may hold it
                lock.release()
            client.close()
        return
    lock_dir.mkdir(parents=True, exist_ok=True)
    with open(lock_dir / f"mirror-{repository_id}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
