"""The sign-in rate limit: SIGN_IN_LIMIT attempts per client address on the routes that try
credentials or codes, counted in Redis so that every web replica shares one count.

It uses `limits` (the engine under Flask-Limiter) from the sign-in blueprint's own hook:
Flask-Limiter's app-wide hooks ran on every request, and on the webhook route they cost about a
tenth of the answer's CPU. When Redis is away the count falls back to this process's memory, so
sign-in keeps its limit and its answers.
"""

from __future__ import annotations

import math
import time

from limits import RateLimitItem, parse
from limits.storage import MemoryStorage, storage_from_string
from limits.strategies import FixedWindowRateLimiter
from redis.exceptions import RedisError

from middleware.logs import logger

#: Sign-in attempts per client address.
SIGN_IN_LIMIT = "10/minute"
_NAMESPACE = "firecrest-ci-pages-sign-in"


class SignInLimit:
    """Counts sign-in attempts per address; `hit` says how long to wait once they are used up."""

    def __init__(self, storage_uri: str, limit: str = SIGN_IN_LIMIT) -> None:
        self._item: RateLimitItem = parse(limit)
        self._shared = FixedWindowRateLimiter(storage_from_string(storage_uri))
        self._local = FixedWindowRateLimiter(MemoryStorage())

    def hit(self, address: str) -> int | None:
        """Count one attempt; None when it may go ahead, else the seconds until the next may."""
        try:
            return self._count(self._shared, address)
        except (RedisError, OSError) as error:
            why = type(error).__name__
            logger().warning("sign-in limit: Redis is away, counting in this process: %s", why)
            return self._count(self._local, address)

    def _count(self, limiter: FixedWindowRateLimiter, address: str) -> int | None:
        if limiter.hit(self._item, _NAMESPACE, address):
            return None
        reset = limiter.get_window_stats(self._item, _NAMESPACE, address).reset_time
        return max(1, math.ceil(reset - time.time()))
