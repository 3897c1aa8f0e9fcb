"""Middleware fixtures: an app on a fresh SQLite database and an in-memory broker."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from middleware.app import create_app
from middleware.services import EXTENSION, Services
from middleware.settings import Settings
from middleware.sources.github.signature import sign
from middleware.sources.github.tokens import TokenRejected
from tests.conftest import service_url

ADMIN = "admin-token-for-tests-0123456789"
SECRET_KEY = "middleware-secret-key-for-tests-0123456789"
GOOD_TOKEN = "ghp_goodtokenfortests0123456789"
WEBHOOKS = Path(__file__).resolve().parents[2] / "data" / "webhooks" / "github"


def fake_token_check(token: str, full_name: str) -> bool:
    if token != GOOD_TOKEN:
        raise TokenRejected("GitHub refused the notification token (bad credentials)")
    return full_name.endswith("-private")


#: GitHub users the fake resolver knows, by login (lower case) -> numeric id.
USER_IDS = {"alice": 1001, "bob": 1002, "carol": 1003, "dave": 1004, "octocat": 583231, "mallory": 666}


def fake_resolve_users(token: str, logins: list[str]) -> dict[str, int]:
    from middleware.sources.github.users import UnknownUser

    missing = [login for login in logins if login.lower() not in USER_IDS]
    if missing:
        raise UnknownUser(f"GitHub has no user {missing[0]!r}")
    return {login: USER_IDS[login.lower()] for login in logins}


def make_settings(tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "data_dir": tmp_path / "state",
        "database_url": f"sqlite:///{tmp_path / 'mw.db'}",
        "broker_url": "memory://",
        "middleware_secret_key": SECRET_KEY,
        "admin_token": ADMIN,
        "public_url": "https://ci.example.org",
        "log_json": True,
    }
    values.update(overrides)
    return Settings(**values)


@contextmanager
def postgres_database() -> Iterator[str]:
    """A fresh PostgreSQL database on the server `make test` started; dropped afterwards."""
    import psycopg

    server = service_url("TEST_POSTGRES_URL")
    admin_url = server.replace("postgresql+psycopg://", "postgresql://")
    name = f"fci_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_url, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    try:
        yield server.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with psycopg.connect(admin_url, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Every app test runs on the embedded default (SQLite) and the production database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'mw.db'}"
    else:
        with postgres_database() as url:
            yield url


def make_app(tmp_path: Path, database_url: str, **overrides: Any) -> Flask:
    """An app on `database_url` whose GitHub look-ups are the fakes above (no network)."""
    return create_app(
        make_settings(tmp_path, database_url=database_url, **overrides),
        check_github_token=fake_token_check,
        resolve_github_users=fake_resolve_users,
    )


@pytest.fixture
def app(tmp_path: Path, database_url: str) -> Iterator[Flask]:
    application = make_app(tmp_path, database_url)
    yield application
    application.extensions[EXTENSION].db.dispose()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def svc(app: Flask) -> Services:
    found: Services = app.extensions[EXTENSION]
    return found


def admin() -> dict[str, str]:
    return {"Authorization": f"Bearer {ADMIN}"}


def repository_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "full_name": "octo-org/hpc-code",
        "clone_url": "https://github.com/octo-org/hpc-code.git",
        "notification_token": GOOD_TOKEN,
        "firecrest_client_id": "client-1",
        "firecrest_client_secret": "firecrest-secret-value-xyz",
        "default_account": "proj42",
        "trusted_users": ["alice", "Bob"],
        "branches": ["main", "release/*"],
    }
    body.update(overrides)
    return body


@pytest.fixture
def registered(client: FlaskClient) -> dict[str, Any]:
    """A repository with two pipelines; the answer includes the webhook secret."""
    answer = client.post("/api/repositories", json=repository_body(), headers=admin())
    assert answer.status_code == 201, answer.get_data(as_text=True)
    repo: dict[str, Any] = answer.get_json()
    for name, system in (("cpu", "cluster"), ("gpu", "daint")):
        made = client.post(
            f"/api/repositories/{repo['id']}/pipelines",
            json={
                "name": name,
                "entrypoint": f"ci/{name}.yml",
                "system": system,
                "variables": {"TOKEN": "pipeline-secret-value"},
            },
            headers=admin(),
        )
        assert made.status_code == 201, made.get_data(as_text=True)
    return repo


def load_payload(event: str, name: str = "payload.json") -> dict[str, Any]:
    data: dict[str, Any] = json.loads((WEBHOOKS / event / name).read_text())
    return data


def retarget(payload: dict[str, Any], full_name: str = "octo-org/hpc-code") -> dict[str, Any]:
    """Point a real example payload at our registered repository."""
    owner, name = full_name.split("/")
    payload["repository"]["full_name"] = full_name
    payload["repository"]["name"] = name
    if isinstance(payload["repository"].get("owner"), dict):
        payload["repository"]["owner"]["login"] = owner
    return payload


def deliver(
    client: FlaskClient,
    event: str,
    payload: Any,
    secret: str,
    *,
    delivery: str | None = None,
    form: bool = False,
    signature: str | None = None,
) -> Any:
    if form:
        from urllib.parse import urlencode

        body = urlencode({"payload": json.dumps(payload)}).encode()
        content_type = "application/x-www-form-urlencoded"
    else:
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        content_type = "application/json"
    headers = {
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
        "X-Hub-Signature-256": signature if signature is not None else sign(secret, body),
        "Content-Type": content_type,
    }
    return client.post("/webhooks/github", data=body, headers=headers)
