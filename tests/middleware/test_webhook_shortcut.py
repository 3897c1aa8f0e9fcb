"""Deliveries are answered before Flask's request machinery (middleware/intake/shortcut.py); every
other request, and every failure the intake does not answer itself, is still Flask's."""

from __future__ import annotations

import logging

import pytest
from flask import Flask, request

from middleware.intake.shortcut import provider_of
from middleware.services import EXTENSION
from tests.middleware.conftest import deliver, load_payload, retarget
from tests.middleware.test_webhook_intake import push_payload, runs


@pytest.fixture
def flask_requests(app: Flask) -> list[str]:
    """The paths of the requests that went through Flask's request context."""
    seen: list[str] = []

    def _count() -> None:
        seen.append(f"{request.method} {request.path}")

    # Added after the app's first request (other fixtures register a repository first).
    app.before_request_funcs.setdefault(None, []).append(_count)
    return seen


def test_deliveries_skip_flask_and_get_the_same_answer(client, registered, svc, flask_requests):
    answer = deliver(client, "push", push_payload(), registered["webhook_secret"])
    assert answer.status_code == 202, answer.get_data(as_text=True)
    assert answer.get_data(as_text=True).startswith("queued: cpu@aaaaaaaaaaaa")
    assert answer.headers["X-Content-Type-Options"] == "nosniff"
    assert answer.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert int(answer.headers["Content-Length"]) == len(answer.get_data())
    assert len(runs(svc)) == 2
    # The per-provider path too, and a refusal (answered by the intake itself) alike.
    payload = retarget(load_payload("ping"))
    assert deliver(client, "ping", payload, "wrong secret").status_code == 401
    other = client.post("/webhooks/source/github", data=b"{}", headers={"X-GitHub-Event": "push"})
    assert other.status_code == 400
    assert flask_requests == []
    # Everything else still goes through Flask.
    assert client.get("/healthz").status_code == 200
    assert flask_requests == ["GET /healthz"]


def test_other_methods_and_paths_are_flasks(client, registered, flask_requests):
    answer = client.get("/webhooks/github")
    assert answer.status_code == 405
    assert answer.headers["Allow"].split(", ").count("POST") == 1
    assert client.post("/webhooks/github/").status_code == 404
    assert client.post("/webhooks/source/github/extra").status_code == 404
    assert client.post("/webhooks/managed-gitlab/pipeline").status_code in (401, 403, 404)
    assert flask_requests == [
        "GET /webhooks/github",
        "POST /webhooks/github/",
        "POST /webhooks/source/github/extra",
        "POST /webhooks/managed-gitlab/pipeline",
    ]


def test_an_unknown_provider_gets_the_same_404(client, flask_requests):
    answer = client.post("/webhooks/source/sourceforge", data=b"{}")
    assert answer.status_code == 404
    assert answer.get_data(as_text=True).startswith("no source provider 'sourceforge' here; one of: ")
    assert answer.headers["X-Content-Type-Options"] == "nosniff"
    assert flask_requests == []


def test_a_body_over_the_limit_gets_flasks_413(client, registered):
    answer = client.post(
        "/webhooks/github",
        data=b"x" * (5 * 1024 * 1024 + 1),
        headers={"X-GitHub-Event": "push", "Content-Type": "application/json"},
    )
    assert answer.status_code == 413
    assert answer.get_data(as_text=True) == "the body is larger than 5 MB\n"
    assert answer.headers["X-Content-Type-Options"] == "nosniff"


def test_a_bug_is_flasks_500_logged_once_and_raised_in_tests(app, client, registered, monkeypatch, caplog):
    def broken(*_args: object) -> None:
        raise RuntimeError("a bug in the intake")

    monkeypatch.setattr(app.extensions[EXTENSION].sources["github"], "read", broken)
    app.testing = False
    with caplog.at_level(logging.ERROR):
        answer = deliver(client, "push", push_payload(), registered["webhook_secret"])
    assert answer.status_code == 500
    assert "internal" in answer.get_data(as_text=True).lower()
    assert answer.headers["X-Content-Type-Options"] == "nosniff"
    logged = [r for r in caplog.records if r.exc_info and "a bug in the intake" in str(r.exc_info[1])]
    assert len(logged) == 1
    assert logged[0].getMessage() == "Exception on /webhooks/github [POST]"
    app.testing = True  # as in Flask's own dispatch: the test sees the error itself
    with pytest.raises(RuntimeError, match="a bug in the intake"):
        deliver(client, "push", push_payload(), registered["webhook_secret"])


@pytest.mark.parametrize(
    ("path", "provider"),
    [
        ("/webhooks/github", "github"),
        ("/webhooks/source/gitlab", "gitlab"),
        ("/webhooks/source/anything", "anything"),
        ("/webhooks/source/", None),
        ("/webhooks/source/gitlab/", None),
        ("/webhooks/github/", None),
        ("/webhooks/managed-gitlab/pipeline", None),
        ("/healthz", None),
    ],
)
def test_provider_of_matches_the_routes(path, provider):
    assert provider_of(path) == provider
