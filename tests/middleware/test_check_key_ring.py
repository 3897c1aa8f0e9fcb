"""`firecrest-ci-middleware check` opens one stored secret with the configured key ring, and
shows the broker's and the database's URLs with only their passwords masked."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from click.testing import CliRunner

from middleware.cli import _masked_url, main
from middleware.crypto import SecretBox
from middleware.db import Database
from middleware.models import Repository
from middleware.settings import Settings
from tests.conftest import service_url
from tests.middleware.conftest import postgres_database

KEY = "check-key-ring-secret-key-0123456789abcdef"
OTHER = "check-key-ring-another-key-0123456789abcdef"
ADMIN = "check-key-ring-admin-token-0123456789"
REDIS_PASSWORD = "redis-pa55word-check-xyz"
SEALED = ("webhook-secret-check-xyz", "notification-token-check-xyz", "client-secret-check-xyz")


@pytest.fixture
def env(tmp_path, monkeypatch) -> Iterator[dict[str, str]]:
    for name in list(os.environ):
        if name.lower() in Settings.model_fields or name.upper().endswith("_FILE"):
            monkeypatch.delenv(name)
    redis = service_url("TEST_REDIS_URL")
    scheme, rest = redis.split("://", 1)
    with postgres_database() as database_url:
        values = {
            "DATA_DIR": str(tmp_path / "state"),
            "DATABASE_URL": database_url,
            # Redis's `default` user takes any password when none is configured.
            "REDIS_URL": f"{scheme}://default:{REDIS_PASSWORD}@{rest}",
            "MIDDLEWARE_SECRET_KEY": KEY,
            "ADMIN_TOKEN": ADMIN,
            "GITLAB_URL": "",
        }
        for name, value in values.items():
            monkeypatch.setenv(name, value)
        assert run("migrate").exit_code == 0
        yield values


def run(*args: str) -> Any:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def store_a_registration(database_url: str, key: str) -> None:
    box = SecretBox(key)
    db = Database(database_url)
    try:
        with db.session() as session:
            session.add(
                Repository(
                    full_name="o/r",
                    clone_url="https://github.com/o/r.git",
                    webhook_secret_enc=box.seal(SEALED[0]),
                    notification_token_enc=box.seal(SEALED[1]),
                    firecrest_client_id="c",
                    firecrest_client_secret_enc=box.seal(SEALED[2]),
                )
            )
    finally:
        db.dispose()


def lines_about(output: str, what: str) -> list[str]:
    return [line for line in output.splitlines() if line.split(":")[1:2] == [f" {what}"]]


def test_no_stored_secret_no_key_ring_line(env):
    done = run("check")
    assert lines_about(done.output, "key ring") == [], done.output


def test_the_right_key_opens_a_stored_secret(env):
    store_a_registration(env["DATABASE_URL"], KEY)
    done = run("check")
    assert lines_about(done.output, "key ring") == ["ok: key ring: opens the stored credentials"], done.output


@pytest.mark.parametrize("configured", [{"MIDDLEWARE_SECRET_KEY": OTHER}, {"MIDDLEWARE_SECRET_KEYS": OTHER}])
def test_a_wrong_or_lost_key_is_a_problem_line_without_secrets(env, monkeypatch, configured):
    store_a_registration(env["DATABASE_URL"], KEY)
    monkeypatch.delenv("MIDDLEWARE_SECRET_KEY")
    for name, value in configured.items():
        monkeypatch.setenv(name, value)
    done = run("check")
    assert done.exit_code == 1
    (line,) = lines_about(done.output, "key ring")
    assert line.startswith(
        "problem: key ring: stored credentials cannot be decrypted with the configured "
        "MIDDLEWARE_SECRET_KEY(S): restore the key ring (repositories."
    ), line
    assert "rotate-key" in line
    for secret in (KEY, OTHER, ADMIN, REDIS_PASSWORD, *SEALED):
        assert secret not in done.output


def test_the_broker_and_database_urls_show_all_but_their_passwords(env):
    done = run("check")
    (broker,) = lines_about(done.output, "broker")
    host = service_url("TEST_REDIS_URL").split("://", 1)[1]
    assert broker == f"ok: broker: redis://default:***@{host} reachable", done.output
    (database,) = lines_about(done.output, "database")
    assert database.startswith(f"ok: database: {env['DATABASE_URL']} reachable"), done.output
    assert REDIS_PASSWORD not in done.output


def test_a_masked_url_keeps_everything_but_the_password():
    assert _masked_url("redis://:s3cret-pw@cache.example:6379/0") == "redis://:***@cache.example:6379/0"
    assert _masked_url("rediss://app:s3cret-pw@[::1]:6380/2?ssl=1") == "rediss://app:***@[::1]:6380/2"
    assert _masked_url("redis://cache.example:6379/0") == "redis://cache.example:6379/0"
    assert _masked_url("sqla+sqlite:////var/lib/x/broker.db") == "sqla+sqlite:////var/lib/x/broker.db"
    assert _masked_url("redis://host:notaport/0") == "(unparsable URL)"
