"""The loop in every worker that hands due work to the queue: outbox rows and runs.

Started with the worker (see middleware.worker). The database says what is
due; this loop only carries it to the broker, and keeps going through broker
and database outages: whatever it could not hand out stays due. It also
watches the broker's epoch (middleware.runs.handout): when the broker lost its
queue, what was waiting in it is due again at once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from typing import Any

from middleware.db import Database
from middleware.logs import logger
from middleware.runs import outbox, periodic, schedule
from middleware.runs.handout import BrokerEpoch

#: How often it looks for due work when there was none.
INTERVAL = 0.2


class Dispatcher:
    """A daemon thread; several workers' dispatchers share the work (SKIP LOCKED)."""

    def __init__(
        self,
        db: Database,
        celery: Any,
        lease: float,
        broker_url: str,
        interval: float = INTERVAL,
        *,
        periodic: Mapping[str, float] | None = None,
    ) -> None:
        #: Task name -> seconds: started once per interval across workers (see runs.periodic).
        self._periodic = dict(periodic or {})
        self._next_look: dict[str, float] = {}
        self._db = db
        self._celery = celery
        self._lease = lease
        self._epochs = BrokerEpoch(broker_url)
        self._epoch: str | None = None
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="dispatcher", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def once(self) -> int:
        """Hand out one batch of each kind; returns how many messages went out."""
        epoch = self._epochs.current()
        if epoch != self._epoch:
            runs, commands = schedule.repeat_lost(self._db, epoch), outbox.repeat_lost(self._db, epoch)
            if runs or commands:
                logger().warning(
                    "the broker lost its queue: handing out again", extra={"runs": runs, "commands": commands}
                )
            self._epoch = epoch
        return outbox.publish_due(self._db, self._celery, self._lease, epoch) + schedule.dispatch_due(
            self._db, self._celery, self._lease, epoch
        )

    def start_periodic(self) -> int:
        """Start the periodic tasks this worker claimed; returns how many it started.

        Each worker looks a few times per interval, so the job runs about on time even when
        the worker that ran it last went away."""
        started, now = 0, time.monotonic()
        for task, every in self._periodic.items():
            if self._next_look.get(task, 0.0) > now:
                continue
            self._next_look[task] = now + min(every / 4, 30.0)
            if periodic.claim(self._db, task, every):
                self._celery.send_task(task, args=[{}], retry=False)
                started += 1
        return started

    def _loop(self) -> None:
        failing = False
        while not self._stop.is_set():
            try:
                self.start_periodic()
                busy = self.once() > 0
                if failing:
                    logger().info("dispatcher working again")
                failing = False
            except Exception as error:  # noqa: BLE001 - the database may be away for a while; keep going
                if not failing:
                    logger().warning("dispatcher failed; retrying", extra={"error": type(error).__name__})
                failing, busy = True, False
            if not busy:
                self._stop.wait(self._interval)
