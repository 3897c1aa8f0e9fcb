"""A run's life after the queue: mirror -> pipeline -> follow -> status back.

Plain functions over a `Workbench` (the configured clients), so the Celery
tasks stay thin and the steps are tested without a broker. `advance` moves a
run one step on from whatever state is recorded, so any worker can resume any
run after any crash: the mirror push is repeated harmlessly, the pipeline is
found again by its FIRECREST_CI_RUN_ID before one is created, a run ends once
(compare-and-set in `reporting.finish`), and each status is posted once
(`reporting.deliver`). A failing step is tried again after a backoff; a run
that cannot start within START_WINDOW ends `error`, and a final status that
cannot be posted within REPORT_WINDOW leaves the run marked `unreported`.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
import shutil
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

import gitlab
import redis
import requests
from sqlalchemy import func, select, update
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from middleware.crypto import KeyRingMismatch, SecretBox
from middleware.db import Database
from middleware.logs import logger
from middleware.managed_gitlab.pipelines import (
    FINISHED,
    PipelineMoved,
    PipelineRefused,
    cancel,
    cancel_others,
    ensure_pipeline,
    status_of,
)
from middleware.managed_gitlab.projects import GitLabProjects, MirrorProjectSpec, client, project_path
from middleware.models import Pipeline, Repository, Run, utcnow
from middleware.runs import check_details
from middleware.runs.locks import LockBusy, repository_lock
from middleware.runs.mirror import Mirror, MirrorError, SourceRef, mirror_ref
from middleware.runs.reporting import FINAL_STATES, Target, deliver, finish, want
from middleware.runs.schedule import aware, backoff, pick, settle
from middleware.settings import Settings
from middleware.sources import catalogue
from middleware.sources.base import PinUnavailable, PullRequestGone, Reporter, ReportFailed, Source
from middleware.sources.github.app_auth import GitHubApp
from middleware.sources.github.checks import CheckRunReporter
from middleware.web.links import run_page

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
    sources: dict[str, Source]
    #: Each provider's reporter, made once.
    reporters: dict[str, Reporter] = field(default_factory=dict)
    #: The GitHub App in App mode (installation tokens for check runs), else None.
    github_app: GitHubApp | None = None

    @classmethod
    def build(
        cls, settings: Settings, db: Database, box: SecretBox, *, github_app: GitHubApp | None = None
    ) -> Workbench:
        return cls(
            settings=settings,
            db=db,
            box=box,
            mirror=Mirror(settings.data_dir / "mirrors", settings.gitlab_token or None),
            gitlab=client(settings.gitlab_url, settings.gitlab_token),
            sources=catalogue.build(settings, db),
            github_app=github_app,
        )

    def reporter(self, provider: str) -> Reporter:
        """Where statuses and comments of `provider`'s registrations go."""
        if provider not in self.reporters:
            if provider == "github" and self.settings.app_mode:  # one check run per run
                self.reporters[provider] = CheckRunReporter(
                    self.settings.github_api_url,
                    write_interval=self.settings.github_write_interval,
                    timeout=self.settings.github_timeout,
                )
            else:
                self.reporters[provider] = self.sources[provider].reporter()
        return self.reporters[provider]

    @property
    def projects(self) -> GitLabProjects:
        base = self.settings.public_url.rstrip("/")
        hook, legacy = f"{base}/webhooks/managed-gitlab/pipeline", f"{base}/webhooks/gitlab"
        return GitLabProjects(self.gitlab, self.settings.gitlab_group, hook, legacy_hook_urls=(legacy,))

    def context(self, pipeline: str) -> str:
        return f"{self.settings.command_prefix}/{pipeline}"


@dataclass(frozen=True)
class RunView:
    """What the steps need of a run, read in one short transaction."""

    run_id: int
    repository_id: int
    full_name: str
    clone_url: str
    provider: str
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
    gitlab_pipeline_url: str | None
    state: str
    ticket: int
    private: bool = False
    #: The GitHub App's installation on the repository (App mode), and the run's status_seq.
    installation_id: int | None = None
    status_seq: int = 0
    #: Why the registration's credentials are disabled (the App was removed), or None.
    disabled: str | None = None


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
            provider=repo.provider,
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
            gitlab_pipeline_url=run.gitlab_pipeline_url,
            state=run.state,
            ticket=run.ticket,
            private=repo.source_private,
            installation_id=repo.installation_id,
            status_seq=run.status_seq,
            disabled=(repo.disabled_reason or "the GitHub App was removed") if repo.disabled_at else None,
        )


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


