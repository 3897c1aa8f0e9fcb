"""`firecrest-ci-middleware migrate` and `check`: one line per service, exit 1 on any problem,
and no secret in any line."""

from __future__ import annotations

import json
import os
import threading
import tomllib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy.engine import make_url

from middleware.cli import main
from middleware.crypto import SecretBox
from middleware.db import Database
from middleware.models import Repository
from middleware.settings import Settings
from tests.conftest import service_url
from tests.middleware.conftest import postgres_database

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "glpat-cli-check-secret-0123456789"
ADMIN = "cli-admin-token-secret-0123456789"
KEY = "cli-secret-key-0123456789abcdefghijklmnop"


class Stub(BaseHTTPRequestHandler):
    """GitLab's GET /api/v4/user and GitHub's API root and GET /app, as `check` asks them."""

    def do_GET(self) -> None:
        if self.path == "/api/v4/user":
            good = self.headers.get("PRIVATE-TOKEN") == TOKEN
            self._answer(200 if good else 401, {"id": 1, "username": "ci"} if good else {"message": "401"})
        elif self.path == "/app":
            bearer = self.headers.get("Authorization", "")
            self._answer(200 if bearer.startswith("Bearer ey") else 401, {"id": 7, "slug": "ci"})
        elif self.path == "/":
            self._answer(200, {"current_user_url": "/user"})
        else:
            self._answer(404, {"message": "Not Found"})

    def _answer(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *_args: Any) -> None:
        return


@pytest.fixture(scope="module")
def stub() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Stub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def database_url() -> Iterator[str]:
    with postgres_database() as url:
        yield url


@pytest.fixture
def env(tmp_path, monkeypatch, database_url, stub) -> dict[str, str]:
    """The operator's environment: PostgreSQL, Redis, the stub as GitLab and GitHub."""
    for name in list(os.environ):
        if name.lower() in Settings.model_fields or name.upper().endswith("_FILE"):
            monkeypatch.delenv(name)
    values = {
        "DATA_DIR": str(tmp_path / "state"),
        "DATABASE_URL": database_url,
        "REDIS_URL": service_url("TEST_REDIS_URL"),
        "MIDDLEWARE_SECRET_KEY": KEY,
        "ADMIN_TOKEN": ADMIN,
        "GITLAB_URL": stub,
        "GITLAB_TOKEN": TOKEN,
        "GITHUB_API_URL": stub,
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return values


def run(*args: str) -> Any:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_the_console_script_is_declared():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["scripts"]["firecrest-ci-middleware"] == "middleware.cli:main"


def test_check_then_migrate_then_check(env, monkeypatch):
    before = run("check")
    assert before.exit_code == 1
    problems = [line for line in before.output.splitlines() if line.startswith("problem:")]
    assert len(problems) == 1, before.output
    assert "is at schema revision none" in problems[0] and "firecrest-ci-middleware migrate" in problems[0]

    migrated = run("migrate")
    assert migrated.exit_code == 0, migrated.output
    assert migrated.output.startswith("ok: database schema at revision ")
    assert run("migrate").output == migrated.output  # idempotent

    after = run("check")
    assert after.exit_code == 0, after.output
    lines = after.output.splitlines()
    assert [line.split(":")[1].strip() for line in lines] == [
        "settings",
        "database",
        "broker",
        "managed GitLab",
    ]
    assert all(line.startswith("ok: ") for line in lines)
    shown = make_url(env["DATABASE_URL"]).render_as_string(hide_password=True)
    assert lines[1].startswith(f"ok: database: {shown} reachable")  # all but the password

    # A GitHub registration adds GitHub's API root; App mode asks GET /app with the App's JWT.
    db = Database(env["DATABASE_URL"])
    box = SecretBox(KEY)  # `check` opens one stored secret with the key
    with db.session() as session:
        session.add(
            Repository(
                full_name="o/r",
                clone_url="https://github.com/o/r.git",
                webhook_secret_enc=box.seal("x"),
                notification_token_enc=box.seal("x"),
                firecrest_client_id="c",
                firecrest_client_secret_enc=box.seal("x"),
            )
        )
    db.dispose()
    assert run("check").output.splitlines()[-1].startswith(f"ok: GitHub: {env['GITHUB_API_URL']}/ answers")
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    monkeypatch.setenv("GITHUB_APP_ID", "7")
    monkeypatch.setenv("GITHUB_APP_PRIVATE_KEY", pem)
    monkeypatch.setenv("GITHUB_APP_WEBHOOK_SECRET", "app-hook-secret-0123456789")
    app = run("check")
    assert app.exit_code == 0, app.output
    assert app.output.splitlines()[-1] == f"ok: GitHub App: {env['GITHUB_API_URL']} knows App 7"


def test_every_unreachable_service_is_one_line_and_no_secret_shows(env, monkeypatch):
    run("migrate")
    monkeypatch.setenv("REDIS_URL", "redis://:redis-pa55word-xyz@127.0.0.1:9/0")
    monkeypatch.setenv("GITLAB_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("GITHUB_API_URL", "http://127.0.0.1:9")
    done = run("check")
    assert done.exit_code == 1
    problems = [line for line in done.output.splitlines() if line.startswith("problem:")]
    assert [p.split(":")[1].strip() for p in problems] == ["broker", "managed GitLab", "GitHub"], done.output
    assert "http://127.0.0.1:9 is unreachable (ConnectionError)" in problems[1]
    for secret in ("redis-pa55word-xyz", TOKEN, ADMIN, KEY):
        assert secret not in done.output


def test_a_token_gitlab_refuses_is_a_problem(env, monkeypatch):
    run("migrate")
    monkeypatch.setenv("GITLAB_TOKEN", "glpat-revoked-0123456789")
    done = run("check")
    assert done.exit_code == 1
    assert f"problem: managed GitLab: {env['GITLAB_URL']} refused GITLAB_TOKEN (401)" in done.output
    assert "glpat-revoked-0123456789" not in done.output


def test_no_managed_gitlab_is_a_problem(env, monkeypatch):
    run("migrate")
    monkeypatch.delenv("GITLAB_URL")
    done = run("check")
    assert done.exit_code == 1
    assert "problem: managed GitLab: not configured: set GITLAB_URL" in done.output


def test_wrong_settings_are_one_line_and_exit_2(env, monkeypatch):
    monkeypatch.setenv("DISPATCH_LEASE", "soon")
    for command in ("check", "migrate", "prune", "rotate-key"):
        done = CliRunner().invoke(main, [command])
        assert done.exit_code == 2, (command, done.output)
        assert done.output.strip().splitlines() == [
            "firecrest-ci-middleware: settings: DISPATCH_LEASE: Input should be a valid integer, unable "
            "to parse string as an integer (got 'soon')"
        ]
