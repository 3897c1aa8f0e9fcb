"""POST /webhooks/github through the Flask app: order of checks, answers, dedup, runs and outbox."""

from __future__ import annotations

import copy
import json
import logging

from sqlalchemy import func, select

from middleware import logs
from middleware.models import Delivery, OutboxItem, Run
from middleware.sources.github.signature import sign
from tests.middleware.conftest import admin, deliver, load_payload, repository_body, retarget


def outbox(svc) -> list[OutboxItem]:
    with svc.db.session() as session:
        return list(session.scalars(select(OutboxItem).order_by(OutboxItem.id)))


def runs(svc) -> list[Run]:
    with svc.db.session() as session:
        return list(session.scalars(select(Run).order_by(Run.id)))


def deliveries(svc) -> int:
    with svc.db.session() as session:
        return session.scalar(select(func.count()).select_from(Delivery)) or 0


def push_payload(branch: str = "main") -> dict:
    payload = retarget(load_payload("push"))
    payload["ref"] = f"refs/heads/{branch}"
    payload["deleted"] = False
    payload["after"] = "a" * 40
    return payload


def test_push_to_enabled_branch_queues_every_pipeline(client, registered, svc):
    answer = deliver(client, "push", push_payload(), registered["webhook_secret"])
    assert answer.status_code == 202, answer.get_data(as_text=True)
    text = answer.get_data(as_text=True)
    assert text.startswith("queued: cpu@aaaaaaaaaaaa")
    assert "gpu@" in text
    # One link for the commit (two pipelines): where its runs show in the run viewer.
    page = f"https://ci.example.org/repositories/{registered['id']}/runs?commit={'a' * 40}"
    assert text.rstrip().endswith(f" | runs: {page}")
    recorded = runs(svc)
    assert [r.pipeline_name for r in recorded] == ["cpu", "gpu"]
    assert {r.sha for r in recorded} == {"a" * 40}
    assert {(r.state, r.ticket) for r in recorded} == {("queued", 0)}  # the answer waits for no broker
    assert all(r.next_check_at is not None for r in recorded)  # due at once
    assert svc.dispatch() == 2  # the workers' dispatcher hands them out (in-memory broker here)
    assert {r.ticket for r in runs(svc)} == {1}
    assert svc.dispatch() == 0  # not again until the lease runs out


def test_form_encoded_deliveries_are_accepted(client, registered, svc):
    answer = deliver(client, "push", push_payload(), registered["webhook_secret"], form=True)
    assert answer.status_code == 202
    assert len(runs(svc)) == 2


def test_ping_answers_pong(client, registered):
    payload = retarget(load_payload("ping"))
    answer = deliver(client, "ping", payload, registered["webhook_secret"])
    assert answer.status_code == 200
    assert answer.get_data(as_text=True).strip() == "pong"


def test_organisation_ping_without_repository_gets_202(client, registered):
    payload = load_payload("ping", "with-organization.payload.json")
    payload.pop("repository", None)
    answer = deliver(client, "ping", payload, "irrelevant")
    assert answer.status_code == 202
    assert "organisation hook" in answer.get_data(as_text=True)


def test_bad_missing_and_sha1_signatures_get_401_and_store_nothing(client, registered, svc):
    body = json.dumps(push_payload()).encode()
    sha1_only = {"X-GitHub-Event": "push", "X-GitHub-Delivery": "d-1", "X-Hub-Signature": "sha1=" + "0" * 40}
    assert client.post("/webhooks/github", data=body, headers=sha1_only).status_code == 401
    other = client.post(
        "/api/repositories",
        json=repository_body(full_name="octo-org/other", clone_url="https://github.com/octo-org/other.git"),
        headers=admin(),
    ).get_json()
    for signature in ("", "sha256=" + "0" * 64, sign(other["webhook_secret"], body), "sha256=zz"):
        answer = deliver(client, "push", body, registered["webhook_secret"], signature=signature)
        assert answer.status_code == 401, signature
    assert "signature" in answer.get_data(as_text=True)
    assert runs(svc) == [] and outbox(svc) == [] and deliveries(svc) == 0


def test_unregistered_repository_gets_404(client, registered):
    payload = retarget(push_payload(), "someone/else")
    answer = deliver(client, "push", payload, registered["webhook_secret"])
    assert answer.status_code == 404
    assert "someone/else is not registered" in answer.get_data(as_text=True)


