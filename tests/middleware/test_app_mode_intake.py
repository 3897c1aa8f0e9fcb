"""App mode end to end through the GitHub stand-in's hookshot and the unmodified PyGithub:
the App's one secret, installations attaching and withdrawing registrations, runs stopped at
once, credentials purged after the retention, renames followed by GitHub's repository id."""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import event, select

from middleware.models import Delivery, Installation, OutboxItem, Pipeline, Repository, Run
from middleware.runs.withdrawal import CANCEL_PIPELINES, PURGE_CREDENTIALS, PURGED, purge_credentials
from middleware.services import EXTENSION, Services
from middleware.sources.github.signature import sign
from sandbox.github.server import GitHubHandle, run_github
from tests.middleware.app_mode_support import APP_SECRET, app_settings, make_app_mode, private_key, serve
from tests.middleware.conftest import admin, load_payload, make_app, repository_body

APP_ID = 4242
FIRECREST_SECRET = "firecrest-secret-value-xyz"
PIPELINE_SECRET = "pipeline-secret-value"


@dataclass
class World:
    gh: GitHubHandle
    app: Flask
    client: FlaskClient
    svc: Services
    repo: dict[str, Any]
    #: The App's installation on octo-org, covering octo-org/hpc-code (registration needs it).
    installation: int

    @property
    def repo_id(self) -> int:
        return int(self.repo["id"])

    def github_id(self, full_name: str = "octo-org/hpc-code") -> int:
        found = self.gh.state.find_repo(full_name)
        assert found is not None
        return int(found["id"])

    def push(self, full_name: str = "octo-org/hpc-code", sha: str | None = None) -> Any:
        """GitHub sends a push of `main` to the App (through the stand-in's hookshot)."""
        payload = push_payload(full_name, self.github_id(full_name), sha or uuid.uuid4().hex + "0" * 8)
        delivery = self.gh.state.deliver("push", payload, app_id=APP_ID)
        assert delivery is not None
        return delivery

    def row(self) -> Repository:
        with self.svc.db.session() as session:
            found = session.get(Repository, self.repo_id)
            assert found is not None
            session.expunge(found)
            return found

    def runs(self) -> list[Run]:
        with self.svc.db.session() as session:
            return list(
                session.scalars(select(Run).where(Run.repository_id == self.repo_id).order_by(Run.id))
            )

    def outbox(self, task: str) -> list[OutboxItem]:
        with self.svc.db.session() as session:
            return list(session.scalars(select(OutboxItem).where(OutboxItem.task == task)))


def push_payload(full_name: str, github_id: int, sha: str) -> dict[str, Any]:
    payload = load_payload("push")
    owner, name = full_name.split("/")
    payload["repository"].update(full_name=full_name, name=name, id=github_id)
    payload["repository"]["owner"]["login"] = owner
    payload.update(ref="refs/heads/main", after=sha, deleted=False)
    payload.pop("installation", None)
    return payload


def purge_now(world: World, row: OutboxItem) -> bool:
    """What the purge task does (tested without a broker; the task itself is a thin wrapper)."""
    settings, payload = world.svc.settings, row.payload
    seal = world.svc.box.seal
    return purge_credentials(
        world.svc.db, None, settings.gitlab_group, seal, payload["repository_id"], payload["disabled_at"]
    )


def register(client: FlaskClient, full_name: str = "octo-org/hpc-code") -> dict[str, Any]:
    body = repository_body(full_name=full_name, clone_url=f"https://github.com/{full_name}.git")
    answer = client.post("/api/repositories", json=body, headers=admin())
    assert answer.status_code == 201, answer.get_data(as_text=True)
    repo: dict[str, Any] = answer.get_json()
    for name in ("cpu", "gpu"):
        made = client.post(
            f"/api/repositories/{repo['id']}/pipelines",
            json={"name": name, "entrypoint": f"ci/{name}.yml", "system": "cluster",
                  "variables": {"TOKEN": PIPELINE_SECRET}},
            headers=admin(),
        )  # fmt: skip
        assert made.status_code == 201, made.get_data(as_text=True)
    return repo


