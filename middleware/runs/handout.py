"""When a hand-out to the broker counts as lost, so that the same work is handed out again.

A hand-out waiting in the queue is not lost just because it waited long: a
backlog must drain, not be multiplied (re-sending every waiting message each
lease would flood the queue faster than the workers empty it). A hand-out is
repeated only when
- a worker took it up and did not settle it within a lease (it died, or could
  not record its outcome): `picked`;
- the broker lost its queue (Redis restarted without persistence): the broker
  epoch, a key the dispatchers keep in Redis, is gone and a new one is made,
  and every hand-out of an older epoch still waiting is due again;
- it is older than SAFETY leases without being taken up (anything else, such
  as the last second of writes before a crash with AOF persistence).
"""

from __future__ import annotations

import uuid

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

KEY = "firecrest-ci:broker-epoch"
#: For brokers that keep their queue in the database (the embedded SQLAlchemy transport).
DURABLE = "durable"
#: A hand-out never taken up is repeated after this many leases.
SAFETY = 20


class BrokerEpoch:
    """Reads (and, when it is missing, makes) the broker's epoch."""

    def __init__(self, broker_url: str) -> None:
        self._client: redis.Redis | None = None
        if broker_url.startswith(("redis://", "rediss://")):
            self._client = redis.Redis.from_url(
                broker_url, socket_timeout=2, socket_connect_timeout=2, retry=Retry(NoBackoff(), 0)
            )

    def current(self) -> str:
        if self._client is None:
            return DURABLE
        value = self._client.get(KEY)
        if value is None:
            self._client.set(KEY, uuid.uuid4().hex, nx=True)
            value = self._client.get(KEY)
        return value.decode() if isinstance(value, bytes) else str(value)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