def test_malformed_bodies_get_400(client, registered, svc):
    secret = registered["webhook_secret"]
    for body in (b'{"repository": {"full_name": "octo-org/hpc', b"[1,2,3]", b'"text"', b"\xff\xfe", b""):
        answer = deliver(client, "push", body, secret)
        assert answer.status_code == 400, body
    missing_ref = push_payload()
    del missing_ref["ref"]
    answer = deliver(client, "push", missing_ref, secret)
    assert answer.status_code == 400
    assert "malformed push payload" in answer.get_data(as_text=True)
    assert runs(svc) == []


def test_missing_headers_get_400(client, registered):
    body = json.dumps(push_payload()).encode()
    answer = client.post(
        "/webhooks/github",
        data=body,
        headers={"X-Hub-Signature-256": sign(registered["webhook_secret"], body)},
    )
    assert answer.status_code == 400


def test_bodies_over_five_megabytes_get_413(client, registered):
    body = b'{"pad": "' + b"x" * (5 * 1024 * 1024 + 10) + b'"}'
    answer = deliver(client, "push", body, registered["webhook_secret"])
    assert answer.status_code == 413
    assert "larger than 5 MB" in answer.get_data(as_text=True)


def test_redelivery_is_a_duplicate_and_enqueues_nothing(client, registered, svc):
    payload = push_payload()
    first = deliver(client, "push", payload, registered["webhook_secret"], delivery="delivery-42")
    again = deliver(client, "push", payload, registered["webhook_secret"], delivery="delivery-42")
    assert first.status_code == 202
    assert again.status_code == 200
    assert "duplicate" in again.get_data(as_text=True)
    assert len(runs(svc)) == 2 and deliveries(svc) == 1


def test_event_that_triggers_nothing_gets_202_with_a_reason(client, registered, svc):
    answer = deliver(client, "push", push_payload("feature/x"), registered["webhook_secret"])
    assert answer.status_code == 202
    assert answer.get_data(as_text=True).startswith("nothing to run:")
    assert runs(svc) == []
    assert deliveries(svc) == 1


def test_hostile_branch_names_never_reach_a_trigger_as_options(client, registered, svc):
    for branch in ("--upload-pack=touch pwned", "main\nrm -rf /", "mäin-ünïcode"):
        answer = deliver(client, "push", push_payload(branch), registered["webhook_secret"])
        assert answer.status_code in (202, 400), branch
    for run in runs(svc):
        assert not run.ref.startswith("-")


def test_nul_characters_are_stored_escaped_not_refused(client, registered, svc):
    for ref in ("refs/notes/a\x00b", "refs/heads/ma\x00in"):
        answer = deliver(
            client,
            "push",
            push_payload(ref.removeprefix("refs/heads/")) | {"ref": ref},
            registered["webhook_secret"],
        )
        assert answer.status_code == 202, answer.get_data(as_text=True)
    with svc.db.session() as session:
        details = [d.detail for d in session.scalars(select(Delivery))]
    assert all("\x00" not in d for d in details)


def test_branch_deletion_queues_a_cleanup_not_a_pipeline(client, registered, svc):
    payload = push_payload()
    payload.update(deleted=True, after="0" * 40)
    answer = deliver(client, "push", payload, registered["webhook_secret"])
    assert answer.status_code == 202
    items = outbox(svc)
    assert [i.task for i in items] == ["firecrest_ci.record_cleanup"]
    assert runs(svc) == []


def test_store_failure_answers_5xx_so_github_can_redeliver(client, registered, svc, monkeypatch):
    from sqlalchemy.exc import OperationalError

    from middleware.intake import webhooks as intake

    def failing_store(*_args, **_kwargs):
        raise OperationalError("INSERT", {}, Exception("disk I/O error"))

    monkeypatch.setattr(intake, "store", failing_store)
    answer = deliver(client, "push", push_payload(), registered["webhook_secret"], delivery="lost-1")
    monkeypatch.undo()
    assert answer.status_code == 503
    assert "redeliver" in answer.get_data(as_text=True)
    retry = deliver(client, "push", push_payload(), registered["webhook_secret"], delivery="lost-1")
    assert retry.status_code == 202


