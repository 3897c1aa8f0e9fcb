"""Celery app and tasks: thin orchestration over plain, testable functions.

Tasks acknowledge late (`acks_late`): a worker that dies mid-task leaves the
message for another, and every task is idempotent so a redelivery is harmless.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gitlab
import requests
from celery import Celery, Task
from flask import Flask
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from middleware import runs
from middleware.db import Database
from middleware.github_status import StatusNotPosted
from middleware.gitlab_mirror import MirrorError
from middleware.locks import LockBusy
from middleware.logs import logger
from middleware.models import Run
from middleware.outbox import publish_pending
from middleware.settings import Settings

RECORD_RUN = "firecrest_ci.record_run"
RECORD_CLEANUP = "firecrest_ci.record_cleanup"
PUBLISH_OUTBOX = "firecrest_ci.publish_outbox"
FOLLOW_RUN = "firecrest_ci.follow_run"
REPORT_STATUS = "firecrest_ci.report_status"
RECONCILE = "firecrest_ci.reconcile"
SYNC_PROJECTS = "firecrest_ci.sync_projects"


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
        beat_schedule={
            "publish-outbox": {"task": PUBLISH_OUTBOX, "schedule": 30.0},
            "reconcile-runs": {"task": RECONCILE, "schedule": 30.0},
        },
        task_default_queue="firecrest-ci",
    )
    if settings.broker_url.startswith(("redis://", "rediss://")):
        # Unacknowledged tasks come back after this; tasks never sleep longer (see issue 4).
        options: dict[str, Any] = {
            "visibility_timeout": settings.broker_visibility_timeout,
            "socket_connect_timeout": 2,
            "socket_timeout": 5,
        }
        if settings.broker_visibility_timeout < 600:
            # A short visibility timeout only helps if abandoned messages are swept as often
            # (kombu's default sweep period is about 100 s).
            options["unacked_restore_interval"] = max(1, settings.broker_visibility_timeout // 3)
            options["unacked_restore_throttle"] = 1
        celery.conf.broker_transport_options = options

    class AppContextTask(Task):  # type: ignore[misc]
        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            if flask_app is None:
                return self.run(*args, **kwargs)
            with flask_app.app_context():
                return self.run(*args, **kwargs)

    celery.Task = AppContextTask
    return celery


#: Failures worth another try: the next attempt may find GitLab, GitHub or the source back.
TRANSIENT: tuple[type[BaseException], ...] = (
    gitlab.exceptions.GitlabError,
    requests.RequestException,
    MirrorError,
    LockBusy,
    StatusNotPosted,
    OSError,
)
MAX_RETRIES = 12
RETRY_BACKOFF_MAX = 60
RETRY: dict[str, Any] = {
    "autoretry_for": TRANSIENT,
    "retry_backoff": 2,
    "retry_backoff_max": RETRY_BACKOFF_MAX,
    "retry_jitter": True,
    "max_retries": MAX_RETRIES,
}


def register_tasks(
    celery: Celery,
    db: Database,
    bench: Callable[[], runs.Workbench] | None = None,
    visibility_timeout: int = 3600,
) -> None:
    """Thin tasks over plain functions; `bench` builds the configured clients on first use.

    Retry countdowns stay below the broker's visibility timeout, or a waiting retry would be
    redelivered to a second worker.
    """
    cached: list[runs.Workbench] = []
    retry = {**RETRY, "retry_backoff_max": max(1, min(RETRY_BACKOFF_MAX, visibility_timeout // 2))}

    def workbench() -> runs.Workbench:
        if not cached:
            assert bench is not None, "this app was built without GitLab/GitHub clients"
            made = bench()
            made.notify = lambda run_id, state, description, url: report_status_task.delay(
                run_id, state, description, url
            )
            cached.append(made)
        return cached[0]

    @celery.task(name=RECORD_RUN, acks_late=True, bind=True, **retry)  # type: ignore[untyped-decorator]
    def record_run_task(self: Task, trigger: dict[str, Any]) -> int:
        run_id = record_run(db, trigger)
        if bench is not None:
            try:
                runs.start(workbench(), run_id)
            except TRANSIENT as error:
                if self.request.retries >= MAX_RETRIES:
                    give_up(run_id, error)
                    return run_id
                raise
        return run_id

    def give_up(run_id: int, error: BaseException) -> None:
        message = f"gave up after {MAX_RETRIES} attempts: {error}"[:500]
        runs._update(workbench(), run_id, state="error", error=message)
        runs.report(workbench(), run_id, "error", "could not start the pipeline; see the run record", None)

    @celery.task(name=FOLLOW_RUN, acks_late=True, **retry)  # type: ignore[untyped-decorator]
    def follow_run_task(run_id: int, status: str | None = None) -> str:
        return runs.follow(workbench(), run_id, status)

    @celery.task(name=REPORT_STATUS, acks_late=True, **retry)  # type: ignore[untyped-decorator]
    def report_status_task(run_id: int, state: str, description: str, url: str | None) -> None:
        runs.post_status(workbench(), run_id, state, description, url)

    @celery.task(name=RECONCILE)  # type: ignore[untyped-decorator]
    def reconcile_task() -> int:
        """The fallback when a pipeline hook was lost: poll unfinished runs."""
        pending = runs.unfinished(db)
        for run_id in pending:
            follow_run_task.delay(run_id)
        return len(pending)

    @celery.task(name=RECORD_CLEANUP, acks_late=True, **retry)  # type: ignore[untyped-decorator]
    def record_cleanup_task(cleanup: dict[str, Any]) -> int:
        logger().info(
            "mirror cleanup", extra={"repository_id": cleanup["repository_id"], "ref": cleanup["ref"]}
        )
        if bench is None:
            return 0
        return runs.cleanup(workbench(), int(cleanup["repository_id"]), str(cleanup["ref"]))

    @celery.task(name=SYNC_PROJECTS, acks_late=True, **retry)  # type: ignore[untyped-decorator]
    def sync_projects_task(repository_id: int) -> int:
        """A registration changed: bring its mirror projects' settings and variables up to date."""
        return runs.sync_projects(workbench(), repository_id) if bench is not None else 0

    @celery.task(name=PUBLISH_OUTBOX)  # type: ignore[untyped-decorator]
    def publish_outbox_task() -> int:
        return publish_pending(db, celery, retry=True)
