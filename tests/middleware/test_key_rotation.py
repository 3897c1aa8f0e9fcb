"""`rotate-key`: every stored secret re-encrypted under the first key of MIDDLEWARE_SECRET_KEYS,
while the service keeps reading old and new ciphertext (a ring), idempotent, on PostgreSQL."""

from __future__ import annotations

import json
import os

from click.testing import CliRunner
from cryptography.fernet import Fernet
from sqlalchemy import select, update

from middleware.cli import main, sealed_columns
from middleware.crypto import SecretBox, SecretBoxError
from middleware.models import Pipeline, Repository
from middleware.services import EXTENSION
from middleware.settings import Settings
from tests.middleware.conftest import (
    GOOD_TOKEN,
    admin,
    deliver,
    load_payload,
    make_app,
    postgres_database,
    repository_body,
    retarget,
)

OLD = "the-old-passphrase-of-more-than-32-characters"
NEW = Fernet.generate_key().decode()


def test_every_enc_column_of_the_models_is_rotated():
    found = {f"{table.name}.{column.name}" for table, _key, columns in sealed_columns() for column in columns}
    assert found >= {
        "repositories.webhook_secret_enc",
        "repositories.notification_token_enc",
        "repositories.firecrest_client_secret_enc",
        "pipelines.variables_enc",
        "pipelines.hook_token_enc",
    }


def push(sha: str) -> dict:
    payload = retarget(load_payload("push"))
    payload.update(ref="refs/heads/main", after=sha, deleted=False)
    return payload


def test_rotation_under_a_running_service(tmp_path, monkeypatch):
    for name in list(os.environ):
        if name.lower() in Settings.model_fields or name.upper().endswith("_FILE"):
            monkeypatch.delenv(name)
    with postgres_database() as url:
        before = make_app(tmp_path / "old", url, middleware_secret_key=OLD)
        client = before.test_client()
        repo = client.post("/api/repositories", json=repository_body(), headers=admin()).get_json()
        made = client.post(
            f"/api/repositories/{repo['id']}/pipelines",
            json={
                "name": "cpu",
                "entrypoint": "ci/cpu.yml",
                "system": "c",
                "variables": {"TOKEN": "pipe-xyz"},
            },
            headers=admin(),
        )
        assert made.status_code == 201
        db = before.extensions[EXTENSION].db
        with db.session() as session:
            session.execute(update(Pipeline).values(hook_token_enc=SecretBox(OLD).seal("hook-token-xyz")))

        # New processes get the ring "new,old": they read the old ciphertext and write the new key.
        during = make_app(
            tmp_path / "ring", url, middleware_secret_key="", middleware_secret_keys=f"{NEW},{OLD}"
        )
        ring_client = during.test_client()
        assert deliver(ring_client, "push", push("a" * 40), repo["webhook_secret"]).status_code == 202

        monkeypatch.setenv("DATABASE_URL", url)
        monkeypatch.setenv("MIDDLEWARE_SECRET_KEYS", f"{NEW},{OLD}")
        monkeypatch.setenv("ADMIN_TOKEN", "rotation-admin-token-0123")
        monkeypatch.setenv("DATA_DIR", str(tmp_path / "cli"))
        done = CliRunner().invoke(main, ["rotate-key", "--batch", "1"], catch_exceptions=False)
        assert done.exit_code == 0, done.output
        assert done.output.splitlines()[0] == "ok: 5 secret(s) re-encrypted, 0 already under the newest key"
        again = CliRunner().invoke(main, ["rotate-key"], catch_exceptions=False)
        assert again.output.splitlines()[0] == "ok: 0 secret(s) re-encrypted, 5 already under the newest key"

        # Only the new key now opens what is stored, and every value is what it was.
        new = SecretBox(NEW)
        with db.session() as session:
            stored = session.scalars(select(Repository)).one()
            pipeline = session.scalars(select(Pipeline)).one()
            assert new.open(stored.notification_token_enc) == GOOD_TOKEN
            assert new.open(stored.webhook_secret_enc) == repo["webhook_secret"]
            assert new.open(stored.firecrest_client_secret_enc) == "firecrest-secret-value-xyz"
            assert json.loads(new.open(pipeline.variables_enc)) == {"TOKEN": "pipe-xyz"}
            assert new.open(pipeline.hook_token_enc) == "hook-token-xyz"
            try:
                SecretBox(OLD).open(stored.webhook_secret_enc)
                raise AssertionError("the old key still opens a rotated secret")
            except SecretBoxError:
                pass

        # The processes with the ring go on, and so do those with the new key alone.
        assert deliver(ring_client, "push", push("b" * 40), repo["webhook_secret"]).status_code == 202
        after = make_app(tmp_path / "new", url, middleware_secret_key=NEW, middleware_secret_keys="")
        assert deliver(after.test_client(), "push", push("c" * 40), repo["webhook_secret"]).status_code == 202
        for application in (before, during, after):
            application.extensions[EXTENSION].db.dispose()


def test_a_secret_no_key_opens_is_named_and_left_while_the_rest_rotate(tmp_path, monkeypatch):
    for name in list(os.environ):
        if name.lower() in Settings.model_fields or name.upper().endswith("_FILE"):
            monkeypatch.delenv(name)
    stranger = SecretBox("a-key-nobody-has-any-more-0123456789abc").seal("lost-value")
    with postgres_database() as url:
        app = make_app(tmp_path, url, middleware_secret_key=OLD)
        created = app.test_client().post("/api/repositories", json=repository_body(), headers=admin())
        repo_id = created.get_json()["id"]
        db = app.extensions[EXTENSION].db
        with db.session() as session:
            session.execute(update(Repository).values(firecrest_client_secret_enc=stranger))
        monkeypatch.setenv("DATABASE_URL", url)
        monkeypatch.setenv("MIDDLEWARE_SECRET_KEYS", f"{NEW},{OLD}")
        monkeypatch.setenv("ADMIN_TOKEN", "rotation-admin-token-0123")
        monkeypatch.setenv("DATA_DIR", str(tmp_path / "cli"))
        done = CliRunner().invoke(main, ["rotate-key"])
        assert done.exit_code == 1
        assert (
            f"problem: repositories.firecrest_client_secret_enc of id {repo_id} cannot be decrypted "
            "with any key of the ring"
        ) in done.output
        assert "ok: 2 secret(s) re-encrypted" in done.output
        for secret in (stranger, "lost-value", OLD, NEW):
            assert secret not in done.output
        with db.session() as session:
            assert session.scalars(select(Repository.firecrest_client_secret_enc)).one() == stranger
        db.dispose()