def test_broker_outage_loses_nothing(tmp_path):
    from celery import Celery

    from middleware.app import create_app
    from middleware.runs.dispatcher import Dispatcher
    from middleware.runs.outbox import publish_due
    from middleware.runs.schedule import dispatch_due
    from middleware.services import EXTENSION
    from tests.middleware.conftest import (
        admin,
        fake_resolve_users,
        fake_token_check,
        make_settings,
        repository_body,
    )

    app = create_app(
        make_settings(tmp_path, broker_url="redis://127.0.0.1:1/0"),
        check_github_token=fake_token_check,
        resolve_github_users=fake_resolve_users,
    )
    client = app.test_client()
    svc = app.extensions[EXTENSION]
    repo = client.post("/api/repositories", json=repository_body(), headers=admin()).get_json()
    client.post(
        f"/api/repositories/{repo['id']}/pipelines",
        json={"name": "cpu", "entrypoint": "a.yml", "system": "c"},
        headers=admin(),
    )
    answer = deliver(client, "push", push_payload(), repo["webhook_secret"])
    assert answer.status_code == 202  # accepted and stored while the broker is down
    deleted = push_payload("main") | {"deleted": True, "after": "0" * 40}
    assert deliver(client, "push", deleted, repo["webhook_secret"]).status_code == 202
    sent = publish_due(svc.db, svc.celery, 60, "e1") + dispatch_due(svc.db, svc.celery, 60, "e1")
    assert sent == 0  # the broker refuses: nothing went out, and nothing is lost
    (run,) = runs(svc)
    assert run.state == "queued" and run.next_check_at is not None
    (cleanup,) = outbox(svc)
    assert cleanup.done_at is None and "broker" in (cleanup.last_error or "")
    working = Dispatcher(svc.db, Celery(broker="memory://"), lease=60, broker_url="memory://")
    assert working.once() == 2  # both are still due and go out once the broker is back
    assert outbox(svc)[0].done_at is None  # handed out is not done: only the task marks it done


def test_logs_carry_delivery_repository_and_outcome_but_no_secret(client, registered, capfd):
    payload = copy.deepcopy(push_payload())
    deliver(client, "push", payload, "wrong-secret", delivery="log-check-0")
    deliver(client, "push", payload, registered["webhook_secret"], delivery="log-check-1")
    _out, err = capfd.readouterr()
    lines = {line["delivery"]: line for line in map(json.loads, err.splitlines()) if "delivery" in line}
    # Refusals are logged at INFO; accepted deliveries are rows of `deliveries`, logged at DEBUG.
    assert lines["log-check-0"]["repository"] == "octo-org/hpc-code"
    assert lines["log-check-0"]["outcome"] == "bad-signature"
    assert "log-check-1" not in lines
    logs.configure(True, logging.DEBUG)
    try:
        secret = registered["webhook_secret"]
        deliver(client, "push", push_payload("release/2"), secret, delivery="log-check-2")
    finally:
        logs.configure(True, logging.INFO)
    _out, err = capfd.readouterr()
    record = next(json.loads(line) for line in err.splitlines() if "log-check-2" in line)
    assert (record["level"], record["outcome"], record["status"]) == ("DEBUG", "queued", 202)
    assert registered["webhook_secret"] not in err


def test_metrics_count_deliveries_under_known_event_names_only(client, registered):
    deliver(client, "push", push_payload(), registered["webhook_secret"])
    for made_up in ("x-1", "x-2"):
        deliver(client, made_up, push_payload(), registered["webhook_secret"])
    text = client.get("/metrics").get_data(as_text=True)
    assert 'firecrest_ci_webhook_deliveries_total{event="push",outcome="queued"} 1.0' in text
    assert 'firecrest_ci_webhook_deliveries_total{event="other",outcome="no-trigger"} 2.0' in text
    assert "x-1" not in text
    assert "firecrest_ci_webhook_ack_seconds_bucket" in text


def test_refs_git_would_refuse_are_answered_at_intake_not_retried_by_the_mirror(client, registered, svc):
    names = ["release/.x", "a/.lock", "x.lock", "-x", "a..b", "@", "a@{b", "a\x01b", "a//b", "main/", "main."]
    for name in names:
        answer = deliver(client, "push", push_payload(name), registered["webhook_secret"])
        text = answer.get_data(as_text=True)
        assert answer.status_code == 202, (name, text)
        assert text.startswith(f"nothing to run: invalid ref {name!r}: "), (name, text)
    assert runs(svc) == []
    assert deliveries(svc) == len(names)
