"""A registration whose GitHub App was removed: disabled at once, its runs stopped, its
credentials purged after the retention period (unless the App comes back first).

Removing the App is the repository owner withdrawing consent: nothing of theirs may run
from then on, so the registration is disabled and its unfinished runs end `canceled` in
the same transaction. Their GitLab pipelines are cancelled by a worker (an outbox row due
now), and the stored credentials are emptied by another (an outbox row due when the
retention ends), both idempotent. Re-installing the App in time re-enables the
registration as it was; after the purge the owner has to enter the credentials again.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import gitlab
from sqlalchemy import select, update

from middleware.db import Database
from middleware.logs import logger
from middleware.managed_gitlab.pipelines import FINISHED, cancel
from middleware.managed_gitlab.projects import project_path
from middleware.models import OutboxItem, Pipeline, Repository, Run, utcnow
from middleware.runs.reporting import FINAL_STATES
from middleware.runs.schedule import aware

CANCEL_PIPELINES = "firecrest_ci.cancel_withdrawn_pipelines"
PURGE_CREDENTIALS = "firecrest_ci.purge_withdrawn_credentials"
#: A purged registration's reason starts with this: it is not re-enabled by the App alone.
PURGED = "credentials purged"


def disable(
    db: Database, repository_ids: list[int], reason: str, *, retention: int, now: dt.datetime | None = None
) -> list[int]:
    """Disable these registrations, end their unfinished runs `canceled`, and queue the
    pipelines' cancellation and the credentials' purge. Returns the runs ended.

    The runs' final status is not reported: the App may no longer write to the repository.
    Registrations already disabled keep their first reason and purge time.
    """
    if not repository_ids:
        return []
    now = now or utcnow()
    purge_at = now + dt.timedelta(seconds=retention)
    ended: list[int] = []
    with db.session() as session:
        fresh = list(
            session.scalars(
                select(Repository.id).where(
                    Repository.id.in_(repository_ids), Repository.disabled_at.is_(None)
                )
            )
        )
        if fresh:
            session.execute(
                update(Repository)
                .where(Repository.id.in_(fresh))
                .values(disabled_at=now, disabled_reason=reason[:2000])
            )
        runs = session.execute(
            select(Run.id, Run.repository_id, Run.pipeline_name, Run.sha, Run.gitlab_pipeline_id).where(
                Run.repository_id.in_(repository_ids), Run.state.not_in(FINAL_STATES)
            )
        ).all()
        ended = [run.id for run in runs]
        if ended:
            text = f"canceled: {reason}"[:2000]
            session.execute(
                update(Run)
                .where(Run.id.in_(ended), Run.state.not_in(FINAL_STATES))
                .values(
                    state="canceled",
                    error=text,
                    finished_at=now,
                    status_seq=Run.status_seq + 1,
                    status_state="error",
                    status_description=text,
                    posted_seq=Run.status_seq + 1,
                    next_check_at=None,
                )
            )
        for repository_id in repository_ids:
            mine = [
                {"pipeline": run.pipeline_name, "sha": run.sha, "gitlab_pipeline_id": run.gitlab_pipeline_id}
                for run in runs
                if run.repository_id == repository_id
            ]
            if mine:
                session.add(
                    OutboxItem(
                        task=CANCEL_PIPELINES,
                        payload={"repository_id": repository_id, "runs": mine},
                        due_at=now,
                        created_at=now,
                    )
                )
        for repository_id in fresh:
            # Written for the day it is due: the outbox gives a command up `start_window` after
            # it was written, which must count from then, not from now.
            session.add(
                OutboxItem(
                    task=PURGE_CREDENTIALS,
                    payload={"repository_id": repository_id, "disabled_at": now.isoformat()},
                    due_at=purge_at,
                    created_at=purge_at,
                )
            )
    if fresh or ended:
        logger().warning(
            "registrations disabled",
            extra={"repositories": fresh, "runs_canceled": len(ended), "reason": reason[:300]},
        )
    return ended


def enable(db: Database, repository_ids: list[int]) -> list[int]:
    """Re-enable disabled registrations whose credentials were not purged yet; returns them."""
    if not repository_ids:
        return []
    with db.session() as session:
        found = [
            repo_id
            for repo_id, why in session.execute(
                select(Repository.id, Repository.disabled_reason).where(
                    Repository.id.in_(repository_ids), Repository.disabled_at.is_not(None)
                )
            )
            if not (why or "").startswith(PURGED)
        ]
        if found:
            session.execute(
                update(Repository)
                .where(Repository.id.in_(found))
                .values(disabled_at=None, disabled_reason=None)
            )
    if found:
        logger().info("registrations re-enabled", extra={"repositories": found})
    return found


def cancel_pipelines(gl: gitlab.Gitlab, group: str, repository_id: int, runs: list[dict[str, Any]]) -> int:
    """Cancel the GitLab pipelines of the withdrawn runs, also one a worker created while the run
    was being cancelled (found by its commit). Returns how many were cancelled."""
    cancelled = 0
    for run in runs:
        project = gl.projects.get(project_path(group, repository_id, str(run["pipeline"])), lazy=True)
        try:
            for pipeline in project.pipelines.list(sha=str(run["sha"]), iterator=True):
                if pipeline.status not in FINISHED:
                    cancel(project, int(pipeline.id))
                    cancelled += 1
        except gitlab.exceptions.GitlabListError as error:
            if error.response_code != 404:
                raise  # tried again by the outbox; a 404 is a project never mirrored
    return cancelled


def purge_credentials(
    db: Database, gl: gitlab.Gitlab | None, group: str, seal: Any, repository_id: int, disabled_at: str
) -> bool:
    """Empty the stored credentials of a registration still disabled since `disabled_at`, then
    remove its mirror projects' CI variables. True when the credentials were emptied now.

    The database comes first: what matters most is that nothing decryptable stays. A GitLab
    failure raises, and the outbox's next try removes the variables (the credentials stay
    purged). `seal` encrypts the empty values (SecretBox.seal), so every reader still decrypts.
    """
    with db.session() as session:
        repo = session.get(Repository, repository_id)
        since = aware(repo.disabled_at) if repo is not None else None
        if repo is None or since is None:
            return False  # gone, or re-enabled
        wanted = aware(dt.datetime.fromisoformat(disabled_at))  # naive times are UTC, as stored
        if wanted is None or abs((since - wanted).total_seconds()) > 1:
            return False  # re-enabled, then disabled again: the newer purge row decides
        purged = (repo.disabled_reason or "").startswith(PURGED)
        if not purged:
            repo.firecrest_client_secret_enc = seal("")
            repo.notification_token_enc = seal("")
            repo.disabled_reason = f"{PURGED} on {utcnow():%Y-%m-%d}: {repo.disabled_reason or ''}"[:2000]
            session.execute(
                update(Pipeline).where(Pipeline.repository_id == repository_id).values(variables_enc=None)
            )
        names = [
            p.name for p in session.scalars(select(Pipeline).where(Pipeline.repository_id == repository_id))
        ]
    if not purged:
        logger().warning("withdrawn credentials purged", extra={"repository_id": repository_id})
    if gl is not None:
        for name in names:
            project = gl.projects.get(project_path(group, repository_id, name), lazy=True)
            try:
                for variable in project.variables.list(get_all=True):
                    variable.delete()
            except gitlab.exceptions.GitlabListError as error:
                if error.response_code != 404:
                    raise  # a project never mirrored has none
    return not purged
