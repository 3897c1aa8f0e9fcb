"""Celery entry point: `celery -A middleware.worker:celery worker`.

No beat is needed: each worker runs the dispatcher (see middleware.runs.dispatcher)
that hands due runs and outbox rows to the queue.
"""

from __future__ import annotations

from typing import Any

from celery.signals import worker_ready, worker_shutdown

from middleware.app import create_app
from middleware.logs import logger
from middleware.managed_gitlab import projects as gitlab_projects
from middleware.managed_gitlab import templates_project
from middleware.runs.dispatcher import Dispatcher
from middleware.services import EXTENSION
from middleware.settings import refuse_to_start

with refuse_to_start():
    app = create_app()
services = app.extensions[EXTENSION]
celery = services.celery
dispatcher = Dispatcher(services.db, celery, services.settings.dispatch_lease, services.settings.broker_url)


@worker_ready.connect  # type: ignore[untyped-decorator]
def _start_dispatcher(**_kwargs: Any) -> None:
    """Each worker also hands due work to the queue, and keeps the managed GitLab's
    templates project up to date."""
    dispatcher.start()
    settings = services.settings
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