@pytest.fixture
def world(tmp_path: Path, database_url: str) -> Iterator[World]:
    with run_github() as gh:
        gh.state.add_repo("octo-org/hpc-code")
        gh.state.add_repo("octo-org/other")
        settings = app_settings(tmp_path, database_url, gh.url, APP_ID, installation_retention=1)
        app = make_app_mode(settings)
        with serve(app) as url:
            gh.state.register_app(
                "firecrest-ci",
                private_key(),
                app_id=APP_ID,
                owner="octo-org",
                webhook_url=f"{url}/webhooks/github",
                webhook_secret=APP_SECRET,
                events=["push", "pull_request", "issue_comment", "check_run", "check_suite"],
            )
            inst = gh.state.install_app(APP_ID, "octo-org", ["octo-org/hpc-code"])
            client = app.test_client()
            repo = register(client)
            yield World(gh, app, client, app.extensions[EXTENSION], repo, inst.id)
        app.extensions[EXTENSION].db.dispose()


def post(client: FlaskClient, event: str, payload: Any, secret: str) -> Any:
    body = json.dumps(payload).encode()
    headers = {
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": str(uuid.uuid4()),
        "X-Hub-Signature-256": sign(secret, body),
        "Content-Type": "application/json",
    }
    return client.post("/webhooks/github", data=body, headers=headers)


def test_deliveries_are_verified_with_the_apps_secret_only(world):
    payload = push_payload("octo-org/hpc-code", world.github_id(), "a" * 40)
    refused = post(world.client, "push", payload, world.repo["webhook_secret"])
    assert refused.status_code == 401
    assert "App's webhook secret" in refused.get_data(as_text=True)
    assert world.runs() == []
    accepted = post(world.client, "push", payload, APP_SECRET)
    assert accepted.status_code == 202, accepted.get_data(as_text=True)
    assert len(world.runs()) == 2
    assert world.row().source_id == str(world.github_id())  # keyed by GitHub's id from now on


def test_installation_attaches_registrations_and_is_stored_without_a_repository(world):
    with world.svc.db.session() as session:  # registered in token mode, before the App
        session.get(Repository, world.repo_id).source_id = None
        session.get(Repository, world.repo_id).installation_id = None
    world.gh.state.uninstall_app(world.installation)
    inst = world.gh.state.install_app(APP_ID, "octo-org", ["octo-org/hpc-code"])
    sent = world.gh.state.deliveries_for(APP_ID, "installation")[0]
    assert sent.status_code == 200, sent.response_body
    assert "1 registration(s) attached" in sent.response_body
    row = world.row()
    assert (row.installation_id, row.source_id) == (inst.id, str(world.github_id()))
    with world.svc.db.session() as session:
        stored = session.get(Installation, inst.id)
        assert stored is not None and stored.repository_ids == [world.github_id()]
        delivery = session.get(Delivery, sent.guid)
        assert delivery is not None and delivery.repository_id is None and delivery.event == "installation"
    app = world.svc.github_app
    assert app is not None
    assert app.repository_installation("octo-org/hpc-code") == (inst.id, world.github_id())
    assert app.repository_installation("octo-org/other") is None