def pipeline_variables(view: RunView, source_url: str | None = None) -> dict[str, str]:
    """Where the code comes from (`source_url`: a fork's, when the pull request's commits live
    only there), and the comment or API variables; no secrets."""
    return {
        **view.variables,
        "FIRECREST_CI_SOURCE_URL": source_url or view.clone_url,
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
    token, new = hook_token(bench, view.repository_id, view.pipeline)
    return MirrorProjectSpec(
        repository_id=view.repository_id,
        pipeline=view.pipeline,
        entrypoint=view.entrypoint,
        visibility="private" if view.private else "public",  # the mirror follows the source
        variables=project_variables(bench, view),
        hook_token=token,
        hook_token_new=new,
    )


def hook_token(bench: Workbench, repository_id: int, pipeline: str) -> tuple[str, bool]:
    """The mirror project's own pipeline-hook token, made on first use; (token, just made)."""
    where = (Pipeline.repository_id == repository_id, Pipeline.name == pipeline)
    with bench.db.session() as session:
        sealed = session.scalar(select(Pipeline.hook_token_enc).where(*where))
        if sealed is not None:
            return bench.box.open(sealed), False
        made = secrets.token_urlsafe(32)
        done = session.execute(
            update(Pipeline)
            .where(*where, Pipeline.hook_token_enc.is_(None))
            .values(hook_token_enc=bench.box.seal(made))
        )
        if getattr(done, "rowcount", 0):
            return made, True
    with bench.db.session() as session:  # another worker made it first
        sealed = session.scalar(select(Pipeline.hook_token_enc).where(*where))
    assert sealed is not None
    return bench.box.open(sealed), False


#: Failures worth another try: the next attempt may find GitLab, GitHub, the source, the lock
#: or the database back. Anything else is tried again too, but logged as a bug.
TRANSIENT: tuple[type[BaseException], ...] = (
    gitlab.exceptions.GitlabError,
    requests.RequestException,
    MirrorError,
    LockBusy,
    PipelineMoved,
    ReportFailed,
    PinUnavailable,
    PullRequestGone,
    OperationalError,
    InterfaceError,
    PoolTimeout,
    redis.exceptions.RedisError,
    OSError,
)
SUPERSEDED = "superseded by a newer commit"
#: Why runs end at once when the service has no managed GitLab to run them on.
UNCONFIGURED = "the CI service has no managed GitLab configured (GITLAB_URL): ask its operator"


def advance(bench: Workbench, run_id: int, ticket: int | None = None) -> str:
    """Move a run on from its recorded state and settle when it is looked at next.

    `ticket` is the hand-out this call answers (None in-process): a stale one is skipped.
    Returns the run's state afterwards ("stale" or "gone" when there was nothing to do).
    """
    if ticket is not None and not pick(bench.db, run_id, ticket, bench.settings.dispatch_lease):
        return "stale"
    try:
        view = load(bench, run_id)
    except KeyRingMismatch as error:  # its credentials: a failed step like any other, tried again
        return _failed(bench, run_id, ticket, error)
    if view is None:
        return "gone"
    try:
        if not bench.settings.gitlab_url and view.state not in FINAL_STATES:  # never waits in silence
            logger().error("run ended: GITLAB_URL is not configured", extra={"run_id": run_id})
            _end(bench, run_id, "error", "error", UNCONFIGURED, view.gitlab_pipeline_url, error=UNCONFIGURED)
        elif view.state in ("queued", "mirrored"):
            _start(bench, view)
        elif view.state in ("pending", "running"):
            _follow(bench, view)
        _deliver(bench, run_id)
    except Exception as error:  # noqa: BLE001 - every failure is tried again, within the windows
        return _failed(bench, run_id, view.ticket, error)
    return _settle(bench, run_id, view.ticket)


def start(bench: Workbench, run_id: int) -> str:
    """Mirror the commit, create the pipeline and post `pending` (in-process, raising)."""
    view = load(bench, run_id)
    if view is None:
        return "gone"
    _start(bench, view)
    _deliver(bench, run_id)
    return _state(bench, run_id)


def follow(bench: Workbench, run_id: int) -> str:
    """Read the pipeline's status and report a final one (in-process, raising)."""
    view = load(bench, run_id)
    if view is None:
        return "gone"
    if view.state in ("pending", "running"):
        _follow(bench, view)
    _deliver(bench, run_id)
    return _state(bench, run_id)


def _start(bench: Workbench, view: RunView) -> None:
    if view.gitlab_pipeline_id is not None or view.state not in ("queued", "mirrored"):
        return
    if view.disabled is not None:  # a restart or API trigger after the App was removed
        reason = f"credentials disabled: {view.disabled}"
        _end(bench, view.run_id, "canceled", "error", reason, None, error=reason)
        return
    if view.cancel_superseded and _newer_run_exists(bench, view):
        # Runs may be driven out of order: never push an older commit over a newer one.
        _end(bench, view.run_id, "canceled", "error", SUPERSEDED, None, error=SUPERSEDED)
        return
    _report_queued(bench, view)
    spec = project_spec(bench, view)
    ref = gitlab_ref(view.ref)
    # Mirror and create under one lock: the mirror branch must still point at this commit
    # when GitLab resolves the pipeline's ref, and the newer-run check must still hold.
    with _lock(bench, view.repository_id):
        current = load(bench, view.run_id)
        if (
            current is None
            or current.gitlab_pipeline_id is not None
            or current.state not in ("queued", "mirrored")
        ):
            return
        if view.cancel_superseded and _newer_run_exists(bench, view):
            _end(bench, view.run_id, "canceled", "error", SUPERSEDED, None, error=SUPERSEDED)
            return
        project = bench.projects.ensure_project(spec)
        wanted = bench.sources[view.provider].fetch_spec(
            view.ref, view.sha, view.pr_number, view.full_name, view.clone_url, view.notification_token
        )
        sha = bench.mirror.fetch(
            view.repository_id,
            wanted.url or view.clone_url,
            SourceRef(wanted.ref, wanted.sha),
            ca_file=wanted.ca_file,
        )
        bench.mirror.push(view.repository_id, project.http_url_to_repo, sha, mirror_ref(view.ref))
        _mark(bench, view.run_id, state="mirrored")
        if view.cancel_superseded:
            for cancelled in cancel_others(project, ref, view.sha):
                supersede(bench, view.repository_id, view.pipeline, cancelled)
        try:
            variables = pipeline_variables(view, wanted.url)
            pipeline = ensure_pipeline(project, view.run_id, ref, view.sha, variables)
        except PipelineRefused as refusal:
            _end(
                bench, view.run_id, "error", "error", f"could not start: {refusal}", None, error=str(refusal)
            )
            return
    recorded = want(
        bench.db,
        view.run_id,
        "pending",
        f"pipeline {pipeline.id} started on {view.system}",
        pipeline.url,
        state="pending",
        gitlab_pipeline_id=pipeline.id,
        gitlab_pipeline_url=pipeline.url,
    )
    if recorded:
        logger().info("pipeline created", extra={"run_id": view.run_id, "pipeline_id": pipeline.id})


def _follow(bench: Workbench, view: RunView) -> None:
    assert view.gitlab_pipeline_id is not None
    path = project_path(bench.settings.gitlab_group, view.repository_id, view.pipeline)
    project = bench.gitlab.projects.get(path, lazy=True)
    try:
        status = status_of(project, view.gitlab_pipeline_id).status
    except gitlab.exceptions.GitlabGetError as error:
        if error.response_code != 404:
            raise
        reason = f"pipeline {view.gitlab_pipeline_id} is gone from GitLab"
        _end(bench, view.run_id, "error", "error", reason, view.gitlab_pipeline_url, error=reason)
        return
    if status not in FINISHED:
        _mark(
            bench,
            view.run_id,
            state="running" if status == "running" else "pending",
            only=("pending", "running"),
        )
        return
    state, github_state, description = FINAL[status]
    if status == "canceled" and view.cancel_superseded and _newer_run_exists(bench, view):
        description = SUPERSEDED  # cancelled by the newer commit's run before it could say so
    _end(
        bench,
        view.run_id,
        state,
        github_state,
        f"{description} on {view.system}" if description != SUPERSEDED else description,
        view.gitlab_pipeline_url,
        error=SUPERSEDED if description == SUPERSEDED else None,
    )


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
    """A newer commit's run cancelled this pipeline: its run ends `superseded`."""
    with bench.db.session() as session:
        found = session.execute(
            select(Run.id, Run.gitlab_pipeline_url).where(
                Run.repository_id == repository_id,
                Run.pipeline_name == pipeline,
                Run.gitlab_pipeline_id == gitlab_pipeline_id,
            )
        ).first()
    if found is not None:
        _end(bench, found[0], "canceled", "error", SUPERSEDED, found[1], error=SUPERSEDED)
        settle(bench.db, found[0], None, utcnow())  # due now, so its status goes out at once


def _end(
    bench: Workbench,
    run_id: int,
    state: str,
    github_state: str,
    description: str,
    url: str | None,
    *,
    error: str | None = None,
) -> None:
    if finish(bench.db, run_id, state, github_state, description, url, error=error):
        logger().info("run finished", extra={"run_id": run_id, "state": state})


def _mark(
    bench: Workbench, run_id: int, *, state: str, only: tuple[str, ...] = ("queued", "mirrored")
) -> None:
    """Record progress, never over a final state."""
    with bench.db.session() as session:
        session.execute(update(Run).where(Run.id == run_id, Run.state.in_(only)).values(state=state))


def _deliver(bench: Workbench, run_id: int) -> bool:
    view = load(bench, run_id)
    if view is None:
        return True
    reporter = bench.reporter(view.provider)
    checks = isinstance(reporter, CheckRunReporter)
    token = _installation_token(bench, view) if checks else view.notification_token
    details = None
    if checks:
        path = project_path(bench.settings.gitlab_group, view.repository_id, view.pipeline)
        secrets = [
            *view.secret_variables.values(), view.client_secret, view.notification_token, token,
            bench.settings.gitlab_token,
        ]  # fmt: skip
        details = check_details.for_pipeline(
            bench.gitlab.projects.get(path, lazy=True),
            view.gitlab_pipeline_id,
            view.gitlab_pipeline_url,
            secrets,
        )
    target = Target(
        token, view.full_name, view.sha, bench.context(view.pipeline), view.pr_number,
        link=run_page(bench.settings.public_url, run_id), details=details,
    )  # fmt: skip
    return deliver(bench.db, reporter, run_id, target)


def _installation_token(bench: Workbench, view: RunView) -> str:
    """The App's token for the repository: check runs can only be written by an App."""
    app = bench.github_app
    if app is None:
        raise ReportFailed("App mode without a GitHub App: GITHUB_APP_ID is set but the App was not built")
    installation = view.installation_id
    if installation is None:
        found = app.repository_installation(view.full_name)
        if found is None:
            raise ReportFailed(f"the GitHub App is not installed on {view.full_name}")
        installation = found[0]
    return app.installation_token(installation)


def _report_queued(bench: Workbench, view: RunView) -> None:
    """A check run shows `queued` as soon as a worker takes the run up (statuses wait for the
    pipeline). Best effort: the mirror and the pipeline go on if GitHub does not take it."""
    if view.status_seq or not isinstance(bench.reporter(view.provider), CheckRunReporter):
        return
    if want(bench.db, view.run_id, "pending", f"queued for {view.system}", None):
        try:
            _deliver(bench, view.run_id)
        except ReportFailed as error:
            logger().warning(
                "queued check run not posted", extra={"run_id": view.run_id, "error": str(error)}
            )


def _state(bench: Workbench, run_id: int) -> str:
    with bench.db.session() as session:
        state = session.scalar(select(Run.state).where(Run.id == run_id))
    return state or "gone"


def _settle(bench: Workbench, run_id: int, ticket: int) -> str:
    """After a step went through: when to look at the run next."""
    now = utcnow()
    with bench.db.session() as session:
        run = session.get(Run, run_id)
        if run is None:
            return "gone"
        run.attempts = 0
        state = run.state
        if run.status_seq > run.posted_seq and not run.unreported:
            claim = aware(run.status_claim_until)
            next_at: dt.datetime | None = max(now, claim + dt.timedelta(seconds=1)) if claim else now
        elif state in FINAL_STATES:
            next_at = None
        elif state in ("pending", "running"):
            next_at = now + dt.timedelta(seconds=bench.settings.reconcile_interval)
        else:
            next_at = now
    settle(bench.db, run_id, ticket, next_at)
    return state


def _failed(bench: Workbench, run_id: int, ticket: int | None, error: BaseException) -> str:
    """A step failed: try again after a backoff, or end the run when its window is over."""
    message = f"{type(error).__name__}: {error}"[:500]
    log = logger().warning if isinstance(error, TRANSIENT) else logger().error
    log(
        "run step failed; will retry",
        extra={"run_id": run_id, "error": message},
        exc_info=not isinstance(error, (*TRANSIENT, KeyRingMismatch)),  # the operator's, not a bug
    )
    settings = bench.settings
    now = utcnow()
    with bench.db.session() as session:
        run = session.get(Run, run_id)
        if run is None:
            return "gone"
        run.attempts += 1
        run.last_error = message
        state, attempts = run.state, run.attempts
        created, finished = aware(run.created_at) or now, aware(run.finished_at)
        started = run.gitlab_pipeline_id is not None
    next_at: dt.datetime | None = now + dt.timedelta(seconds=backoff(attempts, settings.retry_backoff_max))
    if state not in FINAL_STATES and not started and (now - created).total_seconds() > settings.start_window:
        reason = f"could not start within {settings.start_window // 60} min: {message}"
        _end(bench, run_id, "error", "error", reason, None, error=reason)
        next_at = now
    elif state in FINAL_STATES and finished and (now - finished).total_seconds() > settings.report_window:
        with bench.db.session() as session:
            session.execute(update(Run).where(Run.id == run_id).values(unreported=True))
        logger().error("final status not reported in time", extra={"run_id": run_id, "error": message})
        next_at = None
    settle(bench.db, run_id, ticket, next_at)
    return state


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


def purge(bench: Workbench, repository_id: int, pipelines: list[str]) -> int:
    """A registration was deleted: delete its mirror projects (pipelines, logs, CI variables with
    the FirecREST credentials), their group and the mirror cache. Returns the projects deleted."""
    group = bench.settings.gitlab_group.strip("/")
    deleted = 0
    for name in pipelines:
        try:
            bench.gitlab.projects.delete(project_path(group, repository_id, name))
            deleted += 1
        except gitlab.exceptions.GitlabDeleteError as error:
            if error.response_code != 404:
                raise
    try:
        bench.gitlab.groups.delete(f"{group}/{repository_id}")
    except gitlab.exceptions.GitlabDeleteError as error:
        if error.response_code != 404:
            raise
    with _lock(bench, repository_id):
        shutil.rmtree(bench.mirror.cache_root / f"source-{repository_id}.git", ignore_errors=True)
    logger().info("registration purged", extra={"repository_id": repository_id, "projects": deleted})
    return deleted


def ask_for_approval(bench: Workbench, request: dict[str, Any]) -> None:
    """Say on the pull request why a `run` comment started nothing, and what to do."""
    with bench.db.session() as session:
        repo = session.get(Repository, int(request["repository_id"]))
        if repo is None:
            return
        token, full_name = bench.box.open(repo.notification_token_enc), repo.full_name
        provider, installation = repo.provider, repo.installation_id
    if provider == "github" and bench.settings.app_mode:  # the App comments, not a person's token
        if bench.github_app is None or installation is None:
            raise ReportFailed(f"the GitHub App cannot comment on {full_name}: no installation")
        token = bench.github_app.installation_token(installation)
    sha, prefix = str(request["sha"])[:12], bench.settings.command_prefix
    bench.reporter(provider).comment(
        token,
        full_name,
        int(request["pr_number"]),
        f"@{request['commenter']} your `{prefix} run` comment started nothing: this pull request's "
        f"head {sha} was not seen by the CI service before your comment was made, so the comment "
        f"does not approve it. Review the current commits, then comment `{prefix} run` again.",
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
