"""Celery app and tasks: thin orchestration over plain, testable functions.

Tasks acknowledge late (`acks_late`): a worker that dies mid-task leaves the
message for another, and every task is idempotent so a redelivery is harmless.
"""

from __future__ import annotations

from typing import Any

from celery import Celery, Task
from flask import Flask
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from middleware.db import Database
from middleware.logs import logger
from middleware.models import Run
from middleware.outbox import publish_pending
from middleware.settings import Settings

RECORD_RUN = "firecrest_ci.record_run"
RECORD_CLEANUP = "firecrest_ci.record_cleanup"
PUBLISH_OUTBOX = "firecrest_ci.publish_outbox"


def record_run(db: Database, trigger: dict[str, Any]) -> int:
    """Create the queued Run for a trigger, once per (repository, pipeline, sha, kind)."""
    key = (trigger["repository_id"], trigger["pipeline"], trigger["sha"], trigger["kind"])

    def existing() -> int | None:
        with db.session() as session:
            return session.scalar(
                select(Run.id).where(
                    Run.repository_id == key[0],
                    Run.pipeline_name == key[1],
                    Run.sha == key[2],
                    Run.trigger_kind == key[3],
                )
            )

    found = existing()
    if found is not None:
        return found
    try:
        with db.session() as session:
            run = Run(
                repository_id=key[0],
                pipeline_name=key[1],
                sha=key[2],
                trigger_kind=key[3],
                ref=trigger["ref"],
                pr_number=trigger.get("pr_number"),
                variables=trigger.get("variables") or {},
                reason=trigger.get("reason", ""),
                state="queued",
            )
            session.add(run)
            session.flush()
            run_id = run.id
    except IntegrityError:
        found = existing()  # a concurrent redelivery won the race
        assert found is not None
        return found
    logger().info("run queued", extra={"run_id": run_id, "repository_id": key[0], "pipeline": key[1]})
    return run_id


def make_celery(settings: Settings, flask_app: Flask | None = None) -> Celery:
    """The Celery app, configured from the same settings as the Flask app."""
    celery = Celery("firecrest_ci", broker=settings.broker_url)
    celery.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,
        broker_connection_retry_on_startup=True,
        beat_schedule={"publish-outbox": {"task": PUBLISH_OUTBOX, "schedule": 30.0}},
        task_default_queue="firecrest-ci",
    )
    if settings.broker_url.startswith(("redis://", "rediss://")):
        # Unacknowledged tasks come back after this; tasks never sleep longer (see issue 4).
        celery.conf.broker_transport_options = {
            "visibility_timeout": settings.broker_visibility_timeout,
            "socket_connect_timeout": 2,
            "socket_timeout": 5,
        }

    class AppContextTask(Task):  # type: ignore[misc]
        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            if flask_app is None:
                return self.run(*args, **kwargs)
            with flask_app.app_context():
                return self.run(*args, **kwargs)

    celery.Task = AppContextTask
    return celery


def register_tasks(celery: Celery, db: Database) -> None:
    @celery.task(name=RECORD_RUN, acks_late=True)  # type: ignore[untyped-decorator]
    def record_run_task(trigger: dict[str, Any]) -> int:
        return record_run(db, trigger)

    @celery.task(name=RECORD_CLEANUP, acks_late=True)  # type: ignore[untyped-decorator]
    def record_cleanup_task(cleanup: dict[str, Any]) -> None:
        logger().info("mirror cleanup queued", extra=cleanup)

    @celery.task(name=PUBLISH_OUTBOX)  # type: ignore[untyped-decorator]
    def publish_outbox_task() -> int:
        return publish_pending(db, celery, retry=True)
