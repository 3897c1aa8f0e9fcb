"""Celery app and tasks: thin orchestration over plain, testable functions.

The database is the schedule (see middleware.runs.schedule): tasks carry only a run
id and its ticket, or an outbox row's id, and every task is idempotent, so a
message that is lost, redelivered or handed out twice changes nothing. Tasks
acknowledge late (`acks_late`): a worker that dies mid-task leaves the message
for another; a task that fails records its failure and the dispatcher hands
the work out again after a backoff. Celery's own retries are not used: their
countdown messages live in the broker and would be lost with it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from celery import Celery, Task
from flask import Flask

from middleware.crypto import SecretBox
from middleware.db import Database
from middleware.logs import logger
from middleware.registry.trust import resolve_trusted_users
from middleware.runs import outbox, withdrawal
from middleware.runs import steps as runs
from middleware.runs.schedule import ADVANCE_RUN
from middleware.runs.withdrawal import CANCEL_PIPELINES, PURGE_CREDENTIALS
from middleware.settings import Settings
from middleware.sources.github import hook_sweep
from middleware.sources.github.app_auth import GitHubApp

RECORD_CLEANUP = "firecrest_ci.record_cleanup"
SYNC_PROJECTS = "firecrest_ci.sync_projects"
RESOLVE_TRUSTED_USERS = "firecrest_ci.resolve_trusted_users"
PURGE_REPOSITORY = "firecrest_ci.purge_repository"
NOTIFY_STALE_APPROVAL = "firecrest_ci.notify_stale_approval"
SWEEP_HOOK_DELIVERIES = "firecrest_ci.sweep_hook_deliveries"


def periodic_tasks(settings: Settings) -> dict[str, float]:
    """Tasks the dispatchers start once per interval across workers (see runs.periodic)."""
    return {SWEEP_HOOK_DELIVERIES: settings.hook_sweep_interval} if settings.app_mode else {}


class _OwnTasks(Celery):  # type: ignore[misc]
    """Tasks belong to the app that registered them: Celery's default (`shared=True`) would add
    them to every later app of the process too, where the first one registered wins (an older
    test app's database)."""

    def task(self, *args: Any, **options: Any) -> Any:
        options.setdefault("shared", False)
        return super().task(*args, **options)


def make_celery(settings: Settings, flask_app: Flask | None = None) -> Celery:
    """The Celery app, configured from the same settings as the Flask app."""
    celery = _OwnTasks("firecrest_ci", broker=settings.broker_url)
    celery.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,
        broker_connection_retry_on_startup=True,
        # A broker away for minutes is waited for, not a reason for the worker to exit.
        broker_connection_max_retries=None,
        task_default_queue="firecrest-ci",
        # stderr stays the process's own: Celery would log each JSON line behind a prefix.
        worker_redirect_stdouts=False,
    )
    if settings.broker_url.startswith(("redis://", "rediss://")):
        # Unacknowledged tasks come back after this (the dispatcher's lease usually comes first).
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


