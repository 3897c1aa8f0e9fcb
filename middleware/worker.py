"""Celery entry point: `celery -A middleware.worker:celery worker` (and `beat`)."""

from __future__ import annotations

from typing import Any

from celery.signals import worker_ready, worker_shutdown

from middleware.app import create_app
from middleware.outbox import Publisher
from middleware.services import EXTENSION
from middleware.settings import refuse_to_start

with refuse_to_start():
    app = create_app()
services = app.extensions[EXTENSION]
celery = services.celery
publisher = Publisher(services.db, celery)


@worker_ready.connect  # type: ignore[untyped-decorator]
def _start_publisher(**_kwargs: Any) -> None:
    """Each worker also moves the outbox to the queue (see middleware.outbox)."""
    publisher.start()


@worker_shutdown.connect  # type: ignore[untyped-decorator]
def _stop_publisher(**_kwargs: Any) -> None:
    publisher.stop()
