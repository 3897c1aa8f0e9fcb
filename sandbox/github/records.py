"""Typed records the GitHub stand-in keeps for Apps, installations, tokens, checks and deliveries.

Plain data, no behaviour: the state (state.py) owns and changes them under its lock, the
renderers (render.py) turn them into GitHub's JSON shapes.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

#: Repository roles, weakest first, as GitHub names them.
ROLES = ("read", "triage", "write", "maintain", "admin")
#: Permission levels of Apps and fine-grained tokens, weakest first.
LEVELS = {"read": 1, "write": 2, "admin": 3}
#: What a freshly registered App may do unless told otherwise: enough for CI reporting.
DEFAULT_APP_PERMISSIONS = {
    "checks": "write",
    "contents": "read",
    "issues": "write",
    "metadata": "read",
    "pull_requests": "write",
    "statuses": "write",
}
DEFAULT_APP_EVENTS = ["check_run", "check_suite", "issue_comment", "pull_request", "push"]


def iso(seconds: float) -> str:
    """GitHub's timestamp format (UTC, whole seconds, `Z`)."""
    return dt.datetime.fromtimestamp(seconds, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class App:
    """A registered GitHub App: the public half of its key checks the JWTs it signs."""

    id: int
    slug: str
    name: str
    owner: str
    public_key: RSAPublicKey
    client_id: str
    client_secret: str
    webhook_url: str | None
    webhook_secret: str | None
    callback_url: str | None
    permissions: dict[str, str]
    events: list[str]
    hook_id: int
    created_at: str
    description: str = ""
    external_url: str = ""


@dataclass
class OAuthApp:
    """A classic OAuth App: only the web flow and the `gho_` tokens it hands out."""

    client_id: str
    client_secret: str
    name: str
    callback_url: str | None


@dataclass
class Installation:
    """An App installed on an account, on all its repositories or on chosen ones (by id)."""

    id: int
    app_id: int
    account: str
    repository_selection: str
    repo_ids: set[int]
    permissions: dict[str, str]
    events: list[str]
    created_at: str
    updated_at: str
    suspended_at: str | None = None
    suspended_by: str | None = None


@dataclass
class InstallationToken:
    """A `ghs_` token: an installation's permissions, maybe narrowed, for one hour."""

    token: str
    installation_id: int
    expires_at: float
    permissions: dict[str, str]
    #: None: whatever repositories the installation has when the token is used.
    repo_ids: set[int] | None


@dataclass
class UserToken:
    """A user's token from the OAuth web flow: `ghu_` (a GitHub App's) or `gho_` (an OAuth App's)."""

    token: str
    login: str
    client_id: str
    #: The GitHub App it acts through; None for a classic OAuth App.
    app_id: int | None
    scopes: list[str]
    expires_at: float | None


@dataclass
class FineGrainedToken:
    """A `github_pat_` token: per-repository permissions (by repository id), no scopes."""

    token: str
    login: str
    repositories: dict[int, dict[str, str]]


@dataclass
class OAuthCode:
    """A one-time code the authorize page hands to the redirect URI."""

    code: str
    client_id: str
    login: str
    redirect_uri: str | None
    scopes: list[str]
    expires_at: float


@dataclass
class CheckSuite:
    """The suite GitHub opens for one App on one commit, when the App's first run arrives."""

    id: int
    repo_id: int
    app_id: int
    head_sha: str
    head_branch: str | None
    created_at: str
    updated_at: str


@dataclass
class CheckRun:
    """A check run as an App last wrote it; annotations accumulate over updates."""

    id: int
    repo_id: int
    app_id: int
    installation_id: int
    suite_id: int
    name: str
    head_sha: str
    status: str
    conclusion: str | None
    started_at: str | None
    completed_at: str | None
    details_url: str | None = None
    external_id: str | None = None
    output: dict[str, Any] = field(default_factory=dict)
    annotations: list[dict[str, Any]] = field(default_factory=list)
    actions: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Delivery:
    """One attempt to deliver a webhook to an App, with what was sent and what came back."""

    id: int
    guid: str
    app_id: int
    event: str
    action: str | None
    installation_id: int | None
    repository_id: int | None
    url: str
    delivered_at: str
    redelivery: bool
    duration: float
    status: str
    status_code: int
    request_headers: dict[str, str]
    payload: dict[str, Any]
    response_headers: dict[str, str]
    response_body: str

    @property
    def ok(self) -> bool:
        return 200 <= self.status_code < 300
