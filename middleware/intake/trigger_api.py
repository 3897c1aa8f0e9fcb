"""`POST /api/trigger`: start a pipeline without a webhook (scripts, schedules).

Basic auth `repository_id:webhook_secret`. The body is YAML or JSON:
`{ref: main | pr:N | tag:T | sha:S, pipeline: NAME, variables: {K: V}}`.
Branch, PR and tag refs are resolved to a commit with `git ls-remote`.
"""

from __future__ import annotations

import hmac
from dataclasses import asdict
from typing import Any

import yaml
from flask import Blueprint, Response, jsonify, request
from sqlalchemy.orm import selectinload

from middleware.commands import check_allowed_variables, check_variable_name
from middleware.domain import Trigger, TriggerKind
from middleware.intake.remote_refs import RefNotFound, SourceUnavailable, resolve
from middleware.models import Repository
from middleware.refs import is_sha, ref_problem
from middleware.registry.api import MAX_REPOSITORY_ID, ApiProblem
from middleware.registry.config import to_config
from middleware.runs.schedule import insert_runs
from middleware.services import services
from middleware.sources.base import PinUnavailable, PullRequestGone

bp = Blueprint("trigger", __name__, url_prefix="/api")


@bp.errorhandler(ApiProblem)
def _problem(error: ApiProblem) -> tuple[Response, int]:
    return jsonify({"error": error.message}), error.status


def _body() -> dict[str, Any]:
    try:
        data = yaml.safe_load(request.get_data(cache=False) or b"")
    except Exception:  # noqa: BLE001 - PyYAML fails on hostile input with ValueError, AttributeError, RecursionError too
        raise ApiProblem(400, "the body is neither valid YAML nor JSON") from None
    if not isinstance(data, dict):
        raise ApiProblem(400, "the body must be a mapping with ref, pipeline and variables")
    unknown = set(data) - {"ref", "pipeline", "variables"}
    if unknown:  # YAML keys need not be strings, and a long integer cannot even be printed
        shown = sorted(key if isinstance(key, str) else f"<{type(key).__name__}>" for key in unknown)
        raise ApiProblem(400, f"unknown fields: {', '.join(shown)}")
    return data


def _variables(raw: Any) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ApiProblem(400, "variables must be a mapping of NAME: value")
    variables: dict[str, str] = {}
    for name, value in raw.items():
        if not isinstance(name, str):
            raise ApiProblem(422, f"variable names must be strings, not {type(name).__name__}")
        problem = check_variable_name(name)
        if problem:
            raise ApiProblem(422, f"variable {name!r}: {problem}")
        if not isinstance(value, str | int | float | bool):
            raise ApiProblem(422, f"variable {name!r} must be a string")
        try:
            variables[name] = str(value)
        except ValueError:  # an integer beyond Python's 4300-digit limit for str()
            raise ApiProblem(422, f"variable {name!r} is too long") from None
    return variables


def _repository_id(user: str | None) -> int | None:
    """The repository id a basic-auth user name stands for: ASCII digits of an id that can exist."""
    if not user or len(user) > 10 or not (user.isascii() and user.isdigit()):
        return None
    value = int(user)
    return value if 0 < value <= MAX_REPOSITORY_ID else None


def _target(ref: Any) -> tuple[str, str, int | None]:
    """(display ref, full git ref or sha:, PR number) from `main | pr:N | tag:T | sha:S`."""
    if not isinstance(ref, str) or not ref.strip():
        raise ApiProblem(400, "ref is required: main | pr:N | tag:T | sha:S")
    ref = ref.strip()
    kind, _, value = ref.partition(":")
    if kind == "sha" and value:
        if not is_sha(value):
            raise ApiProblem(422, "sha:S needs a full 40-character lowercase commit SHA")
        return value, f"sha:{value}", None
    if kind == "pr" and value:
        if not (value.isascii() and value.isdigit()) or int(value) <= 0:
            raise ApiProblem(422, "pr:N needs a pull request number")
        return f"pr-{int(value)}", f"refs/pull/{int(value)}/head", int(value)
    if kind == "tag" and value:
        problem = ref_problem(value)
        if problem:
            raise ApiProblem(422, f"{value!r} is not a tag name: {problem}")
        return f"refs/tags/{value}", f"refs/tags/{value}", None
    problem = ref_problem(ref)
    if problem:
        raise ApiProblem(422, f"{ref!r} is not a branch name ({problem}); use main | pr:N | tag:T | sha:S")
    return ref, f"refs/heads/{ref}", None


@bp.post("/trigger")
def api_trigger() -> tuple[Response, int]:
    svc = services()
    auth = request.authorization
    repo_id = _repository_id(auth.username) if auth is not None and auth.type == "basic" else None
    if auth is None or repo_id is None:
        raise ApiProblem(401, "basic auth repository_id:webhook_secret required")
    with svc.db.session() as session:
        repo = session.get(Repository, repo_id, options=[selectinload(Repository.pipelines)])
        secret = svc.box.open(repo.webhook_secret_enc) if repo else ""
        if repo is None or not hmac.compare_digest(secret.encode(), (auth.password or "").encode()):
            raise ApiProblem(401, "unknown repository or wrong webhook secret")
        config = to_config(repo)
        clone_url, provider, full_name = repo.clone_url, repo.provider, repo.full_name
        token = svc.box.open(repo.notification_token_enc)
    body = _body()
    names = [p.name for p in config.pipelines]
    pipeline = body.get("pipeline")
    if pipeline is None and len(names) == 1:
        pipeline = names[0]
    if pipeline not in names:
        shown = repr(pipeline) if isinstance(pipeline, str) else f"of type {type(pipeline).__name__}"
        shown = "(none given)" if pipeline is None else shown
        raise ApiProblem(422, f"unknown pipeline {shown}; this repository has: {', '.join(names) or 'none'}")
    variables = _variables(body.get("variables"))
    chosen = next(p for p in config.pipelines if p.name == pipeline)
    refused = check_allowed_variables(chosen.name, variables, chosen.allowed_variables)
    if refused:
        raise ApiProblem(422, refused)
    display, git_ref, pr_number = _target(body.get("ref"))
    url = clone_url
    try:
        if pr_number is not None:  # where the provider keeps a pull request's head
            wanted = svc.sources[provider].fetch_spec(display, "", pr_number, full_name, clone_url, token)
            git_ref, url = wanted.ref or git_ref, wanted.url or clone_url
        sha = git_ref[4:] if git_ref.startswith("sha:") else resolve(url, git_ref)
    except (RefNotFound, PullRequestGone) as error:
        raise ApiProblem(422, str(error)) from None
    except (SourceUnavailable, PinUnavailable) as error:
        raise ApiProblem(502, str(error)) from None
    trigger = Trigger(
        repository_id=config.id,
        pipeline=str(pipeline),
        ref=display,
        sha=sha,
        kind=TriggerKind.API,
        reason=f"API trigger of {display}",
        variables=variables,
        pr_number=pr_number,
    )
    payload = {**asdict(trigger), "kind": trigger.kind.value, "delivery_id": None}
    with svc.db.engine.begin() as connection:  # due at once: the workers' dispatcher hands it out
        insert_runs(connection, [payload])
    return jsonify({"queued": {"pipeline": trigger.pipeline, "ref": display, "sha": sha}}), 202
