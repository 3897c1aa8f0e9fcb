"""What the app factory builds once and every request or task shares."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flask import current_app

from middleware.crypto import SecretBox
from middleware.db import Database
from middleware.settings import Settings

EXTENSION = "firecrest_ci"


@dataclass
class Services:
    settings: Settings
    db: Database
    box: SecretBox
    #: Publishes outbox rows to the queue; returns how many went out.
    publish: Callable[[], int]
    #: Checks a GitHub token live (PyGithub); raises TokenRejected.
    check_github_token: Callable[[str, str], None]
    celery: Any = None


def services() -> Services:
    found: Services = current_app.extensions[EXTENSION]
    return found
