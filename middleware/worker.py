"""Celery entry point: `celery -A middleware.worker:celery worker`.

No beat is needed: each worker runs the dispatcher (see middleware.runs.dispatcher)
that hands due runs and outbox rows to the queue.
"""

from __future__ import annotations

import logging
from typing import Any

from celery.signals import after_setup_logger, after_setup_task_logger, worker_ready, worker_shutdown

from middleware import health, logs
from middleware.app import create_app
from middleware.logs import logger
from middleware.managed_gitlab import projects as gitlab_projects
from middleware.managed_gitlab import templates_project
from middleware.runs.dispatcher import Dispatcher
from middleware.runs.tasks import periodic_tasks
from middleware.services import EXTENSION
from middleware.settings import Settings, refuse_to_start

with refuse_to_start():
    _configured = Settings().resolved()
    health.require_managed_gitlab(_configured)  # a worker without GitLab could only leave runs waiting
    app = create_app(_configured)
services = app.extensions[EXTENSION]
celery = services.celery
settings = services.settings
dispatcher = Dispatcher(
    services.db, celery, settings.dispatch_lease, settings.broker_url, periodic=periodic_tasks(settings)
)


@after_setup_logger.connect  # type: ignore[untyped-decorator]
@after_setup_task_logger.connect  # type: ignore[untyped-decorator]
def _json_celery_lines(logger: logging.Logger, **_kwargs: Any) -> None:
    """Celery's own lines as JSON objects too (LOG_JSON), so every line of a worker's stderr is one.
    Their `data` (a task's arguments) stays out, as in Celery's own format."""
    if settings.log_json:
        for handler in logger.handlers:
            handler.setFormatter(logs.json_formatter(leave_out=("data",)))


@worker_ready.connect  # type: ignore[untyped-decorator]
def _start_dispatcher(**_kwargs: Any) -> None:
    """Each worker also hands due work to the queue, and keeps the managed GitLab's
    templates project up to date."""
    dispatcher.start()
    settings = services.settings
    problem = health.gitlab_problem(settings.gitlab_url, settings.gitlab_token)
    if problem:  # transient: runs wait and are tried again, but the operator should know now
        logger().error("managed GitLab unavailable; runs wait for it", extra={"error": problem})
    if settings.gitlab_url:
        try:
            templates_project.publish(
                gitlab_projects.client(settings.gitlab_url, settings.gitlab_token),
                settings.gitlab_group,
                settings.gitlab_token,
                settings.runner_image,
            )
        except Exception as error:  # noqa: BLE001 - pipelines report a missing component themselves
            logger().warning("could not publish the CI/CD component", extra={"error": type(error).__name__})


@worker_shutdown.connect  # type: ignore[untyped-decorator]
def _stop_dispatcher(**_kwargs: Any) -> None:
    dispatcher.stop()
