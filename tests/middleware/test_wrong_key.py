"""A wrong or lost MIDDLEWARE_SECRET_KEY(S): stored credentials no key of the ring opens answer
503 with what to do on every route (never a 500 with a traceback), are logged at ERROR without a
secret, and fail a run step like any other failure (recorded, retried, ended by START_WINDOW).
A ring put in the one-key variable refuses to start."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select, update

from middleware.crypto import KEY_RING_TEXT, KeyRingMismatch, SecretBox, SecretBoxError
from middleware.models import Run
from middleware.runs.schedule import ADVANCE_RUN
from middleware.services import EXTENSION, Services
from middleware.settings import Settings, SettingsError, refuse_to_start
from tests.middleware.conftest import (
    GOOD_TOKEN,
    SECRET_KEY,
    admin,
    deliver,
    load_payload,
    make_app,
    repository_body,
    retarget,
)

OTHER_KEY = "a-different-passphrase-0123456789-abcdefgh"
SECRETS = (SECRET_KEY, OTHER_KEY, GOOD_TOKEN, "firecrest-secret-value-xyz", "pipeline-secret-xyz")


@pytest.fixture
def apps(tmp_path: Path) -> Iterator[tuple[Flask, Flask, dict[str, Any]]]:
    """The service as registered (right key), the same database with another key, and the
    registration (with its webhook secret)."""
    url = f"sqlite:///{tmp_path / 'mw.db'}"
    right = make_app(tmp_path / "right", url, gitlab_url="http://127.0.0.1:9", gitlab_token="glpat-x" * 3)
    client = right.test_client()
    repo = client.post("/api/repositories", json=repository_body(), headers=admin()).get_json()
    made = client.post(
        f"/api/repositories/{repo['id']}/pipelines",
        json={
            "name": "cpu",
            "entrypoint": "ci/cpu.yml",
            "system": "c",
            "variables": {"TOKEN": "pipeline-secret-xyz"},
        },
        headers=admin(),
    )
    assert made.status_code == 201, made.get_data(as_text=True)
    wrong = make_app(
        tmp_path / "wrong",
        url,
        middleware_secret_key=OTHER_KEY,
        gitlab_url="http://127.0.0.1:9",
        gitlab_token="glpat-x" * 3,
    )
    yield right, wrong, repo
    for application in (right, wrong):
        application.extensions[EXTENSION].db.dispose()


def push(sha: str) -> dict[str, Any]:
    payload = retarget(load_payload("push"))
    payload.update(ref="refs/heads/main", after=sha, deleted=False)
    return payload


def services_of(app: Flask) -> Services:
    found: Services = app.extensions[EXTENSION]
    return found


def test_the_box_says_the_ring_does_not_match_and_stays_a_secret_box_error():
    sealed = SecretBox(SECRET_KEY).seal("value")
    for box in (SecretBox(OTHER_KEY), SecretBox([OTHER_KEY, "b" * 32])):
        with pytest.raises(KeyRingMismatch) as error:
            box.open(sealed)
        assert isinstance(error.value, SecretBoxError) and isinstance(error.value, RuntimeError)
        assert str(error.value) == KEY_RING_TEXT
        with pytest.raises(KeyRingMismatch):
            box.rotate(sealed)


def test_a_webhook_answers_503_with_what_to_do_and_logs_an_error_without_secrets(apps, capsys):
    _right, wrong, repo = apps
    capsys.readouterr()
    answer = deliver(wrong.test_client(), "push", push("a" * 40), repo["webhook_secret"])
    assert answer.status_code == 503
    text = answer.get_data(as_text=True)
    assert text == (
        "stored credentials cannot be decrypted with the configured MIDDLEWARE_SECRET_KEY(S): "
        "restore the key ring; redeliver once fixed\n"
    )
    assert "Traceback" not in text
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")]
    errors = [line for line in lines if line["level"] == "ERROR"]
    assert errors and errors[0]["message"].startswith("stored credentials cannot be decrypted")
    assert errors[0]["repository"] == "octo-org/hpc-code"
    delivery = [line for line in lines if line["message"] == "webhook delivery"]
    assert delivery and (delivery[0]["status"], delivery[0]["outcome"]) == (503, "key-ring-mismatch")
    logged = json.dumps(lines)
    for secret in (*SECRETS, repo["webhook_secret"]):
        assert secret not in logged and secret not in text
    # Nothing was accepted or cached: with the key back, the redelivery is taken.
    with services_of(wrong).db.session() as session:
        assert session.scalars(select(Run)).all() == []
    fixed = deliver(apps[0].test_client(), "push", push("a" * 40), repo["webhook_secret"])
    assert fixed.status_code == 202, fixed.get_data(as_text=True)


def test_every_route_answers_503_json_under_api(apps, capsys):
    _right, wrong, repo = apps
    client: FlaskClient = wrong.test_client()
    answer = client.get(f"/api/repositories/{repo['id']}", headers=admin())
    assert answer.status_code == 503
    assert answer.get_json() == {"error": KEY_RING_TEXT}
    err = capsys.readouterr().err
    assert '"level": "ERROR"' in err and f'"path": "/api/repositories/{repo["id"]}"' in err
    for secret in SECRETS:
        assert secret not in err


def test_a_run_step_records_it_retries_and_ends_error_after_the_start_window(apps):
    right, wrong, repo = apps
    sha = uuid.uuid4().hex + "0" * 8
    assert deliver(right.test_client(), "push", push(sha), repo["webhook_secret"]).status_code == 202
    svc = services_of(wrong)
    with svc.db.session() as session:
        run_id = session.scalars(select(Run.id).where(Run.sha == sha)).one()

    assert svc.celery.tasks[ADVANCE_RUN](run_id) == "queued"
    with svc.db.session() as session:
        run = session.get(Run, run_id)
        assert run is not None
        assert run.attempts == 1 and run.state == "queued"
        assert run.last_error == f"KeyRingMismatch: {KEY_RING_TEXT}"
        assert run.next_check_at is not None  # tried again after a backoff
        for secret in SECRETS:
            assert secret not in run.last_error

    # Past START_WINDOW the run ends `error`, saying why.
    with svc.db.session() as session:
        old = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=svc.settings.start_window + 60)
        session.execute(update(Run).where(Run.id == run_id).values(created_at=old))
    svc.celery.tasks[ADVANCE_RUN](run_id)
    with svc.db.session() as session:
        run = session.get(Run, run_id)
        assert run is not None
        assert run.state == "error" and run.attempts == 2
        assert run.error is not None and "MIDDLEWARE_SECRET_KEY(S)" in run.error


def test_a_ring_in_the_one_key_variable_refuses_to_start(tmp_path, capsys):
    ring = f"{OTHER_KEY},{SECRET_KEY}"
    with pytest.raises(SystemExit) as exit_, refuse_to_start():
        Settings(data_dir=tmp_path, middleware_secret_key=ring, admin_token="t" * 20).resolved()
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("firecrest-ci middleware: cannot start: ")
    assert "MIDDLEWARE_SECRET_KEYS" in err and OTHER_KEY not in err and SECRET_KEY not in err
    with pytest.raises(SettingsError) as error:
        Settings(data_dir=tmp_path, middleware_secret_key=ring, admin_token="t" * 20).resolved()
    line = str(error.value)
    assert "\n" not in line and "MIDDLEWARE_SECRET_KEYS" in line and "comma" in line
    assert OTHER_KEY not in line and SECRET_KEY not in line
    # The ring where it belongs starts.
    settings = Settings(data_dir=tmp_path, middleware_secret_keys=ring, admin_token="t" * 20).resolved()
    assert settings.secret_key_ring() == [OTHER_KEY, SECRET_KEY]
