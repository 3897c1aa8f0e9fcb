"""Request bodies of the registration API, validated with pydantic.

Secrets are write-only: they appear in input models, never in output ones.
Validation errors are reported without the offending input, so a secret
sent to the wrong field is not echoed back.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from middleware.commands import check_variable_name

NAME_PATTERN = r"^[^\s]{1,100}$"
#: A GitHub owner/name or a Bitbucket workspace/slug; the intake refuses any other name unread.
FULL_NAME_PATTERN = r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$"
#: A GitLab project's path with its groups and subgroups (`group/sub/project`).
NESTED_NAME_PATTERN = r"^[A-Za-z0-9_.-]+(?:/[A-Za-z0-9_.-]+){1,20}$"
PROVIDERS = ("github", "gitlab", "bitbucket")
_FULL_NAMES = {
    "github": re.compile(FULL_NAME_PATTERN),
    "gitlab": re.compile(NESTED_NAME_PATTERN),
    "bitbucket": re.compile(FULL_NAME_PATTERN),
}
_LOGIN = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})$")
#: GitLab usernames; Bitbucket Cloud account UUIDs (`{...}`: Bitbucket looks no one up by name).
_GITLAB_USER = re.compile(r"^[A-Za-z0-9_.][A-Za-z0-9_.-]{0,254}$")
_BITBUCKET_USER = re.compile(
    r"^\{[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\}$"
)
_USERS = {"github": _LOGIN, "gitlab": _GITLAB_USER, "bitbucket": _BITBUCKET_USER}
_USER_WORDS = {
    "github": "a GitHub login",
    "gitlab": "a GitLab username",
    "bitbucket": "a Bitbucket account UUID ({...})",
}


def full_name_pattern(provider: str) -> re.Pattern[str]:
    """The names a provider can send; the intake refuses any other before looking it up."""
    return _FULL_NAMES[provider]


def check_users(provider: str, values: list[str] | None) -> list[str] | None:
    """The trusted users of a registration of `provider`, each in that provider's form."""
    if values is None:
        return None
    for user in values:
        if not _USERS[provider].fullmatch(user):
            raise ValueError(f"{user!r} is not {_USER_WORDS[provider]}")
    return sorted(set(values), key=str.lower)


_VAR_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

Secret = Annotated[str, Field(min_length=1, max_length=4096)]
Login = Annotated[str, Field(min_length=1, max_length=255)]
_ANY_USER = re.compile(r"^[A-Za-z0-9_.{}-]{1,255}$")


def _check_logins(values: list[str] | None) -> list[str] | None:
    """Any provider's user form here; the registration's provider checks its own (check_users)."""
    if values is None:
        return None
    for login in values:
        if not _ANY_USER.fullmatch(login):
            raise ValueError(f"{login!r} is not a user name or id")
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
    provider: Literal["github", "gitlab", "bitbucket"] = "github"
    full_name: str = Field(pattern=NESTED_NAME_PATTERN, max_length=200)
    clone_url: str = Field(max_length=500)
    notification_token: Secret
    firecrest_client_id: str = Field(min_length=1, max_length=200)
    firecrest_client_secret: Secret
    default_account: str | None = Field(default=None, max_length=100)
    trusted_users: list[Login] = Field(default_factory=list, max_length=500)
    branches: list[str] = Field(default_factory=lambda: ["main"], max_length=100)

    _logins = field_validator("trusted_users")(_check_logins)
    _branches = field_validator("branches")(_check_branches)

    @model_validator(mode="after")
    def _provider_forms(self) -> RepositoryCreate:
        if not full_name_pattern(self.provider).fullmatch(self.full_name):
            raise ValueError(f"full_name {self.full_name!r} is not a {self.provider} repository name")
        check_users(self.provider, self.trusted_users)
        return self


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
