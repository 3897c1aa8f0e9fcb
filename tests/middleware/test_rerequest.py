"""GitHub's "Re-run" (`check_run`/`check_suite` `rerequested`) through the intake: the next
attempt of the named runs, stored with the delivery, for trusted senders of this App only;
a redelivery makes no second attempt. On SQLite and PostgreSQL (one-statement store)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import select, update

from middleware.domain import PipelineConfig, RepositoryConfig, RerunEvent, RunRef
from middleware.models import Run
from middleware.policy import decide
from tests.middleware.conftest import USER_IDS, deliver, load_payload, retarget

APP_ID = 4242
SHA = "a" * 40


@pytest.fixture
def app_svc(svc):
    """The intake as in App mode for re-runs: this service's App is 4242."""
    svc.settings = svc.settings.model_copy(update={"github_app_id": str(APP_ID)})
    return svc


def runs(svc) -> list[Run]:
    with svc.db.session() as session:
        return list(session.scalars(select(Run).order_by(Run.id)))


def push(client, registered) -> list[Run]:
    payload = retarget(load_payload("push"))
    payload.update(ref="refs/heads/main", after=SHA, deleted=False)
    assert deliver(client, "push", payload, registered["webhook_secret"]).status_code == 202


def finish_all(svc, state: str = "failed") -> None:
    with svc.db.session() as session:
        session.execute(update(Run).values(state=state))


def check_run_payload(run_id: int | str, sender: str = "alice", app_id: int = APP_ID) -> dict[str, Any]:
    payload = retarget(load_payload("check_run", "rerequested.payload.json"))
    payload["check_run"].update(external_id=str(run_id), head_sha=SHA, name="firecrest-ci/cpu")
    payload["check_run"]["app"]["id"] = app_id
    payload["sender"].update(login=sender, id=USER_IDS[sender])
    return payload


def suite_payload(sender: str = "alice") -> dict[str, Any]:
    payload = retarget(load_payload("check_suite", "rerequested.payload.json"))
    payload["check_suite"].update(head_sha=SHA)
    payload["check_suite"]["app"]["id"] = APP_ID
    payload["sender"].update(login=sender, id=USER_IDS[sender])
    return payload


def test_a_trusted_rerun_of_a_check_run_makes_the_next_attempt_once(client, registered, app_svc):
    push(client, registered)
    finish_all(app_svc)
    cpu = next(r for r in runs(app_svc) if r.pipeline_name == "cpu")
    delivery = str(uuid.uuid4())
    answer = deliver(
        client, "check_run", check_run_payload(cpu.id), registered["webhook_secret"], delivery=delivery
    )
    assert answer.status_code == 202, answer.get_data(as_text=True)
    assert "queued: cpu@aaaaaaaaaaaa (re-run by alice (attempt 2))" in answer.get_data(as_text=True)
    again = deliver(
        client, "check_run", check_run_payload(cpu.id), registered["webhook_secret"], delivery=delivery
    )
    assert again.status_code == 200 and "duplicate" in again.get_data(as_text=True)
    made = [(r.pipeline_name, r.attempt, r.requested_by, r.state, r.ref) for r in runs(app_svc)]
    assert sorted(made) == [
        ("cpu", 1, None, "failed", "main"),
        ("cpu", 2, "alice", "queued", "main"),
        ("gpu", 1, None, "failed", "main"),
    ]
    # A re-run of the first attempt, once the second ended, makes a third (not a second again).
    finish_all(app_svc)
    third = deliver(client, "check_run", check_run_payload(cpu.id), registered["webhook_secret"])
    assert "attempt 3" in third.get_data(as_text=True)


def test_an_untrusted_sender_runs_nothing_and_is_told_why(client, registered, app_svc):
    push(client, registered)
    finish_all(app_svc)
    cpu = runs(app_svc)[0]
    answer = deliver(
        client, "check_run", check_run_payload(cpu.id, sender="mallory"), registered["webhook_secret"]
    )
    text = answer.get_data(as_text=True)
    assert answer.status_code == 202 and "mallory, who is not trusted for cpu" in text
    assert len(runs(app_svc)) == 2


@pytest.mark.parametrize(
    ("run_id", "app_id", "why"),
    [
        ("999999", APP_ID, "no run of aaaaaaaaaaaa"),
        ("", APP_ID, "no run of"),
        ("not-a-number", APP_ID, "no run of"),
        (None, 1, "did not make"),  # another App's check run
    ],
)
def test_check_runs_that_are_not_ours_or_name_no_run_run_nothing(
    client, registered, app_svc, run_id, app_id, why
):
    push(client, registered)
    finish_all(app_svc)
    named = runs(app_svc)[0].id if run_id is None else run_id
    answer = deliver(
        client, "check_run", check_run_payload(named, app_id=app_id), registered["webhook_secret"]
    )
    assert answer.status_code == 202 and why in answer.get_data(as_text=True)
    assert len(runs(app_svc)) == 2


def test_a_run_of_another_repository_is_not_rerun(client, registered, app_svc, svc):
    push(client, registered)
    finish_all(app_svc)
    payload = check_run_payload(runs(app_svc)[0].id)
    payload["check_run"]["head_sha"] = "b" * 40  # the run exists, but not at this commit
    answer = deliver(client, "check_run", payload, registered["webhook_secret"])
    assert "no run of bbbbbbbbbbbb" in answer.get_data(as_text=True)


def test_a_check_suite_rerun_makes_the_next_attempt_of_each_finished_run(client, registered, app_svc):
    push(client, registered)
    finish_all(app_svc)
    answer = deliver(client, "check_suite", suite_payload(), registered["webhook_secret"])
    assert answer.status_code == 202, answer.get_data(as_text=True)
    assert sorted((r.pipeline_name, r.attempt) for r in runs(app_svc)) == [
        ("cpu", 1), ("cpu", 2), ("gpu", 1), ("gpu", 2),
    ]  # fmt: skip
    busy = deliver(client, "check_suite", suite_payload(), registered["webhook_secret"])
    assert "still running" in busy.get_data(as_text=True)  # attempt 2 has not ended
    assert len(runs(app_svc)) == 4


def test_in_token_mode_no_check_run_is_ours(client, registered, svc):
    push(client, registered)
    finish_all(svc)
    answer = deliver(client, "check_run", check_run_payload(runs(svc)[0].id), registered["webhook_secret"])
    assert "did not make" in answer.get_data(as_text=True)
    assert len(runs(svc)) == 2


def test_policy_reruns_only_pipelines_that_trust_the_sender():
    gpu = PipelineConfig("gpu", "e", "s", trusted_users=frozenset({8}))
    repo = RepositoryConfig(1, "o/r", frozenset({7}), pipelines=(PipelineConfig("cpu", "e", "s"), gpu))
    event = RerunEvent("o/r", SHA, "alice", 7, APP_ID, None, "check_suite")
    refs = [RunRef(1, name, "main", SHA, "push", 1, True) for name in ("cpu", "gpu", "gone")]
    decision = decide(event, repo, runs=refs, app_id=APP_ID)
    assert [(t.pipeline, t.attempt, t.requested_by) for t in decision.triggers] == [("cpu", 2, "alice")]
    assert decide(event, repo, runs=refs, app_id=None).triggers == ()
    bad_sha = RerunEvent("o/r", "xyz", "alice", 7, APP_ID, None, "check_suite")
    assert "without a head commit" in decide(bad_sha, repo, runs=refs, app_id=APP_ID).reason
