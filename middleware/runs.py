"""A run's life after the queue: mirror -> pipeline -> follow -> status back.

Plain functions over a `Workbench` (the configured clients), so the Celery
tasks stay thin and the steps are tested without a broker. Each step is
idempotent: a redelivered or retried task finds the mirror already pushed,
the pipeline already created (by its FIRECREST_CI_RUN_ID), and re-posting a
commit status is harmless.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import gitlab
from sqlalchemy import func, select

from middleware.crypto import SecretBox
from middleware.db import Database
from middleware.github_status import StatusReporter
from middleware.gitlab_mirror import Mirror, SourceRef, mirror_ref
from middleware.gitlab_projects import GitLabProjects, MirrorProjectSpec, client, project_path
from middleware.locks import repository_lock
from middleware.logs import logger
from middleware.models import Pipeline, Repository, Run
from middleware.pipelines import FINISHED, PipelineRefused, cancel, cancel_others, ensure_pipeline, status_of
from middleware.settings import Settings

#: GitLab pipeline status -> (run state, GitHub state, description).
FINAL = {
    "success": ("success", "success", "pipeline passed"),
    "failed": ("failed", "failure", "pipeline failed"),
    "canceled": ("canceled", "error", "pipeline canceled"),
    "skipped": ("canceled", "error", "pipeline skipped"),
}


@dataclass
class Workbench:
    settings: Settings
    db: Database
    box: SecretBox
    mirror: Mirror
    gitlab: gitlab.Gitlab
    statuses: StatusReporter
    #: How a status gets to GitHub: at once here; through a retried Celery task in workers.
    notify: Callable[[int, str, str, str | None], None] | None = None

    @classmethod
    def build(cls, settings: Settings, db: Database, box: SecretBox) -> Workbench:
        return cls(
            settings=settings,
            db=db,
            box=box,
            mirror=Mirror(settings.data_dir / "mirrors", settings.gitlab_token or None),
            gitlab=client(settings.gitlab_url, settings.gitlab_token),
            statuses=StatusReporter(settings.github_api_url, write_interval=settings.github_write_interval),
        )

    @property
    def projects(self) -> GitLabProjects:
        hook = (
            f"{self.settings.public_url.rstrip('/')}/webhooks/gitlab"
            if self.settings.gitlab_webhook_token
            else None
        )
        return GitLabProjects(
            self.gitlab, self.settings.gitlab_group, hook, self.settings.gitlab_webhook_token or None
        )

    def context(self, pipeline: str) -> str:
        return f"{self.settings.command_prefix}/{pipeline}"


@dataclass(frozen=True)
class RunView:
    """What the steps need of a run, read in one short transaction."""

    run_id: int
    repository_id: int
    full_name: str
    clone_url: str
    pipeline: str
    entrypoint: str
    system: str
    cancel_superseded: bool
    ref: str
    sha: str
    kind: str
    pr_number: int | None
    variables: dict[str, str]
    secret_variables: dict[str, str]
    client_id: str
    client_secret: str
    account: str | None
    notification_token: str
    gitlab_pipeline_id: int | None
    state: str
    private: bool = False


def load(bench: Workbench, run_id: int) -> RunView | None:
    with bench.db.session() as session:
        run = session.get(Run, run_id)
        if run is None:
            return None
        repo = session.get(Repository, run.repository_id)
        pipeline = session.scalar(
            select(Pipeline).where(
                Pipeline.repository_id == run.repository_id, Pipeline.name == run.pipeline_name
            )
        )
        if repo is None or pipeline is None:
            return None
        return RunView(
            run_id=run.id,
            repository_id=repo.id,
            full_name=repo.full_name,
            clone_url=repo.clone_url,
            pipeline=pipeline.name,
            entrypoint=pipeline.entrypoint,
            system=pipeline.system,
            cancel_superseded=pipeline.cancel_superseded,
            ref=run.ref,
            sha=run.sha,
            kind=run.trigger_kind,
            pr_number=run.pr_number,
            variables=dict(run.variables or {}),
            secret_variables=json.loads(bench.box.open(pipeline.variables_enc))
            if pipeline.variables_enc
            else {},
            client_id=repo.firecrest_client_id,
            client_secret=bench.box.open(repo.firecrest_client_secret_enc),
            account=repo.default_account,
            notification_token=bench.box.open(repo.notification_token_enc),
            gitlab_pipeline_id=run.gitlab_pipeline_id,
            state=run.state,
            private=repo.source_private,
        )


def _update(bench: Workbench, run_id: int, **values: Any) -> None:
    with bench.db.session() as session:
        run = session.get(Run, run_id)
        if run is not None:
            for key, value in values.items():
                setattr(run, key, value)


def project_variables(bench: Workbench, view: RunView) -> dict[str, str]:
    """Credentials and defaults as masked project variables, never pipeline variables."""
    values = {
        "FIRECREST_URL": bench.settings.firecrest_url,
        "AUTH_TOKEN_URL": bench.settings.firecrest_token_url,
        "FIRECREST_CLIENT_ID": view.client_id,
        "FIRECREST_CLIENT_SECRET": view.client_secret,
        "FIRECREST_SYSTEM": view.system,
        "FIRECREST_ACCOUNT": view.account or "",
        **view.secret_variables,
    }
    return {k: v for k, v in values.items() if v}


def pipeline_variables(view: RunView) -> dict[str, str]:
    """Where the code comes from, and the comment or API variables; no secrets."""
    return {
        **view.variables,
        "FIRECREST_CI_SOURCE_URL": view.clone_url,
        "FIRECREST_CI_SOURCE_SHA": view.sha,
        "FIRECREST_CI_SOURCE_REPOSITORY": view.full_name,
        "FIRECREST_CI_SOURCE_REF": view.ref,
        "FIRECREST_CI_TRIGGER": view.kind,
        "FIRECREST_CI_PR": str(view.pr_number or ""),
    }


def gitlab_ref(ref: str) -> str:
    """The mirror branch (or tag) name a pipeline runs on."""
    target = mirror_ref(ref)
    return target.removeprefix("refs/heads/").removeprefix("refs/tags/")


def project_spec(bench: Workbench, view: RunView) -> MirrorProjectSpec:
    return MirrorProjectSpec(
        repository_id=view.repository_id,
        pipeline=view.pipeline,
        entrypoint=view.entrypoint,
        visibility="private" if view.private else "public",  # the mirror follows the source
        variables=project_variables(bench, view),
    )


def sync_projects(bench: Workbench, repository_id: int) -> int:
    """Update the mirror projects that exist for a repository after its registration changed."""
    with bench.db.session() as session:
        run_ids = {
            name: run_id
            for name, run_id in session.execute(
                select(Run.pipeline_name, func.max(Run.id))
                .where(Run.repository_id == repository_id)
                .group_by(Run.pipeline_name)
            )
        }
    updated = 0
    for run_id in run_ids.values():
        view = load(bench, run_id)
        if view is None:
            continue
        try:
            bench.gitlab.projects.get(project_path(bench.settings.gitlab_group, repository_id, view.pipeline))
        except gitlab.exceptions.GitlabGetError:
            continue  # never mirrored: it is created with the current values on its first run
        bench.projects.ensure_project(project_spec(bench, view))
        updated += 1
    return updated


def start(bench: Workbench, run_id: int) -> str:
    """Mirror the commit, create the pipeline, post `pending`. Returns the run's state."""
    view = load(bench, run_id)
    if view is None:
        return "gone"
    if view.gitlab_pipeline_id is not None or view.state in ("canceled", "error"):
        return view.state
    if view.cancel_superseded and _newer_run_exists(bench, view):
        # Tasks may run out of order: never push an older commit over a newer one.
        _update(bench, run_id, state="canceled", error="superseded by a newer commit")
        report(bench, run_id, "error", "superseded by a newer commit", None)
        return "canceled"
    spec = project_spec(bench, view)
    ref = gitlab_ref(view.ref)
    # Mirror and create under one lock: the mirror branch must still point at this commit
    # when GitLab resolves the pipeline's ref.
    with _lock(bench, view.repository_id):
        project = bench.projects.ensure_project(spec)
        sha = bench.mirror.fetch(
            view.repository_id, view.clone_url, SourceRef.for_trigger(view.ref, view.sha)
        )
        bench.mirror.push(view.repository_id, project.http_url_to_repo, sha, mirror_ref(view.ref))
        _update(bench, run_id, state="mirrored")
        if view.cancel_superseded:
            for cancelled in cancel_others(project, ref, view.sha):
                supersede(bench, view.repository_id, view.pipeline, cancelled)
        try:
            pipeline = ensure_pipeline(project, run_id, ref, view.sha, pipeline_variables(view))
        except PipelineRefused as refusal:
            _update(bench, run_id, state="error", error=str(refusal))
            report(bench, run_id, "error", f"could not start: {refusal}", None)
            return "error"
    _update(bench, run_id, state="pending", gitlab_pipeline_id=pipeline.id, gitlab_pipeline_url=pipeline.url)
    logger().info("pipeline created", extra={"run_id": run_id, "pipeline_id": pipeline.id})
    report(bench, run_id, "pending", f"pipeline {pipeline.id} started on {view.system}", pipeline.url)
    return "pending"


