"""Pinning a PR head for a `run` comment, against the GitHub stand-in: found, gone, slow, down."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select

from middleware.app import create_app
from middleware.domain import CommentEvent
from middleware.models import Delivery, Repository, Run
from middleware.services import EXTENSION, Services
from middleware.sources.github.pinning import (
    PIN_TIMEOUT,
    EnrichmentUnavailable,
    PullRequestNotFound,
    pin_pull_request,
)
from sandbox.github.server import GitHubHandle, run_github
from tests.middleware.conftest import (
    GOOD_TOKEN,
    admin,
    deliver,
    fake_token_check,
    load_payload,
    make_settings,
    repository_body,
    retarget,
)

HEAD = "c0ffee" + "1" * 34
ALICE = 4242
#: Two tries of PIN_TIMEOUT each, and some slack: what one delivery may hold a web worker.
BOUND = 2 * PIN_TIMEOUT + 1.5


@pytest.fixture
def github() -> Iterator[GitHubHandle]:
    with run_github() as handle:
        handle.state.add_repo("octo-org/hpc-code")
        handle.state.add_pull("octo-org/hpc-code", 2, head_sha=HEAD, base_ref="main", author="mallory")
        yield handle


def comment(number: int = 2, repository: str = "octo-org/hpc-code") -> CommentEvent:
    return CommentEvent(repository, "created", number, True, "alice", "firecrest-ci run", author_id=ALICE)


def requests_to(github: GitHubHandle, path: str) -> int:
    return sum(1 for r in github.state.requests if r["path"] == path)


def test_the_head_is_pinned_with_one_request(github):
    pinned = pin_pull_request(comment(), github.url, GOOD_TOKEN)
    assert (pinned.head_sha, pinned.base_ref) == (HEAD, "main")
    assert [r["path"] for r in github.state.requests] == ["/repos/octo-org/hpc-code/pulls/2"]


@pytest.mark.parametrize(("number", "repository"), [(99, "octo-org/hpc-code"), (2, "octo-org/gone")])
def test_a_missing_pull_request_or_repository_is_final(github, number, repository):
    with pytest.raises(PullRequestNotFound, match=f"pull request #{number} not found in {repository}"):
        pin_pull_request(comment(number, repository), github.url, GOOD_TOKEN)
    assert len(github.state.requests) == 1  # a 404 is not retried


def test_github_down_is_retried_once_then_redelivered_later(github):
    github.state.down_until = time.time() + 60
    started = time.monotonic()
    with pytest.raises(EnrichmentUnavailable, match="503"):
        pin_pull_request(comment(), github.url, GOOD_TOKEN)
    assert time.monotonic() - started < 2
    assert requests_to(github, "/repos/octo-org/hpc-code/pulls/2") == 2  # one try and one retry


# -- through the intake: the answer GitHub gets ---------------------------------------------------


@pytest.fixture
def app(tmp_path: Path, github: GitHubHandle) -> Iterator[Flask]:
    application = create_app(
        make_settings(tmp_path, github_api_url=github.url), check_github_token=fake_token_check
    )
    yield application
    application.extensions[EXTENSION].db.dispose()


@pytest.fixture
def repo(app: Flask) -> dict[str, Any]:
    """Registered with one pipeline; user ALICE trusted (written as the registration stores ids)."""
    client = app.test_client()
    made = client.post("/api/repositories", json=repository_body(trusted_users=[]), headers=admin())
    assert made.status_code == 201, made.get_data(as_text=True)
    body: dict[str, Any] = made.get_json()
    pipeline = {"name": "cpu", "entrypoint": "ci/cpu.yml", "system": "cluster"}
    assert (
        client.post(f"/api/repositories/{body['id']}/pipelines", json=pipeline, headers=admin()).status_code
        == 201
    )
    svc: Services = app.extensions[EXTENSION]
    with svc.db.session() as session:
        session.get_one(Repository, body["id"]).trusted_users = [{"id": ALICE, "login": "alice"}]
    svc.registrations.clear()
    return body


def comment_payload(number: int) -> dict[str, Any]:
    payload = retarget(load_payload("issue_comment", "created.payload.json"))
    payload["issue"]["number"] = number
    payload["issue"]["pull_request"] = {
        "url": f"https://api.github.com/repos/octo-org/hpc-code/pulls/{number}"
    }
    payload["comment"]["user"].update(login="alice", id=ALICE)
    payload["comment"]["body"] = "firecrest-ci run cpu"
    return payload


def stored(app: Flask) -> list[tuple[str, str]]:
    with app.extensions[EXTENSION].db.session() as session:
        return [(d.outcome, d.detail) for d in session.scalars(select(Delivery))]


def test_a_comment_on_a_vanished_pull_request_is_answered_not_redelivered(app, repo, github):
    answer = deliver(app.test_client(), "issue_comment", comment_payload(99), repo["webhook_secret"])
    text = answer.get_data(as_text=True)
    assert answer.status_code == 202, text
    assert text.startswith("nothing to run: pull request #99 not found in octo-org/hpc-code")
    assert stored(app) == [("no-trigger", text.strip())]  # a redelivery is a duplicate, not a retry
    with app.extensions[EXTENSION].db.session() as session:
        assert session.scalars(select(Run)).all() == []


def test_a_slow_github_costs_the_web_worker_seconds_and_asks_for_redelivery(app, repo, github):
    github.state.delay = 30
    started = time.monotonic()
    answer = deliver(app.test_client(), "issue_comment", comment_payload(2), repo["webhook_secret"])
    assert PIN_TIMEOUT <= time.monotonic() - started < BOUND
    assert requests_to(github, "/repos/octo-org/hpc-code/pulls/2") == 2  # one try and one retry
    assert answer.status_code == 503
    assert "redeliver later" in answer.get_data(as_text=True)
    assert stored(app) == []  # not stored, so GitHub's redelivery is handled afresh
