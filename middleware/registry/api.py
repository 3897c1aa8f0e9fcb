"""The registration API: `/api/repositories` and the pipelines nested under each.

Admin bearer token on every call. Secrets are accepted, encrypted and never
returned, except the webhook secret, shown once when it is generated.
"""

from __future__ import annotations

import hmac
import json
import secrets
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar
from urllib.parse import urlsplit

from flask import Blueprint, Response, jsonify, request
from pydantic import BaseModel, ValidationError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from middleware.domain import UserId
from middleware.logs import logger
from middleware.models import OutboxItem, Pipeline, Repository, Run, utcnow
from middleware.registry.schemas import (
    PipelineCreate,
    PipelineUpdate,
    RepositoryCreate,
    RepositoryUpdate,
    check_users,
    error_details,
)
from middleware.registry.urls import UnsafeURL, check_clone_url, webhook_url
from middleware.runs import outbox
from middleware.runs.tasks import PURGE_REPOSITORY, RESOLVE_TRUSTED_USERS, SYNC_PROJECTS
from middleware.services import Services, services
from middleware.sources.github.tokens import TokenRejected
from middleware.sources.github.users import UnknownUser, UsersUnavailable, entries, unresolved
from middleware.sources.gitlab.api import instance_url
from middleware.sources.gitlab.api import resolve_users as gitlab_users

bp = Blueprint("registry", __name__, url_prefix="/api")
M = TypeVar("M", bound=BaseModel)
F = TypeVar("F", bound=Callable[..., Any])
#: repositories.id is a 32-bit integer: a larger id names no repository (and PostgreSQL refuses it).
MAX_REPOSITORY_ID = 2**31 - 1


class ApiProblem(Exception):
    """An error answer with a status and a readable message."""

    def __init__(self, status: int, message: str, details: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.details = details


@bp.errorhandler(ApiProblem)
def _problem(error: ApiProblem) -> tuple[Response, int]:
    body: dict[str, Any] = {"error": error.message}
    if error.details:
        body["details"] = error.details
    return jsonify(body), error.status


def admin_only(view: F) -> F:
    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        expected = services().settings.admin_token
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.encode(), expected.encode()):
            raise ApiProblem(401, "admin bearer token required")
        try:
            answer = view(*args, **kwargs)
        finally:
            if request.method != "GET":
                services().registrations.clear()  # the intake must see changes at once here
        if request.method == "PATCH":
            _sync_mirrors(int(kwargs["repo_id"]))
        return answer

    return wrapper  # type: ignore[return-value]


def _sync_mirrors(repo_id: int) -> None:
    """Let the workers update the mirror projects' settings and CI variables (through the outbox)."""
    svc = services()
    if svc.settings.gitlab_url:
        outbox.add(svc.db, SYNC_PROJECTS, {"repository_id": repo_id})


def _nul_field(payload: Any) -> str | None:
    """Where a key or string holds a NUL, which PostgreSQL text cannot store and no field needs.

    Iterative: a body may nest as deep as the JSON parser allows.
    """
    pending: list[tuple[str, Any]] = [("", payload)]
    while pending:
        path, value = pending.pop()
        if isinstance(value, str) and "\x00" in value:
            return path
        if isinstance(value, dict):
            for key, item in value.items():
                where = f"{path}.{key}" if path else str(key)
                if "\x00" in where:
                    return where.replace("\x00", "\\x00")
                pending.append((where, item))
        elif isinstance(value, list):
            pending.extend((f"{path}.{index}", item) for index, item in enumerate(value))
    return None


def parse(model: type[M]) -> M:
    try:
        payload = json.loads(request.get_data(cache=False) or b"null")
    except (ValueError, RecursionError):  # also nested too deep, or an integer too long to read
        raise ApiProblem(400, "the body is not valid JSON") from None
    if not isinstance(payload, dict):
        raise ApiProblem(400, "the body must be a JSON object")
    where = _nul_field(payload)
    if where is not None:
        raise ApiProblem(
            422, "invalid fields", [{"field": where, "message": "must not contain NUL characters"}]
        )
    try:
        return model.model_validate(payload)
    except ValidationError as error:
        raise ApiProblem(422, "invalid fields", error_details(error)) from None


def _checked_url(svc: Services, url: str, provider: str) -> str:
    try:
        return check_clone_url(
            url,
            svc.settings.allowed_source_hosts,
            insecure_sandbox=svc.settings.insecure_sandbox,
            nested=provider == "gitlab",
        )
    except UnsafeURL as error:
        raise ApiProblem(422, str(error), [{"field": "clone_url", "message": str(error)}]) from None


