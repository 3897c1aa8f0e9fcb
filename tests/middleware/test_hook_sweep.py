"""The redelivery sweep: GitHub's App delivery log read through PyGithub (JWT, cursor pages),
5xx and unanswered deliveries redelivered once per failure and at most MAX_REDELIVERIES
times, 2xx and 4xx ones left alone; and the periodic claim that runs it once across workers."""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from middleware.db import Database
from middleware.migrate import upgrade
from middleware.models import HookRedelivery
from middleware.runs import periodic
from middleware.runs.dispatcher import Dispatcher
from middleware.sources.github import hook_sweep
from middleware.sources.github.app_auth import GitHubApp
from middleware.sources.github.hook_sweep import MAX_REDELIVERIES, Attempt, sweep, to_redeliver
from sandbox.firecrest.server import QuietHandler
from sandbox.github.server import GitHubHandle, run_github
from tests.middleware.app_mode_support import APP_SECRET, app_settings, private_key

APP_ID = 777
T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def attempt(id: int, guid: str, code: int, redelivery: bool = False) -> Attempt:
    return Attempt(id=id, guid=guid, status_code=code, redelivery=redelivery, delivered_at=T0)


# -- the decision, pure ------------------------------------------------------------------------


def test_only_server_errors_and_no_answers_are_chosen():
    attempts = [
        attempt(4, "ok", 200),
        attempt(3, "refused", 401),
        attempt(2, "broken", 503),
        attempt(1, "lost", 0),
    ]
    chosen, given_up = to_redeliver(attempts, {})
    assert [a.guid for a in chosen] == ["broken", "lost"] and given_up == []


def test_a_guid_that_succeeded_once_is_left_alone():
    chosen, _ = to_redeliver([attempt(2, "g", 502, redelivery=True), attempt(1, "g", 200)], {})
    assert chosen == []


def test_the_latest_attempt_decides_and_is_asked_once():
    attempts = [attempt(5, "g", 500, redelivery=True), attempt(1, "g", 500)]
    chosen, _ = to_redeliver(attempts, {})
    assert [a.id for a in chosen] == [5]
    assert to_redeliver(attempts, {"g": 5}) == ([], [])  # already asked for this failure
    assert [a.id for a in to_redeliver(attempts, {"g": 1})[0]] == [5]  # a new failure since


def test_a_guid_is_given_up_after_the_bound():
    attempts = [attempt(10 - i, "g", 503, redelivery=True) for i in range(MAX_REDELIVERIES)]
    attempts.append(attempt(1, "g", 503))
    assert to_redeliver(attempts, {}) == ([], ["g"])


# -- against the GitHub stand-in ---------------------------------------------------------------


@dataclass
class Receiver:
    """The App's webhook URL: answers each delivery's `answer` field (0: never answers in time)."""

    url: str = ""
    #: guid -> status that overrides the payload's (the service is back).
    fixed: dict[str, int] = field(default_factory=dict)
    seen: list[str] = field(default_factory=list)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver()

    @Request.application
    def app(request: Request) -> Response:
        guid = request.headers.get("X-GitHub-Delivery", "")
        found.seen.append(guid)
        status = found.fixed.get(guid, int(json.loads(request.get_data())["answer"]))
        if status == 0:
            time.sleep(1.0)
            status = 200
        return Response("answer", status=status)

    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=QuietHandler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    found.url = f"http://127.0.0.1:{server.server_port}/hook"
    yield found
    server.shutdown()
    thread.join(timeout=5)
    server.server_close()


@pytest.fixture
def db(tmp_path: Path, database_url: str) -> Iterator[Database]:
    upgrade(database_url)
    found = Database(database_url)
    yield found
    found.dispose()


@pytest.fixture
def world(tmp_path: Path, receiver: Receiver, database_url: str) -> Iterator[tuple[GitHubHandle, GitHubApp]]:
    with run_github() as gh:
        gh.state.hook_timeout = 0.5
        gh.state.register_app(
            "firecrest-ci", private_key(), app_id=APP_ID, webhook_url=receiver.url, webhook_secret=APP_SECRET,
            events=["push"],
        )  # fmt: skip
        yield gh, GitHubApp(app_settings(tmp_path, database_url, gh.url, APP_ID))


