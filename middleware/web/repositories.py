"""The repositories pages: the list, registering one, and its setup page (settings, pipelines,
secret CI variables, webhook details). Handlers check who may do what (middleware.web.access),
read the forms (middleware.web.forms) and call middleware.registry.service for every change."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, abort, flash, redirect, render_template, request, url_for
from sqlalchemy import select
from werkzeug.wrappers import Response as BaseResponse

from middleware.models import Pipeline, Repository
from middleware.registry import service
from middleware.registry.schemas import PipelineCreate, PipelineUpdate, RepositoryCreate, RepositoryUpdate
from middleware.registry.urls import webhook_url
from middleware.services import services
from middleware.web import access, forms
from middleware.web.forms import FormState
from middleware.web.github_signin import SignInFailed, managing_names

bp = Blueprint("web_repositories", __name__)

#: The webhook events to tick at each provider, as its settings page names them.
EVENTS = {
    "github": ["Pushes", "Pull requests", "Issue comments"],
    "gitlab": ["Push events", "Merge request events", "Comments"],
    "bitbucket": ["Repository: Push", "Pull request: Created, Updated", "Pull request: Comment created"],
}


def _viewer() -> access.Viewer:
    viewer = access.current_viewer()
    if viewer is None:
        abort(403)
    return viewer


def _actor(viewer: access.Viewer) -> service.Actor:
    return service.Actor(viewer.actor, viewer.user_id)


def token_mode(repo_provider: str) -> bool:
    """Whether this repository reports with its own notification token and webhook (not the App)."""
    return not (services().settings.app_mode and repo_provider == "github")


def _managed(repo_id: int) -> Repository:
    """The repository, if the viewer may manage it: 403 otherwise, and for any id that names no
    repository unless the viewer is an operator (nobody learns what exists elsewhere)."""
    viewer = _viewer()
    with services().db.session() as session:
        repo = session.get(Repository, repo_id) if 0 < repo_id <= service.MAX_REPOSITORY_ID else None
        if repo is None:
            abort(404 if viewer.kind == "operator" else 403)
        if not access.may_manage(viewer, repo):
            abort(403)
        repo.pipelines  # noqa: B018 - loaded while the session is open
        return repo


def _pipeline(repo: Repository, pipeline_id: int) -> Pipeline:
    for pipeline in repo.pipelines:
        if pipeline.id == pipeline_id:
            return pipeline
    abort(404)


def _html(html: str, status: int = 200) -> Response:
    return Response(html, status=status, mimetype="text/html")


# -- the list ----------------------------------------------------------------------------------


@bp.get("/")
@access.require_viewer
def index() -> BaseResponse:
    return redirect(url_for("web_repositories.repositories"))


@bp.get("/repositories")
@access.require_viewer
def repositories() -> Response:
    viewer = _viewer()
    rows: list[dict[str, Any]] = []
    with services().db.session() as session:
        for repo in session.scalars(select(Repository).order_by(Repository.full_name)):
            manage = access.may_manage(viewer, repo)
            if manage or access.may_operate_runs(viewer, repo):
                rows.append({"repo": repo, "manage": manage})
    return _html(render_template("repositories/list.html", rows=rows, may_register=_may_register(viewer)))


# -- registering -------------------------------------------------------------------------------


def _may_register(viewer: access.Viewer) -> bool:
    return viewer.kind == "operator" or services().settings.app_mode


def _register_form(state: FormState, status: int = 200) -> Response:
    viewer = _viewer()
    html = render_template(
        "repositories/new.html",
        state=state,
        operator=viewer.kind == "operator",
        app_mode=services().settings.app_mode,
    )
    return _html(html, status)


@bp.get("/repositories/new")
@access.require_viewer
def new_repository() -> Response:
    if not _may_register(_viewer()):
        abort(403)
    return _register_form(FormState(values={"branches": "main"}))


def _manages_on_github(full_name: str) -> str | None:
    """Why a GitHub user may not register `full_name` (not admin or maintain there), or None."""
    sealed = access.sealed_token()
    if sealed is None:
        return "sign in with GitHub again to register repositories"
    svc = services()
    try:
        allowed = managing_names(svc.settings, svc.box.open(sealed), [full_name])
    except SignInFailed as error:
        return str(error)
    return None if full_name in allowed else f"you are not an admin or maintainer of {full_name} on GitHub"


@bp.post("/repositories/new")
@access.require_viewer
def register_repository() -> Response:
    viewer = _viewer()
    if not _may_register(viewer):
        abort(403)
    svc = services()
    provider = request.form.get("provider", "github") if viewer.kind == "operator" else "github"
    if provider not in EVENTS:
        provider = "github"
    given_token = bool(request.form.get("notification_token"))
    model = service.AppRepositoryCreate if svc.settings.app_mode else RepositoryCreate
    data = forms.registration_data(request.form, provider, token=given_token or not svc.settings.app_mode)
    state = FormState(values=forms.kept_values(request.form))
    body, state.errors = forms.validate(model, data)
    if body is not None and viewer.kind == "github":
        refusal = _manages_on_github(body.full_name)
        if refusal:
            state.errors = {"full_name": refusal}
    if body is None or state.errors:
        return _register_form(state, 422)
    try:
        repo, secret = service.create_repository(svc, body, _actor(viewer))
    except service.RegistryProblem as problem:
        state.errors = forms.problem_errors(problem)
        return _register_form(state, 422 if problem.status < 500 else problem.status)
    if viewer.kind == "github":
        access.refresh_rights()
    html = render_template(
        "repositories/registered.html",
        repo=repo,
        webhook=_webhook(repo, secret),
    )
    return _html(html, 201)


# -- the setup page ----------------------------------------------------------------------------


def _webhook(repo: Repository, secret: str | None) -> dict[str, Any] | None:
    """The webhook setup details (token mode only); the secret only right after it was made."""
    if not token_mode(repo.provider):
        return None
    return {
        "url": webhook_url(services().settings.public_url, repo.provider),
        "content_type": "application/json",
        "events": EVENTS[repo.provider],
        "secret": secret,
    }


def _token_result(repo: Repository, token: str | None = None) -> tuple[bool, str] | None:
    """The live check of the notification token (the given one, else the stored one)."""
    if not token_mode(repo.provider):
        return None
    return service.token_status(services(), repo, token)


def _setup_page(
    repo_id: int,
    states: dict[str, FormState] | None = None,
    *,
    status: int = 200,
    secret: str | None = None,
    token_result: tuple[bool, str] | None = None,
) -> Response:
    repo = _managed(repo_id)
    svc = services()
    pipelines = [
        {"pipeline": p, "variables": sorted(service.pipeline_variables(svc, p))} for p in repo.pipelines
    ]
    html = render_template(
        "repositories/setup.html",
        repo=repo,
        pipelines=pipelines,
        states=states or {},
        token_mode=token_mode(repo.provider),
        token_result=token_result if token_result is not None else _token_result(repo),
        webhook=_webhook(repo, secret),
        users_text=forms.users_text,
    )
    return _html(html, status)


@bp.get("/repositories/<int:repo_id>")
@access.require_viewer
def setup(repo_id: int) -> Response:
    return _setup_page(repo_id)


def _problem_page(repo_id: int, key: str, state: FormState, problem: service.RegistryProblem) -> Response:
    state.errors = forms.problem_errors(problem)
    return _setup_page(repo_id, {key: state}, status=problem.status if problem.status >= 500 else 422)


@bp.post("/repositories/<int:repo_id>/settings")
@access.require_viewer
def save_settings(repo_id: int) -> BaseResponse:
    repo = _managed(repo_id)
    svc = services()
    uses_token = token_mode(repo.provider)
    state = FormState(values=forms.kept_values(request.form))
    if request.form.get("action") == "check" and uses_token:
        result = _token_result(repo, request.form.get("notification_token") or None)
        return _setup_page(repo_id, {"settings": state}, token_result=result)
    changes = forms.settings_changes(request.form, repo, token=uses_token)
    body, state.errors = forms.validate(RepositoryUpdate, changes)
    if body is not None and uses_token and "notification_token" not in changes:
        stored = _token_result(repo)
        if stored is not None and not stored[0]:
            state.errors["notification_token"] = f"{stored[1]}; enter a valid token to save"
    if body is None or state.errors:
        return _setup_page(repo_id, {"settings": state}, status=422)
    if not changes:
        flash("Nothing changed.", "ok")
        return redirect(url_for("web_repositories.setup", repo_id=repo_id))
    try:
        service.update_repository(svc, repo_id, body, _actor(_viewer()))
    except service.RegistryProblem as problem:
        return _problem_page(repo_id, "settings", state, problem)
    flash(f"Saved: {', '.join(sorted(changes))}.", "ok")
    return redirect(url_for("web_repositories.setup", repo_id=repo_id))


@bp.post("/repositories/<int:repo_id>/webhook-secret")
@access.require_viewer
def rotate_secret(repo_id: int) -> Response:
    repo = _managed(repo_id)
    if not token_mode(repo.provider):
        abort(404)
    body = RepositoryUpdate(rotate_webhook_secret=True)
    _, secret = service.update_repository(services(), repo_id, body, _actor(_viewer()))
    return _setup_page(repo_id, secret=secret)


@bp.post("/repositories/<int:repo_id>/delete")
@access.require_viewer
def delete_registration(repo_id: int) -> BaseResponse:
    """Delete the registration, once its name is typed: the workers then delete its mirror
    projects (pipelines, logs, the CI variables with the FirecREST credentials) and cache."""
    repo = _managed(repo_id)
    typed = request.form.get("confirm", "").strip()
    if typed != repo.full_name:
        state = FormState(errors={"confirm": f"type {repo.full_name} to confirm"})
        return _setup_page(repo_id, {"delete": state}, status=422)
    service.delete_repository(services(), repo_id, _actor(_viewer()))
    return redirect(url_for(".repositories"), 303)


# -- pipelines and their variables -------------------------------------------------------------


@bp.post("/repositories/<int:repo_id>/pipelines")
@access.require_viewer
def add_pipeline(repo_id: int) -> BaseResponse:
    _managed(repo_id)
    state = FormState(values=forms.kept_values(request.form))
    body, state.errors = forms.validate(PipelineCreate, forms.pipeline_data(request.form))
    if body is None:
        return _setup_page(repo_id, {"new-pipeline": state}, status=422)
    try:
        service.create_pipeline(services(), repo_id, body, _actor(_viewer()))
    except service.RegistryProblem as problem:
        return _problem_page(repo_id, "new-pipeline", state, problem)
    flash(f"Pipeline {body.name} added.", "ok")
    return redirect(url_for("web_repositories.setup", repo_id=repo_id))


@bp.post("/repositories/<int:repo_id>/pipelines/<int:pipeline_id>")
@access.require_viewer
def edit_pipeline(repo_id: int, pipeline_id: int) -> BaseResponse:
    pipeline = _pipeline(_managed(repo_id), pipeline_id)
    key = f"pipeline-{pipeline_id}"
    state = FormState(values=forms.kept_values(request.form))
    changes = forms.pipeline_changes(request.form, pipeline)
    body, state.errors = forms.validate(PipelineUpdate, changes)
    if body is None:
        return _setup_page(repo_id, {key: state}, status=422)
    if changes:
        try:
            service.update_pipeline(services(), repo_id, pipeline.name, body, _actor(_viewer()))
        except service.RegistryProblem as problem:
            return _problem_page(repo_id, key, state, problem)
    flash(f"Pipeline {pipeline.name} saved." if changes else "Nothing changed.", "ok")
    return redirect(url_for("web_repositories.setup", repo_id=repo_id))


@bp.post("/repositories/<int:repo_id>/pipelines/<int:pipeline_id>/delete")
@access.require_viewer
def delete_pipeline(repo_id: int, pipeline_id: int) -> BaseResponse:
    pipeline = _pipeline(_managed(repo_id), pipeline_id)
    service.delete_pipeline(services(), repo_id, pipeline.name, _actor(_viewer()))
    flash(f"Pipeline {pipeline.name} deleted.", "ok")
    return redirect(url_for("web_repositories.setup", repo_id=repo_id))


@bp.post("/repositories/<int:repo_id>/pipelines/<int:pipeline_id>/variables")
@access.require_viewer
def set_variable(repo_id: int, pipeline_id: int) -> BaseResponse:
    pipeline = _pipeline(_managed(repo_id), pipeline_id)
    key = f"variables-{pipeline_id}"
    state = FormState(values=forms.kept_values(request.form))
    name = request.form.get("variable_name", "").strip()
    value = request.form.get("variable_value", "")
    if not name:
        state.errors["variable_name"] = "must not be empty"
    if not value:
        state.errors["variable_value"] = "must not be empty"
    if state.errors:
        return _setup_page(repo_id, {key: state}, status=422)
    try:
        service.set_variable(services(), repo_id, pipeline.name, name, value, _actor(_viewer()))
    except service.RegistryProblem as problem:
        return _problem_page(repo_id, key, state, problem)
    flash(f"Variable {name} of {pipeline.name} saved.", "ok")
    return redirect(url_for("web_repositories.setup", repo_id=repo_id))


@bp.post("/repositories/<int:repo_id>/pipelines/<int:pipeline_id>/variables/delete")
@access.require_viewer
def delete_variable(repo_id: int, pipeline_id: int) -> BaseResponse:
    pipeline = _pipeline(_managed(repo_id), pipeline_id)
    name = request.form.get("variable_name", "")
    try:
        service.delete_variable(services(), repo_id, pipeline.name, name, _actor(_viewer()))
    except service.RegistryProblem as problem:
        flash(problem.message, "error")
    else:
        flash(f"Variable {name} of {pipeline.name} deleted.", "ok")
    return redirect(url_for("web_repositories.setup", repo_id=repo_id))
