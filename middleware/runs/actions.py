"""Cancel, retry and restart a run, asked for by a person (the run viewer or the API).

Each action is checked against the run's recorded state first and refused with a readable
reason when it makes no sense (cancel a finished run, retry a run without a pipeline), then
done on the managed GitLab, then recorded as a `RunAction` (who, when). The caller decides
who may ask; this module only records who did.

- cancel: the GitLab pipeline is cancelled first (nothing changes here when GitLab cannot be
  reached), then the run ends `canceled` once (`reporting.finish`, the same compare-and-set
  the steps use) and is made due, so its final status goes out at once.
- retry: GitLab retries the pipeline's failed and cancelled jobs; the run, ended, is opened
  again as `pending` and followed by the workers as before (new ticket, due now).
- restart: a new attempt of the run (`attempts.new_attempt`): a new run and a new pipeline.
"""

from __future__ import annotations

from dataclasses import dataclass

import gitlab
import requests
from gitlab.v4.objects import Project
from sqlalchemy import insert, select, update

from middleware.db import Database
from middleware.logs import logger
from middleware.managed_gitlab.pipelines import FINISHED, find_existing, status_of
from middleware.managed_gitlab.pipelines import cancel as cancel_pipeline
from middleware.managed_gitlab.projects import client, project_path
from middleware.masking import mask
from middleware.models import Pipeline, Repository, Run, RunAction, utcnow
from middleware.runs.attempts import new_attempt
from middleware.runs.reporting import FINAL_STATES, finish
from middleware.settings import Settings

#: The states in which a run has no pipeline yet: a cancel ends it before it starts.
NOT_STARTED = ("queued", "mirrored")
#: Ended runs whose failed or cancelled jobs GitLab can run again.
RETRYABLE = ("failed", "canceled", "error")
SUPERSEDED = "superseded by a newer commit"


class ActionRefused(Exception):
    """The action makes no sense now, or cannot be done: an HTTP-like status and a readable reason."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Outcome:
    """What an action did, in one sentence, and the run a restart made."""

    run_id: int
    action: str
    message: str
    new_run_id: int | None = None


@dataclass(frozen=True)
class RunControl:
    """The database and the managed GitLab (None when not configured), as the web process has them."""

    db: Database
    gitlab: gitlab.Gitlab | None
    group: str
    #: Values never shown in a refusal (GitLab's token).
    secrets: tuple[str, ...] = ()

    @classmethod
    def build(cls, settings: Settings, db: Database) -> RunControl:
        """Like `Workbench.build`, without what only the workers need (mirror, reporters)."""
        gl = client(settings.gitlab_url, settings.gitlab_token) if settings.gitlab_url else None
        return cls(db, gl, settings.gitlab_group, (settings.gitlab_token,))

    def project(self, repository_id: int, pipeline: str) -> Project:
        if self.gitlab is None:
            raise ActionRefused(
                503, "no managed GitLab is configured (GITLAB_URL); nothing can be done there"
            )
        return self.gitlab.projects.get(project_path(self.group, repository_id, pipeline), lazy=True)


@dataclass(frozen=True)
class _Seen:
    """The run as it was when the action was asked for."""

    id: int
    repository_id: int
    pipeline: str
    sha: str
    state: str
    error: str | None
    gitlab_pipeline_id: int | None
    gitlab_pipeline_url: str | None
    disabled: bool
    registered: bool


def _seen(db: Database, run_id: int) -> _Seen:
    with db.session() as session:
        run = session.get(Run, run_id)
        if run is None:
            raise ActionRefused(404, f"there is no run {run_id}")
        repository = session.get(Repository, run.repository_id)
        registered = session.scalar(
            select(Pipeline.id).where(
                Pipeline.repository_id == run.repository_id, Pipeline.name == run.pipeline_name
            )
        )
        return _Seen(
            id=run.id,
            repository_id=run.repository_id,
            pipeline=run.pipeline_name,
            sha=run.sha,
            state=run.state,
            error=run.error,
            gitlab_pipeline_id=run.gitlab_pipeline_id,
            gitlab_pipeline_url=run.gitlab_pipeline_url,
            disabled=repository is None or repository.disabled_at is not None,
            registered=registered is not None,
        )


def _record(db: Database, run_id: int, action: str, actor: str, detail: str = "") -> None:
    with db.engine.begin() as connection:
        connection.execute(
            insert(RunAction).values(run_id=run_id, action=action, actor=actor, at=utcnow(), detail=detail)
        )


def _due_now(db: Database, run_id: int, **values: object) -> bool:
    """Hand the run to the workers now with a new ticket, so no stale hand-out settles it later."""
    with db.session() as session:
        done = session.execute(
            update(Run)
            .where(Run.id == run_id)
            .values(ticket=Run.ticket + 1, picked_ticket=Run.ticket + 1, next_check_at=utcnow(), **values)
        )
        return bool(getattr(done, "rowcount", 0))


def _gitlab_failed(control: RunControl, doing: str, error: Exception) -> ActionRefused:
    """A readable refusal for a GitLab failure: refused (4xx) or unreachable (5xx, network)."""
    if isinstance(error, gitlab.exceptions.GitlabError) and error.response_code == 404:
        return ActionRefused(409, f"GitLab no longer has the pipeline to {doing}; restart the run instead")
    if isinstance(error, gitlab.exceptions.GitlabError) and error.response_code and error.response_code < 500:
        text = mask(str(error.error_message or error), control.secrets)[:300]
        return ActionRefused(409, f"GitLab refused to {doing}: {text}")
    logger().warning("GitLab unreachable for a run action", extra={"error": type(error).__name__})
    return ActionRefused(
        502, f"GitLab could not be reached to {doing}; nothing was changed, try again shortly"
    )


GITLAB_ERRORS: tuple[type[Exception], ...] = (gitlab.exceptions.GitlabError, requests.RequestException)


def cancel(control: RunControl, run_id: int, actor: str) -> Outcome:
    """Cancel the run's pipeline and end the run `canceled` (once)."""
    run = _seen(control.db, run_id)
    if run.state in FINAL_STATES:
        raise ActionRefused(
            409, f"run {run_id} already ended {run.state}; nothing to cancel (restart it to run again)"
        )
    reason = f"canceled by {actor}"
    if run.gitlab_pipeline_id is not None:
        try:
            project = control.project(run.repository_id, run.pipeline)
            status = status_of(project, run.gitlab_pipeline_id).status
            if status in FINISHED:
                _due_now(control.db, run_id)  # the workers record how it ended
                raise ActionRefused(
                    409, f"pipeline {run.gitlab_pipeline_id} already ended {status}; the run shows it shortly"
                )
            cancel_pipeline(project, run.gitlab_pipeline_id)
        except GITLAB_ERRORS as error:
            raise _gitlab_failed(control, f"cancel pipeline {run.gitlab_pipeline_id}", error) from None
    ended = finish(control.db, run_id, "canceled", "error", reason, run.gitlab_pipeline_url, error=reason)
    if run.gitlab_pipeline_id is None and control.gitlab is not None:
        _cancel_unrecorded(control, run)
    _due_now(control.db, run_id)
    _record(control.db, run_id, "cancel", actor, "" if ended else "the run had ended meanwhile")
    logger().info("run canceled", extra={"run_id": run_id, "actor": actor})
    if not ended:
        return Outcome(
            run_id, "cancel", f"run {run_id} had already ended meanwhile; its pipeline was cancelled"
        )
    return Outcome(run_id, "cancel", f"run {run_id} canceled")