def send(gh: GitHubHandle, answer: int) -> str:
    delivery = gh.state.deliver("push", {"answer": answer, "ref": "refs/heads/main"}, app_id=APP_ID)
    assert delivery is not None
    return delivery.guid


def attempts_of(gh: GitHubHandle, guid: str) -> list[Any]:
    return [d for d in gh.state.deliveries_for(APP_ID) if d.guid == guid]


def test_sweep_redelivers_failures_once_each_and_leaves_the_rest(world, receiver, db, monkeypatch, caplog):
    gh, app = world
    monkeypatch.setattr(hook_sweep, "PER_PAGE", 2)  # several of GitHub's cursor pages
    caplog.set_level(logging.DEBUG)
    ok, refused, broken, lost = send(gh, 200), send(gh, 401), send(gh, 503), send(gh, 0)
    assert [attempts_of(gh, g)[0].status_code for g in (ok, refused, broken, lost)] == [200, 401, 503, 0]
    receiver.fixed[broken] = 202  # the service is back for this one

    report = sweep(app, db, 3600)
    assert sorted(report.redelivered) == sorted([broken, lost])
    assert len(attempts_of(gh, ok)) == len(attempts_of(gh, refused)) == 1
    assert [a.status_code for a in attempts_of(gh, broken)] == [202, 503]
    assert attempts_of(gh, broken)[0].redelivery
    with db.session() as session:
        asked = {r.guid: r.delivery_id for r in session.scalars(select(HookRedelivery))}
    assert set(asked) == {broken, lost}

    again = sweep(app, db, 3600)  # `lost` failed again (a new failure): asked again; `broken` is done
    assert again.redelivered == [lost]
    assert "hook deliveries swept" in caplog.text
    assert "eyJ" not in caplog.text  # no App JWT in the logs
    assert "PRIVATE KEY" not in caplog.text


def test_sweep_gives_up_after_the_bound(world, db):
    gh, app = world
    lost = send(gh, 500)
    for _ in range(MAX_REDELIVERIES):
        assert sweep(app, db, 3600).redelivered == [lost]
    final = sweep(app, db, 3600)
    assert final.redelivered == [] and final.given_up == [lost]
    assert len(attempts_of(gh, lost)) == MAX_REDELIVERIES + 1


def test_sweep_stops_at_its_window(world, db):
    gh, app = world
    old = send(gh, 503)
    attempts_of(gh, old)[0].delivered_at = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)).strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )
    assert sweep(app, db, 3600).redelivered == []
    assert sweep(app, db, 3 * 3600).redelivered == [old]


# -- once across workers ---------------------------------------------------------------------


def test_the_claim_goes_to_one_caller_per_interval(db):
    now = dt.datetime.now(dt.UTC)
    assert periodic.claim(db, "job", 60, now=now) is True
    assert periodic.claim(db, "job", 60, now=now) is False
    assert periodic.claim(db, "job", 60, now=now + dt.timedelta(seconds=30)) is False
    assert periodic.claim(db, "job", 60, now=now + dt.timedelta(seconds=61)) is True
    assert periodic.claim(db, "other", 60, now=now) is True


class Broker:
    def __init__(self) -> None:
        self.sent: list[str] = []

    def send_task(self, name: str, **_: Any) -> None:
        self.sent.append(name)


def test_two_workers_dispatchers_start_the_sweep_once(db, database_url):
    broker = Broker()
    workers = [
        Dispatcher(db, broker, 60, "memory://", periodic={"firecrest_ci.sweep_hook_deliveries": 300})
        for _ in range(2)
    ]
    threads = [threading.Thread(target=w.start_periodic) for w in workers for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert broker.sent == ["firecrest_ci.sweep_hook_deliveries"]
    assert db.engine.url.drivername.startswith(database_url.split(":")[0].split("+")[0])