def test_uninstall_disables_at_once_stops_runs_and_purges_after_the_retention(world, caplog):
    caplog.set_level(logging.DEBUG)
    assert world.push().status_code == 202
    assert {r.state for r in world.runs()} == {"queued"}

    world.gh.state.uninstall_app(world.installation, sender="octo-admin")
    sent = world.gh.state.deliveries_for(APP_ID, "installation")[0]
    assert sent.status_code == 200 and "1 registration(s) disabled, 2 run(s) canceled" in sent.response_body
    row = world.row()
    assert row.disabled_at is not None and "uninstalled from octo-org" in (row.disabled_reason or "")
    runs = world.runs()
    assert {r.state for r in runs} == {"canceled"}
    assert all("uninstalled" in (r.error or "") for r in runs)
    assert all(r.posted_seq == r.status_seq and r.next_check_at is None for r in runs)  # nothing to report
    cancels = world.outbox(CANCEL_PIPELINES)
    assert len(cancels) == 1 and {r["pipeline"] for r in cancels[0].payload["runs"]} == {"cpu", "gpu"}

    later = world.push()  # nothing runs, and GitHub is told why
    assert later.status_code == 202
    assert "credentials disabled: the GitHub App was uninstalled" in later.response_body
    assert len(world.runs()) == 2
    with world.svc.db.session() as session:
        assert session.get(Delivery, later.guid).outcome == "disabled"

    purge = world.outbox(PURGE_CREDENTIALS)
    assert len(purge) == 1
    assert purge[0].due_at.replace(tzinfo=None) > dt.datetime.now(dt.UTC).replace(tzinfo=None)  # not yet
    time.sleep(1.1)  # INSTALLATION_RETENTION=1 in this test
    assert world.svc.dispatch() >= 1  # due now: handed to the workers
    assert purge_now(world, purge[0]) is True
    row = world.row()
    box = world.svc.box
    assert box.open(row.firecrest_client_secret_enc) == "" and box.open(row.notification_token_enc) == ""
    assert (row.disabled_reason or "").startswith(PURGED)
    with world.svc.db.session() as session:
        assert {p.variables_enc for p in session.scalars(select(Pipeline))} == {None}
    assert purge_now(world, purge[0]) is False  # once only

    world.gh.state.install_app(APP_ID, "octo-org", ["octo-org/hpc-code"])  # too late: purged
    assert world.row().disabled_at is not None
    for secret in (FIRECREST_SECRET, PIPELINE_SECRET, APP_SECRET, world.repo["webhook_secret"]):
        assert secret not in caplog.text
        assert secret not in later.response_body and secret not in sent.response_body


def test_suspend_then_unsuspend_re_enables_before_the_purge(world):
    world.gh.state.suspend_installation(world.installation)
    assert "suspended" in (world.row().disabled_reason or "")
    assert "credentials disabled" in world.push().response_body
    world.gh.state.unsuspend_installation(world.installation)
    assert world.row().disabled_at is None
    assert purge_now(world, world.outbox(PURGE_CREDENTIALS)[0]) is False
    assert world.svc.box.open(world.row().firecrest_client_secret_enc) == FIRECREST_SECRET
    assert world.push().status_code == 202


def test_repositories_removed_and_added_again(world):
    inst = world.installation
    world.gh.state.add_installation_repos(inst, ["octo-org/other"])
    other = register(world.client, "octo-org/other")
    world.gh.state.remove_installation_repos(inst, ["octo-org/other"])
    sent = world.gh.state.deliveries_for(APP_ID, "installation_repositories")[0]
    assert "1 registration(s) disabled" in sent.response_body
    with world.svc.db.session() as session:
        assert session.get(Repository, other["id"]).disabled_at is not None
        assert session.get(Installation, inst).repository_ids == [world.github_id()]
    assert world.row().disabled_at is None  # the other one keeps running
    world.gh.state.suspend_installation(inst)
    world.gh.state.unsuspend_installation(inst)  # re-enables what the suspension disabled, only
    assert world.row().disabled_at is None
    with world.svc.db.session() as session:
        assert session.get(Repository, other["id"]).disabled_at is not None
    world.gh.state.add_installation_repos(inst, ["octo-org/other"])
    with world.svc.db.session() as session:
        assert session.get(Repository, other["id"]).disabled_at is None


def test_a_rename_keeps_the_registration(world):
    world.gh.state.rename_repo("octo-org/hpc-code", "octo-org/hpc-code-2")
    sent = world.push("octo-org/hpc-code-2")
    assert sent.status_code == 202 and "queued" in sent.response_body
    row = world.row()
    assert (row.full_name, row.clone_url) == (
        "octo-org/hpc-code-2",
        "https://github.com/octo-org/hpc-code-2.git",
    )
    assert {r.repository_id for r in world.runs()} == {world.repo_id}
    # Another repository takes the old name: it is not the registered one.
    world.gh.state.add_repo("octo-org/hpc-code")
    stranger = world.gh.state.deliver(
        "push",
        push_payload("octo-org/hpc-code", world.github_id("octo-org/hpc-code"), "b" * 40),
        app_id=APP_ID,
    )
    assert stranger is not None and stranger.status_code == 404