def _check_token(svc: Services, provider: str, token: str, full_name: str) -> bool:
    """Live token check; returns whether the source says the repository is private.

    GitHub's tokens are checked (PyGithub); GitLab's and Bitbucket's are first used when a
    status goes back, and a rejected one shows in the run's `last_error`.
    """
    if provider != "github" or not svc.settings.verify_github_tokens:
        return False
    try:
        return svc.check_github_token(token, full_name)
    except TokenRejected as error:
        raise ApiProblem(422, str(error), [{"field": "notification_token", "message": str(error)}]) from None


def _check_source(svc: Services, provider: str, clone_url: str) -> None:
    """A GitLab source is never the managed GitLab itself: its mirrors would mirror themselves."""
    if provider != "gitlab" or not svc.settings.gitlab_url:
        return
    if urlsplit(clone_url).netloc.lower() == urlsplit(svc.settings.gitlab_url).netloc.lower():
        text = "this is the managed GitLab the service mirrors into; register the project where it lives"
        raise ApiProblem(422, text, [{"field": "clone_url", "message": text}])


def _trusted_users(
    svc: Services, repo: Repository | RepositoryCreate, token: str, logins: list[str] | None
) -> list[dict[str, Any]] | None:
    """Users -> [{"id", "login"}]: GitHub logins and GitLab usernames are looked up now (GitHub's
    that cannot be looked up now are resolved later by the workers, and until then trust no
    one); Bitbucket account UUIDs are the ids themselves."""
    if logins is None:
        return None
    try:
        check_users(repo.provider, logins)
    except ValueError as error:
        raise ApiProblem(422, str(error), [{"field": "trusted_users", "message": str(error)}]) from None
    ids: dict[str, UserId] = {}
    if repo.provider == "bitbucket":
        ids = {user: user for user in logins}
    elif repo.provider == "gitlab" and logins:
        try:
            ids = dict(
                gitlab_users(instance_url(repo.clone_url), token, logins, svc.settings.gitlab_source_ca_file)
            )
        except UnknownUser as error:
            raise ApiProblem(422, str(error), [{"field": "trusted_users", "message": str(error)}]) from None
        except UsersUnavailable as error:
            raise ApiProblem(503, f"{error}; try again") from None
    elif logins and svc.settings.verify_github_tokens:
        try:
            ids = dict(svc.resolve_github_users(token, logins))
        except UnknownUser as error:
            raise ApiProblem(422, str(error), [{"field": "trusted_users", "message": str(error)}]) from None
        except UsersUnavailable as error:
            logger().warning("trusted users not resolved yet", extra={"error": str(error)})
    return entries(logins, ids)


def _queue_resolution(session: Session, repo: Repository) -> None:
    """In the same transaction as the change: the workers resolve what GitHub could not tell now."""
    if unresolved(repo.trusted_users) or any(unresolved(p.trusted_users) for p in repo.pipelines):
        session.add(
            OutboxItem(task=RESOLVE_TRUSTED_USERS, payload={"repository_id": repo.id}, due_at=utcnow())
        )


def pipeline_json(pipeline: Pipeline, box_open: Callable[[str], str]) -> dict[str, Any]:
    variables = json.loads(box_open(pipeline.variables_enc)) if pipeline.variables_enc else {}
    return {
        "id": pipeline.id,
        "name": pipeline.name,
        "entrypoint": pipeline.entrypoint,
        "system": pipeline.system,
        "trusted_users": pipeline.trusted_users,
        "branches": pipeline.branches,
        "tags": pipeline.tags,
        "cancel_superseded": pipeline.cancel_superseded,
        "variables": sorted(variables),  # names only: values are secret
        "allowed_variables": pipeline.allowed_variables,
    }


def repository_json(repo: Repository, svc: Services) -> dict[str, Any]:
    return {
        "id": repo.id,
        "provider": repo.provider,
        "full_name": repo.full_name,
        "clone_url": repo.clone_url,
        "firecrest_client_id": repo.firecrest_client_id,
        "default_account": repo.default_account,
        "trusted_users": repo.trusted_users,
        "branches": repo.branches,
        "private": repo.source_private,
        "webhook_url": webhook_url(svc.settings.public_url, repo.provider),
        "created_at": repo.created_at.isoformat(),
        "updated_at": repo.updated_at.isoformat(),
        "pipelines": [pipeline_json(p, svc.box.open) for p in repo.pipelines],
    }


