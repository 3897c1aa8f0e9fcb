"""Request bodies of the registration API, validated with pydantic.

Secrets are write-only: they appear in input models, never in output ones.
Validation errors are reported without the offending input, so a secret
sent to the wrong field is not echoed back.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from middleware.commands import check_variable_name

NAME_PATTERN = r"^[^\s]{1,100}$"
#: A GitHub owner/name; the webhook intake refuses any other name before looking it up.
FULL_NAME_PATTERN = r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$"
_LOGIN = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})$")
_VAR_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

Secret = Annotated[str, Field(min_length=1, max_length=4096)]
Login = Annotated[str, Field(min_length=1, max_length=39)]


def _check_logins(values: list[str] | None) -> list[str] | None:
    if values is None:
        return None
    for login in values:
        if not _LOGIN.fullmatch(login):
            raise ValueError(f"{login!r} is not a GitHub login")
    return sorted(set(values), key=str.lower)


def _check_branches(values: list[str] | None) -> list[str] | None:
    if values is None:
        return None
    for branch in values:
        if not branch or branch.startswith("-") or any(c.isspace() or ord(c) < 32 for c in branch):
            raise ValueError(f"{branch!r} is not a branch name or pattern")
    return values


def _check_variables(values: dict[str, str] | None) -> dict[str, str] | None:
    for name in values or {}:
        if not _VAR_NAME.fullmatch(name):
            raise ValueError(f"{name!r} is not a variable name")
    return values


def _check_allowed_variables(values: list[str] | None) -> list[str] | None:
    """The names a comment or API trigger may set: the same rule as theirs, so none is unusable."""
    for name in values or ():
        problem = check_variable_name(name)
        if problem:
            raise ValueError(problem)
    return None if values is None else sorted(set(values))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class RepositoryCreate(_Strict):
    provider: str = Field(default="github", pattern="^github$")
    full_name: str = Field(pattern=FULL_NAME_PATTERN, max_length=200)
    clone_url: str = Field(max_length=500)
    notification_token: Secret
    firecrest_client_id: str = Field(min_length=1, max_length=200)
    firecrest_client_secret: Secret
    default_account: str | None = Field(default=None, max_length=100)
    trusted_users: list[Login] = Field(default_factory=list, max_length=500)
    branches: list[str] = Field(default_factory=lambda: ["main"], max_length=100)

    _logins = field_validator("trusted_users")(_check_logins)
    _branches = field_validator("branches")(_check_branches)


class RepositoryUpdate(_Strict):
    clone_url: str | None = Field(default=None, max_length=500)
    notification_token: Secret | None = None
    firecrest_client_id: str | None = Field(default=None, min_length=1, max_length=200)
    firecrest_client_secret: Secret | None = None
    default_account: str | None = Field(default=None, max_length=100)
    trusted_users: list[Login] | None = Field(default=None, max_length=500)
    branches: list[str] | None = Field(default=None, max_length=100)
    rotate_webhook_secret: bool = False

    _logins = field_validator("trusted_users")(_check_logins)
    _branches = field_validator("branches")(_check_branches)


class PipelineCreate(_Strict):
    name: str = Field(pattern=NAME_PATTERN)
    entrypoint: str = Field(min_length=1, max_length=500, pattern=r"^[^\s]+$")
    system: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
    trusted_users: list[Login] | None = Field(default=None, max_length=500)
    branches: list[str] | None = Field(default=None, max_length=100)
    tags: list[str] = Field(default_factory=list, max_length=100)
    cancel_superseded: bool = True
    variables: dict[str, Secret] = Field(default_factory=dict, max_length=100)
    #: The only variable names a comment or API trigger may set; None: any name not reserved.
    allowed_variables: list[str] | None = Field(default=None, max_length=100)

    _logins = field_validator("trusted_users")(_check_logins)
    _branches = field_validator("branches", "tags")(_check_branches)

    _variables = field_validator("variables")(_check_variables)
    _allowed = field_validator("allowed_variables")(_check_allowed_variables)


class PipelineUpdate(_Strict):
    entrypoint: str | None = Field(default=None, min_length=1, max_length=500, pattern=r"^[^\s]+$")
    system: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
    trusted_users: list[Login] | None = None
    branches: list[str] | None = None
    tags: list[str] | None = None
    cancel_superseded: bool | None = None
    variables: dict[str, Secret] | None = None
    #: Replaces the list; null lifts the narrowing.
    allowed_variables: list[str] | None = Field(default=None, max_length=100)

    _logins = field_validator("trusted_users")(_check_logins)
    _branches = field_validator("branches", "tags")(_check_branches)
    _variables = field_validator("variables")(_check_variables)
    _allowed = field_validator("allowed_variables")(_check_allowed_variables)


def error_details(error: ValidationError) -> list[dict[str, Any]]:
    """Field, message and type of each problem; never the rejected input."""
    return [
        {"field": ".".join(str(p) for p in item["loc"]), "message": item["msg"], "type": item["type"]}
        for item in error.errors(include_input=False, include_url=False, include_context=False)
    ]
