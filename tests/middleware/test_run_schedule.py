"""The run schedule: due runs handed out with tickets, stale hand-outs skipped, pokes kept."""

from __future__ import annotations

import datetime as dt

from celery import Celery
from sqlalchemy import select, update

from middleware.models import Run, utcnow
from middleware.runs import steps as runs
from middleware.runs.handout import SAFETY
from middleware.runs.schedule import (
    ADVANCE_RUN,
    aware,
    backoff,
    dispatch_due,
    pick,
    poke,
    record_run,
    repeat_lost,
    settle,
)


class Recorder:
    """A Celery stand-in that records what was sent (or refuses, like a broker that is away)."""

    def __init__(self, refuse_after: int | None = None) -> None:
        self.sent: list[tuple[str, list]] = []
        self.refuse_after = refuse_after
        self._celery = Celery(broker="memory://")

    def producer_or_acquire(self):
        return self._celery.producer_or_acquire()

    def send_task(self, name, args=None, kwargs=None, **_options):
        if self.refuse_after is not None and len(self.sent) >= self.refuse_after:
            raise ConnectionError("broker away")
        self.sent.append((name, list(args or [])))


def trigger(repo_id: int, sha: str, kind: str = "push") -> dict:
    return {"repository_id": repo_id, "pipeline": "cpu", "ref": "main", "sha": sha, "kind": kind}


def run(svc, run_id: int) -> Run:
    with svc.db.session() as session:
        found = session.get(Run, run_id)
        assert found is not None
        return found


def test_a_recorded_run_is_due_at_once_and_recorded_once_per_key(svc, registered):
    first = record_run(svc.db, trigger(registered["id"], "a" * 40))
    assert record_run(svc.db, trigger(registered["id"], "a" * 40)) == first
    assert record_run(svc.db, trigger(registered["id"], "a" * 40, "pull_request")) != first
    assert aware(run(svc, first).next_check_at) <= utcnow()


def expire(svc, seconds: float) -> None:
    """Let time pass for every run's next check."""
    with svc.db.session() as session:
        for run in session.scalars(select(Run).where(Run.next_check_at.is_not(None))):
            run.next_check_at = aware(run.next_check_at) - dt.timedelta(seconds=seconds)


def test_due_runs_are_handed_out_with_a_new_ticket(svc, registered):
    run_id = record_run(svc.db, trigger(registered["id"], "b" * 40))
    broker = Recorder()
    assert dispatch_due(svc.db, broker, lease=60, epoch="e1") == 1
    assert broker.sent == [(ADVANCE_RUN, [run_id, 1])]
    assert dispatch_due(svc.db, broker, lease=60, epoch="e1") == 0


def test_a_backlog_waiting_in_the_queue_is_not_handed_out_again_each_lease(svc, registered):
    """Re-sending what merely waits would flood the queue faster than workers empty it."""
    ids = [record_run(svc.db, trigger(registered["id"], f"{i:040x}")) for i in range(5)]
    broker = Recorder()
    assert dispatch_due(svc.db, broker, lease=60, epoch="e1") == 5
    expire(svc, 60 * 5)  # five leases later, nothing was taken up yet: still waiting, not lost
    assert dispatch_due(svc.db, broker, lease=60, epoch="e1") == 0
    expire(svc, 60 * SAFETY)  # the safety net: never taken up in SAFETY leases
    assert dispatch_due(svc.db, broker, lease=60, epoch="e1") == 5
    assert {args[0] for _, args in broker.sent} == set(ids)


def test_a_hand_out_taken_up_and_not_settled_is_repeated_after_one_lease(svc, registered):
    run_id = record_run(svc.db, trigger(registered["id"], "9" * 40))
    broker = Recorder()
    dispatch_due(svc.db, broker, lease=60, epoch="e1")
    assert pick(svc.db, run_id, 1, lease=60)  # a worker took it up ... and died
    assert not pick(svc.db, run_id, 0, lease=60)  # an older hand-out is stale
    assert dispatch_due(svc.db, broker, lease=60, epoch="e1") == 0
    expire(svc, 61)
    assert dispatch_due(svc.db, broker, lease=60, epoch="e1") == 1
    assert broker.sent[-1] == (ADVANCE_RUN, [run_id, 2])