def test_a_reused_name_is_not_the_registered_repository(world):
    assert world.push().status_code == 202  # records GitHub's id of the registered repository
    payload = push_payload("octo-org/hpc-code", world.github_id() + 999, "c" * 40)
    answer = post(world.client, "push", payload, APP_SECRET)
    assert answer.status_code == 404
    assert "renamed or transferred" in answer.get_data(as_text=True)


def test_installation_events_need_the_apps_secret_and_a_sound_payload(world):
    payload = load_payload("installation", "deleted.payload.json")
    assert post(world.client, "installation", payload, "not-the-app-secret").status_code == 401
    payload["installation"]["id"] = "twelve"
    answer = post(world.client, "installation", payload, APP_SECRET)
    assert answer.status_code == 400 and "installation.id" in answer.get_data(as_text=True)
    assert world.row().disabled_at is None


def test_token_mode_records_the_repository_id_once(tmp_path, database_url):
    app = make_app(tmp_path, database_url)
    svc: Services = app.extensions[EXTENSION]
    client = app.test_client()
    repo = register(client)
    updates: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith("UPDATE REPOSITORIES"):
            updates.append(statement)

    event.listen(svc.db.engine, "before_cursor_execute", count)
    try:
        for sha in ("d" * 40, "e" * 40):
            answer = post(client, "push", push_payload("octo-org/hpc-code", 77, sha), repo["webhook_secret"])
            assert answer.status_code == 202, answer.get_data(as_text=True)
    finally:
        event.remove(svc.db.engine, "before_cursor_execute", count)
    assert len(updates) == 1  # the second delivery found it known in the cache
    with svc.db.session() as session:
        assert session.get(Repository, repo["id"]).source_id == "77"
    # Token mode keeps per-registration secrets: the App's is not one.
    assert (
        post(client, "push", push_payload("octo-org/hpc-code", 77, "f" * 40), APP_SECRET).status_code == 401
    )
    svc.db.dispose()


def test_two_registrations_claiming_one_github_id_do_not_update_on_every_delivery(tmp_path, database_url):
    app = make_app(tmp_path, database_url)
    svc: Services = app.extensions[EXTENSION]
    client = app.test_client()
    first, second = register(client), register(client, "octo-org/other")
    updates: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith("UPDATE REPOSITORIES"):
            updates.append(statement)

    assert (
        post(
            client, "push", push_payload("octo-org/hpc-code", 77, "d" * 40), first["webhook_secret"]
        ).status_code
        == 202
    )
    event.listen(svc.db.engine, "before_cursor_execute", count)
    try:
        for sha in ("1" * 40, "2" * 40, "3" * 40):  # a payload copied from another repository
            answer = post(client, "push", push_payload("octo-org/other", 77, sha), second["webhook_secret"])
            assert answer.status_code == 202, answer.get_data(as_text=True)
    finally:
        event.remove(svc.db.engine, "before_cursor_execute", count)
    assert len(updates) == 1
    with svc.db.session() as session:
        assert session.get(Repository, second["id"]).source_id is None
    svc.db.dispose()


INSTALLATION = {"id": 1, "account": {"login": "o", "id": 1}}


@pytest.mark.parametrize(
    "payload",
    [
        [],
        {"action": "deleted"},
        {"action": "deleted", "installation": {"id": True, "account": {"login": "o", "id": 1}}},
        {"action": "deleted", "installation": {"id": 1, "account": {"login": 5, "id": 1}}},
        {"action": "created", "installation": INSTALLATION, "repositories": {}},
        {"action": "created", "installation": INSTALLATION, "repositories": [7]},
        {
            "action": "created",
            "installation": INSTALLATION,
            "repositories": [{"id": "7", "full_name": "o/r"}],
        },
    ],
)
def test_hostile_installation_payloads_are_refused_readably(payload):
    from middleware.sources.base import MalformedPayload
    from middleware.sources.github.installations import read_change

    with pytest.raises(MalformedPayload):
        read_change("installation", payload)