def run_json(run: Run) -> dict[str, Any]:
    reported = run.posted_seq >= run.status_seq
    return {
        "id": run.id,
        "pipeline": run.pipeline_name,
        "sha": run.sha,
        "ref": run.ref,
        "trigger": run.trigger_kind,
        "pr_number": run.pr_number,
        "state": run.state,
        "reason": run.reason,
        "variables": sorted(run.variables),
        "gitlab_pipeline_id": run.gitlab_pipeline_id,
        "gitlab_pipeline_url": run.gitlab_pipeline_url,
        "error": run.error,
        "status": {
            "state": run.status_state,
            "description": run.status_description,
            "reported": reported,
            "unreported": run.unreported,
        },
        "attempts": run.attempts,
        "last_error": run.last_error,
        "created_at": run.created_at.isoformat(),
        "updated_at": run.updated_at.isoformat(),
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
    }


def _repository(session: Session, repo_id: int) -> Repository:
    repo = session.get(Repository, repo_id) if 0 < repo_id <= MAX_REPOSITORY_ID else None
    if repo is None:
        raise ApiProblem(404, f"no repository with id {repo_id}")
    return repo


def _pipeline(repo: Repository, name: str) -> Pipeline:
    for pipeline in repo.pipelines:
        if pipeline.name == name:
            return pipeline
    raise ApiProblem(404, f"repository {repo.full_name} has no pipeline {name!r}")


@bp.post("/repositories")
@admin_only
def create_repository() -> tuple[Response, int]:
    svc = services()
    body = parse(RepositoryCreate)
    clone_url = _checked_url(svc, body.clone_url, body.provider)
    _check_source(svc, body.provider, clone_url)
    private = _check_token(svc, body.provider, body.notification_token, body.full_name)
    webhook_secret = secrets.token_urlsafe(32)
    repo = Repository(
        provider=body.provider,
        full_name=body.full_name,
        clone_url=clone_url,
        webhook_secret_enc=svc.box.seal(webhook_secret),
        notification_token_enc=svc.box.seal(body.notification_token),
        firecrest_client_id=body.firecrest_client_id,
        firecrest_client_secret_enc=svc.box.seal(body.firecrest_client_secret),
        default_account=body.default_account,
        trusted_users=_trusted_users(svc, body, body.notification_token, body.trusted_users),
        branches=body.branches,
        source_private=private,
    )
    try:
        with svc.db.session() as session:
            session.add(repo)
            session.flush()
            answer = repository_json(repo, svc)
            _queue_resolution(session, repo)
    except IntegrityError:
        raise ApiProblem(409, f"{body.full_name} is already registered") from None
    answer["webhook_secret"] = webhook_secret  # shown once, never again
    return jsonify(answer), 201


@bp.get("/repositories")
@admin_only
def list_repositories() -> Response:
    svc = services()
    with svc.db.session() as session:
        repos = session.scalars(select(Repository).order_by(Repository.id)).all()
        return jsonify({"repositories": [repository_json(r, svc) for r in repos]})


@bp.get("/repositories/<int:repo_id>")
@admin_only
def get_repository(repo_id: int) -> Response:
    svc = services()
    with svc.db.session() as session:
        return jsonify(repository_json(_repository(session, repo_id), svc))


@bp.patch("/repositories/<int:repo_id>")
@admin_only
def update_repository(repo_id: int) -> Response:
    svc = services()
    body = parse(RepositoryUpdate)
    new_secret: str | None = None
    with svc.db.session() as session:
        repo = _repository(session, repo_id)
        if body.clone_url is not None:
            repo.clone_url = _checked_url(svc, body.clone_url, repo.provider)
            _check_source(svc, repo.provider, repo.clone_url)
        if body.notification_token is not None:
            repo.source_private = _check_token(svc, repo.provider, body.notification_token, repo.full_name)
            repo.notification_token_enc = svc.box.seal(body.notification_token)
        token = svc.box.open(repo.notification_token_enc)
        if body.firecrest_client_id is not None:
            repo.firecrest_client_id = body.firecrest_client_id
        if body.firecrest_client_secret is not None:
            repo.firecrest_client_secret_enc = svc.box.seal(body.firecrest_client_secret)
        if "default_account" in body.model_fields_set:
            repo.default_account = body.default_account
        if body.trusted_users is not None:
            repo.trusted_users = _trusted_users(svc, repo, token, body.trusted_users) or []
        if body.branches is not None:
            repo.branches = body.branches
        if body.rotate_webhook_secret:
            new_secret = secrets.token_urlsafe(32)
            repo.webhook_secret_enc = svc.box.seal(new_secret)
        session.flush()
        answer = repository_json(repo, svc)
        _queue_resolution(session, repo)
    if new_secret:
        answer["webhook_secret"] = new_secret
    return jsonify(answer)