def test_when_the_broker_lost_its_queue_what_waited_in_it_is_due_at_once(svc, registered):
    waiting = record_run(svc.db, trigger(registered["id"], "7" * 40))
    taken = record_run(svc.db, trigger(registered["id"], "8" * 40))
    dispatch_due(svc.db, Recorder(), lease=60, epoch="before-restart")
    pick(svc.db, taken, 1, lease=60)
    assert repeat_lost(svc.db, "before-restart") == 0  # same epoch: nothing was lost
    assert repeat_lost(svc.db, "after-restart") == 1  # only the one still waiting in the queue
    broker = Recorder()
    assert dispatch_due(svc.db, broker, lease=60, epoch="after-restart") == 1
    assert broker.sent == [(ADVANCE_RUN, [waiting, 2])]


def test_a_broker_refusal_leaves_the_rest_due_at_once(svc, registered):
    ids = [record_run(svc.db, trigger(registered["id"], c * 40)) for c in "cde"]
    broker = Recorder(refuse_after=1)
    assert dispatch_due(svc.db, broker, lease=60, epoch="e1") == 1
    due = [r for r in ids if aware(run(svc, r).next_check_at) <= utcnow()]
    assert due == ids[1:]
    broker.refuse_after = None
    assert dispatch_due(svc.db, broker, lease=60, epoch="e1") == 2


def test_a_stale_ticket_is_skipped_and_a_settle_never_overwrites_a_newer_hand_out(svc, registered):
    run_id = record_run(svc.db, trigger(registered["id"], "f" * 40))
    dispatch_due(svc.db, Recorder(), lease=60, epoch="e1")  # ticket 1
    bench = runs.Workbench.build(
        svc.settings.model_copy(update={"gitlab_url": "http://127.0.0.1:9"}), svc.db, svc.box
    )
    assert runs.advance(bench, run_id, ticket=0) == "stale"
    assert not settle(svc.db, run_id, 0, None)  # an old hand-out settles nothing
    assert run(svc, run_id).next_check_at is not None
    assert settle(svc.db, run_id, 1, None)


def test_a_pipeline_hook_pokes_its_run_due_now_with_a_new_ticket(svc, registered):
    run_id = record_run(svc.db, trigger(registered["id"], "1" * 40))
    with svc.db.session() as session:
        session.execute(
            update(Run).values(
                gitlab_pipeline_id=77, state="running", next_check_at=utcnow() + dt.timedelta(hours=1)
            )
        )
    assert poke(svc.db, 77, repository_id=registered["id"], pipeline="cpu") == run_id
    assert poke(svc.db, 78, repository_id=registered["id"], pipeline="cpu") is None
    assert poke(svc.db, 77, repository_id=registered["id"], pipeline="gpu") is None  # another project
    polled = run(svc, run_id)
    assert polled.ticket == 1 and aware(polled.next_check_at) <= utcnow()


def test_backoff_doubles_with_jitter_up_to_its_cap():
    assert all(0.5 <= backoff(0, 300) <= 1 for _ in range(50))
    assert all(2 <= backoff(2, 300) <= 4 for _ in range(50))
    assert all(backoff(40, 300) <= 300 for _ in range(50))
    assert max(backoff(40, 300) for _ in range(200)) > 200


def test_runs_without_anything_left_to_do_are_never_due(svc, registered):
    run_id = record_run(svc.db, trigger(registered["id"], "2" * 40))
    settle(svc.db, run_id, None, None)
    with svc.db.session() as session:
        assert session.scalars(select(Run.id).where(Run.next_check_at.is_not(None))).all() == []
    assert dispatch_due(svc.db, Recorder(), lease=60, epoch="e1") == 0
