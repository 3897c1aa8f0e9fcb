"""What the app factory builds once and every request or task shares."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flask import current_app

from middleware.cache import RegistrationCache
from middleware.crypto import SecretBox
from middleware.db import Database
from middleware.settings import Settings
from middleware.sources.base import Source
from middleware.sources.github.app_auth import GitHubApp

EXTENSION = "firecrest_ci"


@dataclass
class Services:
    settings: Settings
    db: Database
    box: SecretBox
    #: Hands due runs and outbox rows to the queue now (what the workers' dispatcher does).
    dispatch: Callable[[], int]
    #: Checks a GitHub token live (PyGithub); raises TokenRejected; returns the repo's privacy.
    check_github_token: Callable[[str, str], bool]
    #: Logins -> GitHub's numeric user ids (PyGithub); raises UnknownUser or UsersUnavailable.
    resolve_github_users: Callable[[str, list[str]], dict[str, int]]
    #: The source providers by name (`github`, `gitlab`, `bitbucket`).
    sources: dict[str, Source] = field(default_factory=dict)
    celery: Any = None
    registrations: RegistrationCache = field(default_factory=RegistrationCache)
    #: The GitHub App (App mode: GITHUB_APP_ID set), else None (token mode).
    github_app: GitHubApp | None = None


def services() -> Services:
    found: Services = current_app.extensions[EXTENSION]
    return found