def register_tasks(
    celery: Celery,
    db: Database,
    settings: Settings,
    bench: Callable[[], runs.Workbench] | None = None,
    resolve_users: Callable[[str, list[str]], dict[str, int]] | None = None,
    box: SecretBox | None = None,
    *,
    github_app: GitHubApp | None = None,
) -> None:
    """Thin tasks over plain functions; `bench` builds the configured clients on first use."""
    cached: list[runs.Workbench] = []

    def workbench() -> runs.Workbench:
        if not cached:
            assert bench is not None, "this app was built without GitLab/GitHub clients"
            cached.append(bench())
        return cached[0]

    def settling(outbox_id: int | None) -> Any:
        return outbox.settling(
            db,
            outbox_id,
            lease=settings.dispatch_lease,
            backoff_max=settings.retry_backoff_max,
            window=settings.start_window,
        )

    @celery.task(name=ADVANCE_RUN, acks_late=True)  # type: ignore[untyped-decorator]
    def advance_run_task(run_id: int, ticket: int | None = None) -> str:
        if bench is None:  # no GITLAB_URL: steps.advance ends the run `error` at once, saying why
            assert box is not None
            unconfigured = runs.Workbench.build(settings, db, box, github_app=github_app)
            return runs.advance(unconfigured, run_id, ticket)
        return runs.advance(workbench(), run_id, ticket)

    @celery.task(name=RECORD_CLEANUP, acks_late=True)  # type: ignore[untyped-decorator]
    def record_cleanup_task(cleanup: dict[str, Any], outbox_id: int | None = None) -> int:
        logger().info(
            "mirror cleanup", extra={"repository_id": cleanup["repository_id"], "ref": cleanup["ref"]}
        )
        with settling(outbox_id):
            if bench is None:
                return 0
            return runs.cleanup(workbench(), int(cleanup["repository_id"]), str(cleanup["ref"]))

    @celery.task(name=SYNC_PROJECTS, acks_late=True)  # type: ignore[untyped-decorator]
    def sync_projects_task(payload: dict[str, Any], outbox_id: int | None = None) -> int:
        """A registration changed: bring its mirror projects' settings and variables up to date."""
        with settling(outbox_id):
            return runs.sync_projects(workbench(), int(payload["repository_id"])) if bench is not None else 0

    @celery.task(name=RESOLVE_TRUSTED_USERS, acks_late=True)  # type: ignore[untyped-decorator]
    def resolve_trusted_users_task(payload: dict[str, Any], outbox_id: int | None = None) -> int:
        """Trusted logins stored without their GitHub id (GitHub was away, or a migration)."""
        assert resolve_users is not None
        assert box is not None
        with settling(outbox_id):
            installation_token = github_app.installation_token if github_app is not None else None
            repository_id = int(payload["repository_id"])
            return resolve_trusted_users(
                db, box, resolve_users, repository_id, installation_token=installation_token
            )

    @celery.task(name=PURGE_REPOSITORY, acks_late=True)  # type: ignore[untyped-decorator]
    def purge_repository_task(payload: dict[str, Any], outbox_id: int | None = None) -> int:
        """A registration was deleted: its mirror projects, their variables and its cache go."""
        with settling(outbox_id):
            if bench is None:
                return 0
            return runs.purge(workbench(), int(payload["repository_id"]), list(payload.get("pipelines", [])))

    @celery.task(name=NOTIFY_STALE_APPROVAL, acks_late=True)  # type: ignore[untyped-decorator]
    def notify_stale_approval_task(payload: dict[str, Any], outbox_id: int | None = None) -> None:
        """A `run` comment did not approve the PR's head: ask for a fresh approval on the PR."""
        with settling(outbox_id):
            if bench is not None:
                runs.ask_for_approval(workbench(), payload)

    @celery.task(name=CANCEL_PIPELINES, acks_late=True)  # type: ignore[untyped-decorator]
    def cancel_withdrawn_pipelines_task(payload: dict[str, Any], outbox_id: int | None = None) -> int:
        """The App was removed from a repository: cancel its runs' GitLab pipelines."""
        with settling(outbox_id):
            if bench is None:
                return 0
            gl, repository_id = workbench().gitlab, int(payload["repository_id"])
            return withdrawal.cancel_pipelines(gl, settings.gitlab_group, repository_id, payload["runs"])

    @celery.task(name=PURGE_CREDENTIALS, acks_late=True)  # type: ignore[untyped-decorator]
    def purge_withdrawn_credentials_task(payload: dict[str, Any], outbox_id: int | None = None) -> bool:
        """The retention after the App's removal is over: empty the stored credentials."""
        assert box is not None
        with settling(outbox_id):
            return withdrawal.purge_credentials(
                db,
                workbench().gitlab if bench is not None else None,
                settings.gitlab_group,
                box.seal,
                int(payload["repository_id"]),
                str(payload["disabled_at"]),
            )

    @celery.task(name=SWEEP_HOOK_DELIVERIES, acks_late=True)  # type: ignore[untyped-decorator]
    def sweep_hook_deliveries_task(payload: Any = None, outbox_id: int | None = None) -> int:
        """Redeliver the App's deliveries that failed here (started by one dispatcher per interval)."""
        if github_app is None:
            return 0
        return len(hook_sweep.sweep(github_app, db, settings.hook_sweep_window).redelivered)
