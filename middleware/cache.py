"""A short-lived, per-process cache of what the webhook intake reads for each delivery.

Looking a registration up and decrypting its secret on every delivery costs
several database round trips; the intake keeps it for a few seconds instead.
The registration API clears the cache in its own process on every change;
other processes see a change at most TTL seconds later.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from middleware.domain import RepositoryConfig

TTL = 5.0


@dataclass(frozen=True)
class Registration:
    config: RepositoryConfig
    webhook_secret: str
    notification_token_enc: str
    clone_url: str = ""
    #: The provider's stable repository id, once known (GitHub's numeric id, as text).
    source_id: str | None = None
    #: Why its credentials are disabled (the App was removed), or None: nothing runs meanwhile.
    disabled: str | None = None
    #: The GitHub App installation reporting for it (App mode), once known.
    installation_id: int | None = None


class RegistrationCache:
    def __init__(self, ttl: float = TTL) -> None:
        self._ttl = ttl
        self._entries: dict[str, tuple[float, Registration | None]] = {}
        self._lock = threading.Lock()

    def get(self, full_name: str) -> tuple[bool, Registration | None]:
        """(found in cache, value); a cached None means "not registered"."""
        with self._lock:
            entry = self._entries.get(full_name)
        if entry is None or entry[0] < time.monotonic():
            return False, None
        return True, entry[1]

    def put(self, full_name: str, value: Registration | None) -> None:
        with self._lock:
            if len(self._entries) > 10_000:
                self._entries.clear()
            self._entries[full_name] = (time.monotonic() + self._ttl, value)

    def discard(self, *keys: str) -> None:
        """Forget these entries (a registration renamed or changed by the intake itself)."""
        with self._lock:
            for key in keys:
                self._entries.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
