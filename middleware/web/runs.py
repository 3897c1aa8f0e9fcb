"""The run viewer: runs per repository and pipeline, a run's page, its jobs' logs, its actions.

Thin handlers: filters are read by `runs_filters`, logs rendered by `runs_logs`, links built by
`runs_links`, actions done by `middleware.runs.actions`. Every page and action of a repository
needs `may_operate_runs` (operators, managers, the repository's or pipeline's trusted users);
anyone else signed in gets 403, and nobody signed in goes to the sign-in page.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any
from urllib.parse import urlencode

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from werkzeug.wrappers import Response

from middleware.crypto import SecretBoxError
from middleware.managed_gitlab.jobs import JobView, full_log, jobs_of
from middleware.models import Pipeline, Repository, Run, RunAction
from middleware.runs.actions import ACTIONS, GITLAB_ERRORS, NOT_STARTED, ActionRefused, RunControl
from middleware.runs.reporting import FINAL_STATES
from middleware.services import Services, services
from middleware.web.access import Viewer, current_viewer, may_operate_runs, require_viewer
from middleware.web.runs_filters import KINDS, PER_PAGE, STATES, conditions, parse
from middleware.web.runs_links import source_links
from middleware.web.runs_logs import MAX_LOG_BYTES, render

bp = Blueprint("web_runs", __name__, template_folder="templates")
#: runs.id and repositories.id are 32-bit: a larger id names nothing (and PostgreSQL refuses it).
MAX_ID = 2**31 - 1
#: GitLab's job ids are 64-bit.
MAX_JOB_ID = 2**63 - 1


def _viewer() -> Viewer:
    viewer = current_viewer()
    assert viewer is not None  # require_viewer ran first
    return viewer


def _repository(session: Session, repo_id: int) -> Repository:
    repository = session.get(Repository, repo_id) if repo_id <= MAX_ID else None
    if repository is None:
        abort(404, f"there is no repository {repo_id}")
    return repository


def _run(session: Session, run_id: int) -> tuple[Run, Repository]:
    """The run and its repository, if the viewer may see the run's pipeline (else 403)."""
    run = session.get(Run, run_id) if run_id <= MAX_ID else None
    if run is None:
        abort(404, f"there is no run {run_id}")
    repository = _repository(session, run.repository_id)
    if not may_operate_runs(_viewer(), repository, run.pipeline_name):
        abort(403)
    return run, repository