def _cancel_unrecorded(control: RunControl, run: _Seen) -> None:
    """A worker may have been creating the pipeline as the run ended: it never records it then
    (a final run takes no pipeline id), so look for it by the run's id and cancel it."""
    try:
        project = control.project(run.repository_id, run.pipeline)
        found = find_existing(project, run.id, run.sha)
        if found is not None and found.status not in FINISHED:
            cancel_pipeline(project, found.id)
    except GITLAB_ERRORS as error:
        if isinstance(error, gitlab.exceptions.GitlabError) and error.response_code == 404:
            return  # never mirrored: no pipeline can exist
        logger().warning("could not look for a pipeline of a canceled run", extra={"run_id": run.id})


def retry(control: RunControl, run_id: int, actor: str) -> Outcome:
    """Retry the failed and cancelled jobs of the run's pipeline, and follow the run again."""
    run = _seen(control.db, run_id)
    if run.gitlab_pipeline_id is None:
        raise ActionRefused(
            409,
            f"run {run_id} has no GitLab pipeline ({run.state}): no jobs to retry; restart it instead",
        )
    if run.state not in FINAL_STATES:
        raise ActionRefused(
            409, f"run {run_id} is still {run.state}; retry its failed jobs once it has ended"
        )
    if run.state == "success":
        raise ActionRefused(409, f"run {run_id} succeeded; no job failed, restart it to run again")
    if run.error == SUPERSEDED:
        raise ActionRefused(
            409, f"run {run_id} was {SUPERSEDED}; restart it if you mean to run this commit again"
        )
    if run.disabled:
        raise ActionRefused(409, f"the repository of run {run_id} is disabled; nothing runs for it now")
    try:
        control.project(run.repository_id, run.pipeline).pipelines.get(
            run.gitlab_pipeline_id, lazy=True
        ).retry()
    except GITLAB_ERRORS as error:
        raise _gitlab_failed(control, f"retry pipeline {run.gitlab_pipeline_id}", error) from None
    description = f"retrying failed jobs of pipeline {run.gitlab_pipeline_id} (asked by {actor})"
    with control.db.session() as session:
        session.execute(
            update(Run)
            .where(Run.id == run_id, Run.state == run.state)
            .values(
                state="pending",
                error=None,
                finished_at=None,
                unreported=False,
                attempts=0,
                last_error=None,
                status_seq=Run.status_seq + 1,
                status_state="pending",
                status_description=description,
                status_url=run.gitlab_pipeline_url,
            )
        )
    _due_now(control.db, run_id)
    _record(control.db, run_id, "retry", actor)
    logger().info("run retried", extra={"run_id": run_id, "actor": actor})
    return Outcome(
        run_id,
        "retry",
        f"failed jobs of pipeline {run.gitlab_pipeline_id} retried; run {run_id} is followed again",
    )


def restart(control: RunControl, run_id: int, actor: str) -> Outcome:
    """Start the next attempt of the run: a new run, and so a new pipeline."""
    run = _seen(control.db, run_id)
    if run.state not in FINAL_STATES:
        raise ActionRefused(
            409, f"run {run_id} is still {run.state}; cancel it first, or restart it once it has ended"
        )
    if run.disabled:
        raise ActionRefused(409, f"the repository of run {run_id} is disabled; nothing runs for it now")
    if not run.registered:
        raise ActionRefused(409, f"pipeline {run.pipeline!r} is no longer registered; nothing to restart")
    new_id = new_attempt(control.db, run_id, actor)
    logger().info("run restarted", extra={"run_id": run_id, "new_run_id": new_id, "actor": actor})
    return Outcome(run_id, "restart", f"run {run_id} restarted as run {new_id}", new_run_id=new_id)


ACTIONS = {"cancel": cancel, "retry": retry, "restart": restart}