@bp.delete("/repositories/<int:repo_id>")
@admin_only
def delete_repository(repo_id: int) -> tuple[str, int]:
    """Gone at once here; the workers then delete its mirror projects (their pipelines, logs and
    CI variables with the FirecREST credentials) and its mirror cache. Ids are never reused."""
    svc = services()
    with svc.db.session() as session:
        repo = _repository(session, repo_id)
        names = [p.name for p in repo.pipelines]
        session.delete(repo)
        session.add(
            OutboxItem(
                task=PURGE_REPOSITORY, payload={"repository_id": repo_id, "pipelines": names}, due_at=utcnow()
            )
        )
    return "", 204


@bp.post("/repositories/<int:repo_id>/pipelines")
@admin_only
def create_pipeline(repo_id: int) -> tuple[Response, int]:
    svc = services()
    body = parse(PipelineCreate)
    try:
        with svc.db.session() as session:
            repo = _repository(session, repo_id)
            pipeline = Pipeline(
                name=body.name,
                entrypoint=body.entrypoint,
                system=body.system,
                trusted_users=_trusted_users(
                    svc, repo, svc.box.open(repo.notification_token_enc), body.trusted_users
                ),
                branches=body.branches,
                tags=body.tags,
                cancel_superseded=body.cancel_superseded,
                variables_enc=svc.box.seal(json.dumps(body.variables)) if body.variables else None,
                allowed_variables=body.allowed_variables,
            )
            repo.pipelines.append(pipeline)
            session.flush()
            answer = pipeline_json(pipeline, svc.box.open)
            _queue_resolution(session, repo)
    except IntegrityError:
        raise ApiProblem(409, f"pipeline {body.name!r} already exists in this repository") from None
    return jsonify(answer), 201


@bp.get("/repositories/<int:repo_id>/pipelines")
@admin_only
def list_pipelines(repo_id: int) -> Response:
    svc = services()
    with svc.db.session() as session:
        repo = _repository(session, repo_id)
        return jsonify({"pipelines": [pipeline_json(p, svc.box.open) for p in repo.pipelines]})


@bp.get("/repositories/<int:repo_id>/pipelines/<name>")
@admin_only
def get_pipeline(repo_id: int, name: str) -> Response:
    svc = services()
    with svc.db.session() as session:
        return jsonify(pipeline_json(_pipeline(_repository(session, repo_id), name), svc.box.open))


@bp.patch("/repositories/<int:repo_id>/pipelines/<name>")
@admin_only
def update_pipeline(repo_id: int, name: str) -> Response:
    svc = services()
    body = parse(PipelineUpdate)
    with svc.db.session() as session:
        repo = _repository(session, repo_id)
        pipeline = _pipeline(repo, name)
        for field in ("entrypoint", "system", "tags", "cancel_superseded"):
            value = getattr(body, field)
            if value is not None:
                setattr(pipeline, field, value)
        if "branches" in body.model_fields_set:
            pipeline.branches = body.branches
        if "trusted_users" in body.model_fields_set:
            token = svc.box.open(repo.notification_token_enc)
            pipeline.trusted_users = _trusted_users(svc, repo, token, body.trusted_users)
            _queue_resolution(session, repo)
        if body.variables is not None:
            pipeline.variables_enc = svc.box.seal(json.dumps(body.variables)) if body.variables else None
        if "allowed_variables" in body.model_fields_set:
            pipeline.allowed_variables = body.allowed_variables
        session.flush()
        return jsonify(pipeline_json(pipeline, svc.box.open))


@bp.delete("/repositories/<int:repo_id>/pipelines/<name>")
@admin_only
def delete_pipeline(repo_id: int, name: str) -> tuple[str, int]:
    with services().db.session() as session:
        repo = _repository(session, repo_id)
        repo.pipelines.remove(_pipeline(repo, name))
    return "", 204


@bp.get("/repositories/<int:repo_id>/runs")
@admin_only
def list_runs(repo_id: int) -> Response:
    with services().db.session() as session:
        _repository(session, repo_id)
        runs = session.scalars(
            select(Run).where(Run.repository_id == repo_id).order_by(Run.id.desc()).limit(200)
        ).all()
        return jsonify({"runs": [run_json(r) for r in runs]})