def when(moment: dt.datetime | None) -> str:
    """A stored time for people: UTC, to the second (SQLite returns it without its zone)."""
    if moment is None:
        return ""
    moment = moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment.astimezone(dt.UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    whole = round(seconds)
    minutes, rest = divmod(whole, 60)
    return f"{minutes} min {rest} s" if minutes else f"{rest} s"


def _helpers(svc: Services) -> dict[str, Any]:
    def links(run: Run, repository: Repository) -> Any:
        return source_links(
            svc.settings,
            repository.provider,
            repository.full_name,
            repository.clone_url,
            run.sha,
            run.pr_number,
        )

    return {"when": when, "duration": duration, "links": links}


# -- lists ------------------------------------------------------------------------------------


@bp.get("/repositories/<int:repo_id>/runs")
@require_viewer
def repository_runs(repo_id: int) -> Any:
    return _listing(repo_id, request.args.get("pipeline", "").strip() or None, from_query=True)


@bp.get("/repositories/<int:repo_id>/pipelines/<name>/runs")
@require_viewer
def pipeline_runs(repo_id: int, name: str) -> Any:
    return _listing(repo_id, name, from_query=False)


def _listing(repo_id: int, pipeline: str | None, *, from_query: bool) -> Any:
    svc, viewer = services(), _viewer()
    with svc.db.session() as session:
        repository = _repository(session, repo_id)
        if not may_operate_runs(viewer, repository):
            abort(403)
        ran = set(session.scalars(select(Run.pipeline_name).where(Run.repository_id == repo_id).distinct()))
        known = sorted({p.name for p in repository.pipelines} | ran)
        visible = [name for name in known if may_operate_runs(viewer, repository, name)]
        parsed = parse(request.args)
        errors = dict(parsed.errors)
        if pipeline is not None and pipeline not in known:
            if not from_query:
                abort(404, f"repository {repo_id} has no pipeline {pipeline[:100]!r}")
            errors["pipeline"] = f"this repository has no pipeline {pipeline[:100]!r}"
        elif pipeline is not None and pipeline not in visible:
            abort(403)
        names = [pipeline] if pipeline is not None else visible
        runs: list[Run] = []
        total = 0
        if not errors:
            where = [Run.repository_id == repo_id, Run.pipeline_name.in_(names), *conditions(parsed.filter)]
            total = session.scalar(select(func.count()).select_from(Run).where(*where)) or 0
            runs = list(
                session.scalars(
                    select(Run)
                    .where(*where)
                    .order_by(Run.created_at.desc(), Run.id.desc())
                    .limit(PER_PAGE)
                    .offset((parsed.filter.page - 1) * PER_PAGE)
                )
            )
        page = parsed.filter.page
        kept = {k: v for k, v in parsed.values.items() if k != "page"}
        if from_query and pipeline is not None:
            kept["pipeline"] = pipeline

        def page_url(number: int) -> str:
            return f"{request.path}?{urlencode({**kept, 'page': str(number)})}"

        body = render_template(
            "runs/list.html",
            repository=repository,
            pipeline=pipeline,
            pipelines=visible,
            runs=runs,
            total=total,
            page=page,
            first=(page - 1) * PER_PAGE + 1,
            previous_url=page_url(page - 1) if page > 1 and not errors else None,
            next_url=page_url(page + 1) if page * PER_PAGE < total and not errors else None,
            values=parsed.values,
            errors=errors,
            states=STATES,
            kinds=KINDS,
            from_query=from_query,
            **_helpers(svc),
        )
    return body, 400 if errors else 200


# -- one run ----------------------------------------------------------------------------------


def _secrets(svc: Services, repository: Repository, pipeline: Pipeline | None) -> list[str]:
    """Every value a job's log must not show: the registration's and the service's secrets."""
    box, settings = svc.box, svc.settings
    sealed = [repository.firecrest_client_secret_enc, repository.notification_token_enc]
    sealed.append(repository.webhook_secret_enc)
    values = [
        settings.gitlab_token,
        settings.gitlab_webhook_token,
        settings.admin_token,
        settings.middleware_secret_key,
        settings.github_oauth_client_secret,
        settings.github_app_webhook_secret,
        settings.github_app_private_key,
    ]
    if pipeline is not None and pipeline.hook_token_enc:
        sealed.append(pipeline.hook_token_enc)
    for item in sealed:
        values.append(box.open(item))
    if pipeline is not None and pipeline.variables_enc:
        variables = json.loads(box.open(pipeline.variables_enc))
        values.extend(str(v) for v in variables.values())
    return [v for v in values if v]


def _pipeline_row(session: Session, run: Run) -> Pipeline | None:
    return session.scalar(
        select(Pipeline).where(
            Pipeline.repository_id == run.repository_id, Pipeline.name == run.pipeline_name
        )
    )


def _jobs(control: RunControl, run: Run) -> tuple[list[JobView], str | None]:
    """The pipeline's jobs from GitLab, or why they cannot be shown now."""
    if run.gitlab_pipeline_id is None:
        return [], None
    if control.gitlab is None:
        return [], "no managed GitLab is configured: jobs cannot be shown"
    try:
        return jobs_of(control.project(run.repository_id, run.pipeline_name), run.gitlab_pipeline_id), None
    except GITLAB_ERRORS as error:
        code = getattr(error, "response_code", None)
        if code == 404:
            return [], f"GitLab no longer has pipeline {run.gitlab_pipeline_id}"
        return [], f"GitLab could not be reached for the jobs ({type(error).__name__}); reload to try again"


@bp.get("/runs/<int:run_id>")
@require_viewer
def run_page(run_id: int) -> Any:
    svc = services()
    control = RunControl.build(svc.settings, svc.db)
    with svc.db.session() as session:
        run, repository = _run(session, run_id)
        attempts = list(
            session.scalars(
                select(Run)
                .where(
                    Run.repository_id == run.repository_id,
                    Run.pipeline_name == run.pipeline_name,
                    Run.sha == run.sha,
                    Run.trigger_kind == run.trigger_kind,
                )
                .order_by(Run.attempt)
            )
        )
        actions = list(
            session.scalars(select(RunAction).where(RunAction.run_id == run.id).order_by(RunAction.id))
        )
        origin = session.scalar(select(RunAction).where(RunAction.new_run_id == run.id))
        jobs, jobs_error = _jobs(control, run)
        final = run.state in FINAL_STATES
        return render_template(
            "runs/run.html",
            run=run,
            repository=repository,
            attempts=attempts,
            actions=actions,
            origin=origin,
            jobs=jobs,
            jobs_error=jobs_error,
            may_cancel=not final,
            may_retry=final and run.state != "success" and run.gitlab_pipeline_id is not None,
            may_restart=final,
            not_started=run.state in NOT_STARTED,
            **_helpers(svc),
        )


@bp.get("/runs/<int:run_id>/jobs/<int:job_id>")
@require_viewer
def job_log(run_id: int, job_id: int) -> Any:
    svc = services()
    control = RunControl.build(svc.settings, svc.db)
    with svc.db.session() as session:
        run, repository = _run(session, run_id)
        jobs, problem = _jobs(control, run)
        job = next((j for j in jobs if j.id == job_id), None) if job_id <= MAX_JOB_ID else None
        if job is None:
            abort(404, problem or f"job {job_id} is not a job of run {run_id}'s pipeline")
        try:
            secrets = _secrets(svc, repository, _pipeline_row(session, run))
        except (SecretBoxError, ValueError):
            abort(503, "the secrets to hide in this log cannot be read, so the log is not shown")
        try:
            text, truncated = full_log(
                control.project(run.repository_id, run.pipeline_name), job_id, MAX_LOG_BYTES
            )
            log, log_error = render(text, secrets, truncated=truncated), None
        except GITLAB_ERRORS as error:
            log, truncated = None, False
            log_error = (
                f"GitLab could not be reached for the log ({type(error).__name__}); reload to try again"
            )
        return render_template(
            "runs/job.html",
            run=run,
            repository=repository,
            job=job,
            log=log,
            log_error=log_error,
            truncated=truncated,
            limit_mb=MAX_LOG_BYTES // 1_000_000,
            **_helpers(svc),
        )


# -- actions ----------------------------------------------------------------------------------


def _act(run_id: int, action: str) -> Response:
    svc = services()
    with svc.db.session() as session:
        _run(session, run_id)  # 404, or 403 for whoever may not operate it
    try:
        outcome = ACTIONS[action](RunControl.build(svc.settings, svc.db), run_id, _viewer().actor)
    except ActionRefused as refusal:
        flash(refusal.message, "error")
        return redirect(url_for(".run_page", run_id=run_id), 303)
    flash(outcome.message, "ok")
    return redirect(url_for(".run_page", run_id=outcome.new_run_id or run_id), 303)


@bp.post("/runs/<int:run_id>/cancel")
@require_viewer
def cancel_run(run_id: int) -> Response:
    return _act(run_id, "cancel")


@bp.post("/runs/<int:run_id>/retry")
@require_viewer
def retry_run(run_id: int) -> Response:
    return _act(run_id, "retry")


@bp.post("/runs/<int:run_id>/restart")
@require_viewer
def restart_run(run_id: int) -> Response:
    return _act(run_id, "restart")
