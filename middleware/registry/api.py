"""The registration API: `/api/repositories` and the pipelines nested under each.

Admin bearer token on every call; the changes themselves are middleware.registry.service's,
shared with the pages. Secrets are accepted, encrypted and never
returned, except the webhook secret, shown once when it is generated.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from flask import Blueprint, Response, jsonify, request
from pydantic import BaseModel, ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from middleware.models import Pipeline, Repository, Run
from middleware.registry import service
from middleware.registry.schemas import (
    PipelineCreate,
    PipelineUpdate,
    RepositoryCreate,
    RepositoryUpdate,
    error_details,
)
from middleware.registry.urls import webhook_url
from middleware.services import Services, services

bp = Blueprint("registry", __name__, url_prefix="/api")
M = TypeVar("M", bound=BaseModel)
F = TypeVar("F", bound=Callable[..., Any])
MAX_REPOSITORY_ID = service.MAX_REPOSITORY_ID


#: The registry's refusals, answered as JSON here (and by the trigger API).
ApiProblem = service.RegistryProblem


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
        return view(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


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
    return service.get_repository(session, repo_id)


@bp.post("/repositories")
@admin_only
def create_repository() -> tuple[Response, int]:
    svc = services()
    body = parse(service.AppRepositoryCreate if svc.settings.app_mode else RepositoryCreate)
    repo, webhook_secret = service.create_repository(svc, body, service.OPERATOR)
    answer = repository_json(repo, svc)
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
    repo, new_secret = service.update_repository(svc, repo_id, body, service.OPERATOR)
    answer = repository_json(repo, svc)
    if new_secret:
        answer["webhook_secret"] = new_secret
    return jsonify(answer)


@bp.delete("/repositories/<int:repo_id>")
@admin_only
def delete_repository(repo_id: int) -> tuple[str, int]:
    service.delete_repository(services(), repo_id, service.OPERATOR)
    return "", 204


@bp.post("/repositories/<int:repo_id>/pipelines")
@admin_only
def create_pipeline(repo_id: int) -> tuple[Response, int]:
    svc = services()
    body = parse(PipelineCreate)
    pipeline = service.create_pipeline(svc, repo_id, body, service.OPERATOR)
    return jsonify(pipeline_json(pipeline, svc.box.open)), 201


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
        return jsonify(pipeline_json(service.get_pipeline(_repository(session, repo_id), name), svc.box.open))


@bp.patch("/repositories/<int:repo_id>/pipelines/<name>")
@admin_only
def update_pipeline(repo_id: int, name: str) -> Response:
    svc = services()
    body = parse(PipelineUpdate)
    pipeline = service.update_pipeline(svc, repo_id, name, body, service.OPERATOR)
    return jsonify(pipeline_json(pipeline, svc.box.open))


@bp.delete("/repositories/<int:repo_id>/pipelines/<name>")
@admin_only
def delete_pipeline(repo_id: int, name: str) -> tuple[str, int]:
    service.delete_pipeline(services(), repo_id, name, service.OPERATOR)
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