def _newer_run_exists(bench: Workbench, view: RunView) -> bool:
    with bench.db.session() as session:
        newer = session.scalar(
            select(Run.id).where(
                Run.repository_id == view.repository_id,
                Run.pipeline_name == view.pipeline,
                Run.ref == view.ref,
                Run.sha != view.sha,
                Run.id > view.run_id,
            )
        )
    return newer is not None


def supersede(bench: Workbench, repository_id: int, pipeline: str, gitlab_pipeline_id: int) -> None:
    with bench.db.session() as session:
        run = session.scalar(
            select(Run).where(
                Run.repository_id == repository_id,
                Run.pipeline_name == pipeline,
                Run.gitlab_pipeline_id == gitlab_pipeline_id,
            )
        )
        if run is None:
            return
        run.state = "canceled"
        run.error = "superseded by a newer commit"
        run_id, url = run.id, run.gitlab_pipeline_url
    report(bench, run_id, "error", "superseded by a newer commit", url)


def follow(bench: Workbench, run_id: int, status: str | None = None) -> str:
    """Record a pipeline's status (from its hook, or read now) and report a final one."""
    view = load(bench, run_id)
    if (
        view is None
        or view.gitlab_pipeline_id is None
        or view.state in ("success", "failed", "canceled", "error")
    ):
        return view.state if view else "gone"
    if status is None:
        path = project_path(bench.settings.gitlab_group, view.repository_id, view.pipeline)
        project = bench.gitlab.projects.get(path, lazy=True)
        status = status_of(project, view.gitlab_pipeline_id).status
    if status not in FINISHED:
        _update(bench, run_id, state="running" if status == "running" else "pending")
        return status
    state, github_state, description = FINAL[status]
    _update(bench, run_id, state=state)
    with bench.db.session() as session:
        url = session.get(Run, run_id).gitlab_pipeline_url  # type: ignore[union-attr]
    report(bench, run_id, github_state, f"{description} on {view.system}", url)
    return state


