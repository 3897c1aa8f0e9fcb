"""From posted HTML forms to the registry's pydantic schemas, and their errors back to fields.

The pages validate with the same schemas as the JSON API; this only reads form fields into the
schema's shape (lists from one-per-line text) and puts each problem next to its field.
Secret fields are never kept for re-display.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from werkzeug.datastructures import MultiDict

from middleware.models import Pipeline, Repository
from middleware.registry.schemas import error_details
from middleware.registry.service import RegistryProblem

M = TypeVar("M", bound=BaseModel)
#: Where a problem that belongs to no one field is shown: at the top of the form.
FORM = "_form"
#: Fields whose values are never rendered back into a page.
SECRET_FIELDS = frozenset({"notification_token", "firecrest_client_secret", "variable_value", "admin_token"})
_SPLIT = re.compile(r"[\s,]+")
_PATTERN_WORDS = {
    "full_name": "owner/name, e.g. octo-org/hpc-code",
    "name": "a name without spaces, at most 100 characters",
    "entrypoint": "a path in the repository without spaces, e.g. ci/pipeline.yml",
    "system": "letters, digits, '.', '_' or '-', e.g. daint",
}


@dataclass
class FormState:
    """What one form shows: the values entered (never secrets) and the problems by field."""

    values: dict[str, str] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)


def split_list(text: str | None) -> list[str]:
    """One entry per line (commas and spaces separate too)."""
    return [item for item in _SPLIT.split(text or "") if item]


def kept_values(form: MultiDict[str, str]) -> dict[str, str]:
    """The posted values to show again, without secrets and the CSRF token."""
    return {k: v for k, v in form.items() if k not in SECRET_FIELDS and k != "csrf_token"}


def _message(item: dict[str, Any]) -> str:
    text = str(item["message"]).removeprefix("Value error, ")
    where = str(item["field"]).split(".")[0]
    if item.get("type") == "string_pattern_mismatch" and where in _PATTERN_WORDS:
        return f"must be {_PATTERN_WORDS[where]}"
    if item.get("type") == "string_too_short":
        return "must not be empty"
    return text


def _field_of(item: dict[str, Any]) -> str:
    where = str(item["field"]).split(".")[0]
    if where:
        return where
    text = str(item["message"])
    if "full_name" in text:
        return "full_name"
    if " is not a " in text:
        return "trusted_users"
    return FORM


def validation_errors(error: ValidationError) -> dict[str, str]:
    """Each problem by its field (the first per field), without the rejected input."""
    found: dict[str, str] = {}
    for item in error_details(error):
        found.setdefault(_field_of(item), _message(item))
    return found


def problem_errors(problem: RegistryProblem) -> dict[str, str]:
    """A refusal of the registry by field, or for the whole form."""
    if problem.details:
        return {str(d["field"]).split(".")[0] or FORM: str(d["message"]) for d in problem.details}
    return {FORM: problem.message}


def _nul_fields(data: dict[str, Any]) -> dict[str, str]:
    """Fields holding a NUL, which PostgreSQL text cannot store and no field needs."""
    found: dict[str, str] = {}
    for name, value in data.items():
        items = value if isinstance(value, list) else [value]
        if any(isinstance(item, str) and "\x00" in item for item in items):
            found[name] = "must not contain NUL characters"
    return found


def validate(model: type[M], data: dict[str, Any]) -> tuple[M | None, dict[str, str]]:
    """The schema object, or the problems by field (NUL characters are refused first)."""
    nul = _nul_fields(data)
    if nul:
        return None, nul
    try:
        return model.model_validate(data), {}
    except ValidationError as error:
        return None, validation_errors(error)


def _logins(users: list[dict[str, Any]] | None) -> list[str] | None:
    return None if users is None else sorted((str(u["login"]) for u in users), key=str.lower)


def _same_users(given: list[str] | None, stored: list[dict[str, Any]] | None) -> bool:
    if given is None or stored is None:
        return given is None and stored is None
    return sorted({g.lower() for g in given}) == sorted({str(u["login"]).lower() for u in stored})


def users_text(users: list[dict[str, Any]] | None) -> str:
    return "\n".join(_logins(users) or [])


def registration_data(form: MultiDict[str, str], provider: str, *, token: bool) -> dict[str, Any]:
    """The new-repository form as a RepositoryCreate body."""
    data: dict[str, Any] = {
        "provider": provider,
        "full_name": form.get("full_name", "").strip(),
        "clone_url": form.get("clone_url", "").strip(),
        "firecrest_client_id": form.get("firecrest_client_id", "").strip(),
        "firecrest_client_secret": form.get("firecrest_client_secret", ""),
        "default_account": form.get("default_account", "").strip() or None,
        "trusted_users": split_list(form.get("trusted_users")),
        "branches": split_list(form.get("branches")) or ["main"],
    }
    if token:
        data["notification_token"] = form.get("notification_token", "")
    return data


def settings_changes(form: MultiDict[str, str], repo: Repository, *, token: bool) -> dict[str, Any]:
    """The setup form as a RepositoryUpdate body: only what differs from what is stored; an
    empty secret field keeps the stored secret."""
    data: dict[str, Any] = {}
    client_id = form.get("firecrest_client_id", "").strip()
    if client_id != repo.firecrest_client_id:
        data["firecrest_client_id"] = client_id
    if form.get("firecrest_client_secret"):
        data["firecrest_client_secret"] = form["firecrest_client_secret"]
    if token and form.get("notification_token"):
        data["notification_token"] = form["notification_token"]
    account = form.get("default_account", "").strip() or None
    if account != repo.default_account:
        data["default_account"] = account
    users = split_list(form.get("trusted_users"))
    if not _same_users(users, repo.trusted_users):
        data["trusted_users"] = users
    branches = split_list(form.get("branches"))
    if branches != list(repo.branches or []):
        data["branches"] = branches
    return data


def pipeline_data(form: MultiDict[str, str]) -> dict[str, Any]:
    """The add-a-pipeline form as a PipelineCreate body (empty lists: the repository's)."""
    return {
        "name": form.get("name", "").strip(),
        "entrypoint": form.get("entrypoint", "").strip(),
        "system": form.get("system", "").strip(),
        "trusted_users": split_list(form.get("trusted_users")) or None,
        "branches": split_list(form.get("branches")) or None,
    }


def pipeline_changes(form: MultiDict[str, str], pipeline: Pipeline) -> dict[str, Any]:
    """A pipeline's edit form as a PipelineUpdate body: only what differs."""
    data: dict[str, Any] = {}
    for name in ("entrypoint", "system"):
        value = form.get(name, "").strip()
        if value != getattr(pipeline, name):
            data[name] = value
    users = split_list(form.get("trusted_users")) or None
    if not _same_users(users, pipeline.trusted_users):
        data["trusted_users"] = users
    branches = split_list(form.get("branches")) or None
    if branches != pipeline.branches:
        data["branches"] = branches
    return data
