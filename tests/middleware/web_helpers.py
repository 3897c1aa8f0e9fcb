"""Helpers for the pages' tests: an app on SQLite, CSRF tokens from forms, signed-in clients."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

from flask import Flask
from flask.testing import FlaskClient

from tests.middleware.conftest import ADMIN, admin, make_app, repository_body

_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def pages_app(tmp_path: Path, **overrides: Any) -> Flask:
    """The app on SQLite with plain-HTTP cookies allowed (the test client is not HTTPS)."""
    overrides.setdefault("session_cookie_secure", False)
    return make_app(tmp_path, f"sqlite:///{tmp_path / 'pages.db'}", **overrides)


def csrf_token(client: FlaskClient, path: str = "/sign-in") -> str:
    html = client.get(path).get_data(as_text=True)
    found = _CSRF.search(html)
    assert found, f"no CSRF token on {path}"
    return found.group(1)


def post_form(client: FlaskClient, path: str, data: dict[str, Any], page: str = "/sign-in") -> Any:
    """Post a form the way a browser does: with the token of a page the client has open."""
    return client.post(path, data={**data, "csrf_token": csrf_token(client, page)})


def sign_in_operator(client: FlaskClient) -> None:
    answer = post_form(client, "/sign-in", {"admin_token": ADMIN})
    assert answer.status_code == 302, answer.get_data(as_text=True)


def sign_in_as_github(client: FlaskClient, login: str, user_id: int, managed: list[int]) -> None:
    """A GitHub user's session as the OAuth sign-in leaves it (the flow itself is tested apart)."""
    with client.session_transaction() as session:
        session.permanent = True
        session["viewer"] = {"kind": "github", "login": login, "user_id": user_id}
        session["managed"] = managed
        session["rights_at"] = time.time()


def register_api(client: FlaskClient, **overrides: Any) -> dict[str, Any]:
    """A repository registered through the JSON API, with a pipeline `cpu`."""
    answer = client.post("/api/repositories", json=repository_body(**overrides), headers=admin())
    assert answer.status_code == 201, answer.get_data(as_text=True)
    repo: dict[str, Any] = answer.get_json()
    made = client.post(
        f"/api/repositories/{repo['id']}/pipelines",
        json={
            "name": "cpu",
            "entrypoint": "ci/cpu.yml",
            "system": "daint",
            "variables": {"TOKEN": "pipe-secret-1"},
        },
        headers=admin(),
    )
    assert made.status_code == 201, made.get_data(as_text=True)
    return repo
