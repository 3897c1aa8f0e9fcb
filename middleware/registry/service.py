"""Registering and changing repositories and pipelines: one place for the JSON API and the pages.

Each function takes the services, a validated schema object and the actor, checks what only a
live look-up can tell (clone URL, notification token, trusted users, the App's installation),
writes the change and an AuditEntry in one transaction, then lets the intake and the workers
see it. Secret values are sealed at once and never written into audit entries or errors.
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from pydantic import ValidationError
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from middleware.domain import UserId
from middleware.logs import logger
from middleware.models import AuditEntry, OutboxItem, Pipeline, Repository, utcnow
from middleware.registry.schemas import (
    PipelineCreate,
    PipelineUpdate,
    RepositoryCreate,
    RepositoryUpdate,
    Secret,
    check_users,
    error_details,
)
from middleware.registry.urls import UnsafeURL, check_clone_url
from middleware.runs import outbox
from middleware.runs.tasks import PURGE_REPOSITORY, RESOLVE_TRUSTED_USERS, SYNC_PROJECTS
from middleware.services import Services
from middleware.sources.github.tokens import TokenRejected
from middleware.sources.github.users import UnknownUser, UsersUnavailable, entries, unresolved
from middleware.sources.gitlab.api import instance_url
from middleware.sources.gitlab.api import resolve_users as gitlab_users

#: repositories.id is a 32-bit integer: a larger id names no repository (and PostgreSQL refuses it).
MAX_REPOSITORY_ID = 2**31 - 1
_VARIABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class RegistryProblem(Exception):
    """A change refused, with a status and a readable message; `details` name the fields."""

    def __init__(self, status: int, message: str, details: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.details = details


def field_problem(status: int, field: str, message: str) -> RegistryProblem:
    return RegistryProblem(status, message, [{"field": field, "message": message}])


@dataclass(frozen=True)
class Actor:
    """Who makes a change: `operator` (the admin credential) or a GitHub login with its id."""

    login: str
    user_id: int | None = None


OPERATOR = Actor("operator")


class AppRepositoryCreate(RepositoryCreate):
    """In App mode a GitHub repository reports through the App: no notification token needed."""

    notification_token: Secret | None = None  # type: ignore[assignment]


# -- checks ------------------------------------------------------------------------------------


def checked_url(svc: Services, url: str, provider: str) -> str:
    try:
        return check_clone_url(
            url,
            svc.settings.allowed_source_hosts,
            insecure_sandbox=svc.settings.insecure_sandbox,
            nested=provider == "gitlab",
        )
    except UnsafeURL as error:
        raise field_problem(422, "clone_url", str(error)) from None


def check_token(svc: Services, provider: str, token: str, full_name: str) -> bool:
    """Live token check; returns whether the source says the repository is private.

    GitHub's tokens are checked (PyGithub); GitLab's and Bitbucket's are first used when a
    status goes back, and a rejected one shows in the run's `last_error`.
    """
    if provider != "github" or not svc.settings.verify_github_tokens:
        return False
    try:
        return svc.check_github_token(token, full_name)
    except TokenRejected as error:
        raise field_problem(422, "notification_token", str(error)) from None


def token_status(svc: Services, repo: Repository, token: str | None = None) -> tuple[bool, str]:
    """A live check of `token` (else the stored notification token), for display: (valid, what)."""
    if repo.provider != "github" or not svc.settings.verify_github_tokens:
        return True, "not checked live here: it is first used when a status goes back"
    if token is None:
        token = svc.box.open(repo.notification_token_enc)
    try:
        svc.check_github_token(token, repo.full_name)
    except TokenRejected as error:
        return False, str(error)
    return True, f"valid: it can see {repo.full_name}"


def _check_source(svc: Services, provider: str, clone_url: str) -> None:
    """A GitLab source is never the managed GitLab itself: its mirrors would mirror themselves."""
    if provider != "gitlab" or not svc.settings.gitlab_url:
        return
    if urlsplit(clone_url).netloc.lower() == urlsplit(svc.settings.gitlab_url).netloc.lower():
        text = "this is the managed GitLab the service mirrors into; register the project where it lives"
        raise field_problem(422, "clone_url", text)


def _trusted_users(
    svc: Services, repo: Repository | RepositoryCreate, token: str, logins: list[str] | None, field: str
) -> list[dict[str, Any]] | None:
    """Users -> [{"id", "login"}]: GitHub logins and GitLab usernames are looked up now (GitHub's
    that cannot be looked up now are resolved later by the workers, and until then trust no
    one); Bitbucket account UUIDs are the ids themselves."""
    if logins is None:
        return None
    try:
        check_users(repo.provider, logins)
    except ValueError as error:
        raise field_problem(422, field, str(error)) from None
    ids: dict[str, UserId] = {}
    if repo.provider == "bitbucket":
        ids = {user: user for user in logins}
    elif repo.provider == "gitlab" and logins:
        try:
            ids = dict(
                gitlab_users(instance_url(repo.clone_url), token, logins, svc.settings.gitlab_source_ca_file)
            )
        except UnknownUser as error:
            raise field_problem(422, field, str(error)) from None
        except UsersUnavailable as error:
            raise RegistryProblem(503, f"{error}; try again") from None
    elif logins and svc.settings.verify_github_tokens:
        try:
            ids = dict(svc.resolve_github_users(token or _installation_token(svc, repo), logins))
        except UnknownUser as error:
            raise field_problem(422, field, str(error)) from None
        except UsersUnavailable as error:
            logger().warning("trusted users not resolved yet", extra={"error": str(error)})
    return entries(logins, ids)


def _installation_token(svc: Services, repo: Repository | RepositoryCreate) -> str:
    """In App mode a repository has no person's token: users are looked up with the App's
    installation token (5,000 requests an hour, where anonymous look-ups get 60)."""
    if svc.github_app is None or repo.provider != "github":
        return ""
    installation = getattr(repo, "installation_id", None)
    if installation is None:
        found = svc.github_app.repository_installation(repo.full_name)
        installation = found[0] if found else None
    return svc.github_app.installation_token(installation) if installation is not None else ""


def _app_installation(svc: Services, full_name: str) -> tuple[int, int]:
    """(installation id, GitHub's repository id), or a readable refusal when the App is not
    installed on the repository."""
    app = getattr(svc, "github_app", None)
    if app is None:
        raise RegistryProblem(503, "the GitHub App is configured but not available; try again later")
    try:
        found: tuple[int, int] | None = app.repository_installation(full_name)
    except Exception as error:  # noqa: BLE001 - any failure to ask GitHub is "try again"
        raise RegistryProblem(
            503, f"GitHub could not be asked about the App ({type(error).__name__}); try again"
        ) from None
    if found is None:
        raise field_problem(
            422,
            "full_name",
            f"the GitHub App is not installed on {full_name}; install it there first, then register it",
        )
    return found


def _queue_resolution(session: Session, repo: Repository) -> None:
    """In the same transaction as the change: the workers resolve what GitHub could not tell now."""
    if unresolved(repo.trusted_users) or any(unresolved(p.trusted_users) for p in repo.pipelines):
        session.add(
            OutboxItem(task=RESOLVE_TRUSTED_USERS, payload={"repository_id": repo.id}, due_at=utcnow())
        )


def _audit(
    session: Session, actor: Actor, action: str, repository_id: int | None, detail: dict[str, Any]
) -> None:
    if actor.user_id is not None:
        detail = {**detail, "user_id": actor.user_id}
    session.add(AuditEntry(actor=actor.login, action=action, repository_id=repository_id, detail=detail))


def _changed(svc: Services, repository_id: int, *, sync: bool) -> None:
    """After a commit: the intake sees the change at once, the workers update the mirrors."""
    svc.registrations.clear()
    if sync and svc.settings.gitlab_url:
        outbox.add(svc.db, SYNC_PROJECTS, {"repository_id": repository_id})


def get_repository(session: Session, repo_id: int) -> Repository:
    repo = session.get(Repository, repo_id) if 0 < repo_id <= MAX_REPOSITORY_ID else None
    if repo is None:
        raise RegistryProblem(404, f"no repository with id {repo_id}")
    return repo


def get_pipeline(repo: Repository, name: str) -> Pipeline:
    for pipeline in repo.pipelines:
        if pipeline.name == name:
            return pipeline
    raise RegistryProblem(404, f"repository {repo.full_name} has no pipeline {name!r}")


def pipeline_variables(svc: Services, pipeline: Pipeline) -> dict[str, str]:
    loaded: dict[str, str] = (
        json.loads(svc.box.open(pipeline.variables_enc)) if pipeline.variables_enc else {}
    )
    return loaded


# -- repositories ------------------------------------------------------------------------------


def create_repository(svc: Services, body: RepositoryCreate, actor: Actor) -> tuple[Repository, str]:
    """Register a repository; returns it (with its pipelines loaded) and its new webhook secret,
    to be shown once."""
    clone_url = checked_url(svc, body.clone_url, body.provider)
    _check_source(svc, body.provider, clone_url)
    installation_id: int | None = None
    source_id: str | None = None
    token = body.notification_token or ""
    if svc.settings.app_mode and body.provider == "github":
        installation_id, github_id = _app_installation(svc, body.full_name)
        source_id = str(github_id)
        private = True  # unknown here: mirrors stay private until the App says otherwise
        if token:
            check_token(svc, body.provider, token, body.full_name)
    else:
        if not token:
            raise field_problem(422, "notification_token", "a notification token is required")
        private = check_token(svc, body.provider, token, body.full_name)
    webhook_secret = secrets.token_urlsafe(32)
    repo = Repository(
        provider=body.provider,
        full_name=body.full_name,
        clone_url=clone_url,
        webhook_secret_enc=svc.box.seal(webhook_secret),
        notification_token_enc=svc.box.seal(token),
        firecrest_client_id=body.firecrest_client_id,
        firecrest_client_secret_enc=svc.box.seal(body.firecrest_client_secret),
        default_account=body.default_account,
        trusted_users=_trusted_users(svc, body, token, body.trusted_users, "trusted_users"),
        branches=body.branches,
        source_private=private,
        source_id=source_id,
        installation_id=installation_id,
    )
    try:
        with svc.db.session() as session:
            session.add(repo)
            session.flush()
            repo.pipelines  # noqa: B018 - loaded for the caller, after the session closes
            _queue_resolution(session, repo)
            _audit(
                session,
                actor,
                "repository.create",
                repo.id,
                {
                    "full_name": repo.full_name,
                    "provider": repo.provider,
                    "fields": sorted(body.model_fields_set),
                },
            )
    except IntegrityError:
        raise RegistryProblem(409, f"{body.full_name} is already registered") from None
    _changed(svc, repo.id, sync=False)
    return repo, webhook_secret


def update_repository(
    svc: Services, repo_id: int, body: RepositoryUpdate, actor: Actor
) -> tuple[Repository, str | None]:
    """Change a registration; returns it and the new webhook secret when it was rotated."""
    new_secret: str | None = None
    with svc.db.session() as session:
        repo = get_repository(session, repo_id)
        if body.clone_url is not None:
            repo.clone_url = checked_url(svc, body.clone_url, repo.provider)
            _check_source(svc, repo.provider, repo.clone_url)
        if body.notification_token is not None:
            repo.source_private = check_token(svc, repo.provider, body.notification_token, repo.full_name)
            repo.notification_token_enc = svc.box.seal(body.notification_token)
        token = svc.box.open(repo.notification_token_enc)
        if body.firecrest_client_id is not None:
            repo.firecrest_client_id = body.firecrest_client_id
        if body.firecrest_client_secret is not None:
            repo.firecrest_client_secret_enc = svc.box.seal(body.firecrest_client_secret)
        if "default_account" in body.model_fields_set:
            repo.default_account = body.default_account
        if body.trusted_users is not None:
            repo.trusted_users = _trusted_users(svc, repo, token, body.trusted_users, "trusted_users") or []
        if body.branches is not None:
            repo.branches = body.branches
        if body.rotate_webhook_secret:
            new_secret = secrets.token_urlsafe(32)
            repo.webhook_secret_enc = svc.box.seal(new_secret)
        session.flush()
        _queue_resolution(session, repo)
        fields = sorted(body.model_fields_set - {"rotate_webhook_secret"})
        if fields:
            _audit(
                session, actor, "repository.update", repo.id, {"full_name": repo.full_name, "fields": fields}
            )
        if new_secret:
            _audit(session, actor, "webhook_secret.rotate", repo.id, {"full_name": repo.full_name})
        repo.pipelines  # noqa: B018 - loaded for the caller, after the session closes
    _changed(svc, repo_id, sync=True)
    return repo, new_secret


def delete_repository(svc: Services, repo_id: int, actor: Actor) -> None:
    """Gone at once here; the workers then delete its mirror projects (their pipelines, logs and
    CI variables with the FirecREST credentials) and its mirror cache. Ids are never reused."""
    with svc.db.session() as session:
        repo = get_repository(session, repo_id)
        names = [p.name for p in repo.pipelines]
        _audit(
            session, actor, "repository.delete", None, {"full_name": repo.full_name, "repository_id": repo_id}
        )
        session.delete(repo)
        session.add(
            OutboxItem(
                task=PURGE_REPOSITORY, payload={"repository_id": repo_id, "pipelines": names}, due_at=utcnow()
            )
        )
    _changed(svc, repo_id, sync=False)


# -- pipelines ---------------------------------------------------------------------------------


def create_pipeline(svc: Services, repo_id: int, body: PipelineCreate, actor: Actor) -> Pipeline:
    try:
        with svc.db.session() as session:
            repo = get_repository(session, repo_id)
            pipeline = Pipeline(
                name=body.name,
                entrypoint=body.entrypoint,
                system=body.system,
                trusted_users=_trusted_users(
                    svc, repo, svc.box.open(repo.notification_token_enc), body.trusted_users, "trusted_users"
                ),
                branches=body.branches,
                tags=body.tags,
                cancel_superseded=body.cancel_superseded,
                variables_enc=svc.box.seal(json.dumps(body.variables)) if body.variables else None,
                allowed_variables=body.allowed_variables,
            )
            repo.pipelines.append(pipeline)
            session.flush()
            _queue_resolution(session, repo)
            _audit(
                session,
                actor,
                "pipeline.create",
                repo.id,
                {"pipeline": body.name, "fields": sorted(body.model_fields_set - {"name"})},
            )
    except IntegrityError:
        raise field_problem(
            409, "name", f"pipeline {body.name!r} already exists in this repository"
        ) from None
    _changed(svc, repo_id, sync=False)
    return pipeline


def update_pipeline(svc: Services, repo_id: int, name: str, body: PipelineUpdate, actor: Actor) -> Pipeline:
    with svc.db.session() as session:
        repo = get_repository(session, repo_id)
        pipeline = get_pipeline(repo, name)
        for field in ("entrypoint", "system", "tags", "cancel_superseded"):
            value = getattr(body, field)
            if value is not None:
                setattr(pipeline, field, value)
        if "branches" in body.model_fields_set:
            pipeline.branches = body.branches
        if "trusted_users" in body.model_fields_set:
            token = svc.box.open(repo.notification_token_enc)
            pipeline.trusted_users = _trusted_users(svc, repo, token, body.trusted_users, "trusted_users")
            _queue_resolution(session, repo)
        if body.variables is not None:
            pipeline.variables_enc = svc.box.seal(json.dumps(body.variables)) if body.variables else None
        if "allowed_variables" in body.model_fields_set:
            pipeline.allowed_variables = body.allowed_variables
        session.flush()
        if body.model_fields_set:
            _audit(
                session,
                actor,
                "pipeline.update",
                repo.id,
                {"pipeline": name, "fields": sorted(body.model_fields_set)},
            )
    _changed(svc, repo_id, sync=True)
    return pipeline


def delete_pipeline(svc: Services, repo_id: int, name: str, actor: Actor) -> None:
    with svc.db.session() as session:
        repo = get_repository(session, repo_id)
        repo.pipelines.remove(get_pipeline(repo, name))
        _audit(session, actor, "pipeline.delete", repo.id, {"pipeline": name})
    _changed(svc, repo_id, sync=False)


def set_variable(
    svc: Services, repo_id: int, pipeline_name: str, name: str, value: str, actor: Actor
) -> None:
    """Add or replace one secret CI variable of a pipeline (the value is sealed, never shown)."""
    try:
        checked = PipelineUpdate.model_validate({"variables": {name: value}})
    except ValidationError as error:
        where = "variable_value" if name and _VARIABLE.fullmatch(name) else "variable_name"
        raise field_problem(422, where, error_details(error)[0]["message"]) from None
    with svc.db.session() as session:
        pipeline = get_pipeline(get_repository(session, repo_id), pipeline_name)
        variables = pipeline_variables(svc, pipeline) | dict(checked.variables or {})
        if len(variables) > 100:
            raise field_problem(422, "variable_name", "a pipeline holds at most 100 variables")
        pipeline.variables_enc = svc.box.seal(json.dumps(variables))
        _audit(session, actor, "variable.set", repo_id, {"pipeline": pipeline_name, "variable": name})
    _changed(svc, repo_id, sync=True)


def delete_variable(svc: Services, repo_id: int, pipeline_name: str, name: str, actor: Actor) -> None:
    with svc.db.session() as session:
        pipeline = get_pipeline(get_repository(session, repo_id), pipeline_name)
        variables = pipeline_variables(svc, pipeline)
        if name not in variables:
            raise RegistryProblem(404, f"pipeline {pipeline_name!r} has no variable {name!r}")
        del variables[name]
        pipeline.variables_enc = svc.box.seal(json.dumps(variables)) if variables else None
        _audit(session, actor, "variable.delete", repo_id, {"pipeline": pipeline_name, "variable": name})
    _changed(svc, repo_id, sync=True)