def report(bench: Workbench, run_id: int, state: str, description: str, url: str | None) -> None:
    """Hand a commit status to the notifier (a retried task in workers), or post it now."""
    if bench.notify is not None:
        bench.notify(run_id, state, description, url)
        return
    post_status(bench, run_id, state, description, url)


def post_status(bench: Workbench, run_id: int, state: str, description: str, url: str | None) -> None:
    """Post a commit status now; raises StatusNotPosted when GitHub does not take it."""
    view = load(bench, run_id)
    if view is None:
        return
    bench.statuses.post(
        view.notification_token,
        view.full_name,
        view.sha,
        state=state,
        context=bench.context(view.pipeline),
        description=description,
        url=url,
    )


def cleanup(bench: Workbench, repository_id: int, ref: str) -> int:
    """A source branch or PR went away: delete its mirror branches and cancel their pipelines."""
    with bench.db.session() as session:
        names = [
            p.name for p in session.scalars(select(Pipeline).where(Pipeline.repository_id == repository_id))
        ]
    removed = 0
    for name in names:
        path = project_path(bench.settings.gitlab_group, repository_id, name)
        try:
            project = bench.gitlab.projects.get(path)
        except gitlab.exceptions.GitlabGetError:
            continue  # never mirrored
        target = gitlab_ref(ref)
        for pipeline in project.pipelines.list(ref=target, iterator=True):
            if pipeline.status not in FINISHED:
                cancel(project, int(pipeline.id))
        with _lock(bench, repository_id):
            if any(b.name == target for b in project.branches.list(get_all=True)):
                bench.mirror.delete(repository_id, project.http_url_to_repo, mirror_ref(ref))
                removed += 1
    return removed


def unfinished(db: Database, limit: int = 200) -> list[int]:
    """Runs whose pipeline may still be going: the reconciliation's work list."""
    with db.session() as session:
        return list(
            session.scalars(
                select(Run.id)
                .where(Run.state.in_(("pending", "running")), Run.gitlab_pipeline_id.is_not(None))
                .order_by(Run.id)
                .limit(limit)
            )
        )


def _lock(bench: Workbench, repository_id: int) -> AbstractContextManager[None]:
    """Redis lock when the broker is Redis (workers on several hosts), else a file lock."""
    broker = bench.settings.broker_url
    return repository_lock(
        repository_id,
        redis_url=broker if broker.startswith(("redis://", "rediss://")) else None,
        lock_dir=bench.settings.data_dir / "locks",
        timeout=bench.settings.mirror_lock_timeout,
    )
