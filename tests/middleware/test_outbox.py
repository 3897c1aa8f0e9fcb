"""Outbox commands: handed out until their task records them done, postponed on failure."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from middleware.models import OutboxItem, utcnow
from middleware.runs import outbox
from middleware.runs.handout import SAFETY
from middleware.runs.schedule import aware
from tests.middleware.test_run_schedule import Recorder


def item(svc) -> OutboxItem:
    with svc.db.session() as session:
        return session.scalars(select(OutboxItem)).one()


def expire(svc, seconds: float) -> None:
    with svc.db.session() as session:
        for row in session.scalars(select(OutboxItem)):
            row.due_at = aware(row.due_at) - dt.timedelta(seconds=seconds)


def settling(svc, item_id, **overrides):
    options = {"lease": 60, "backoff_max": 5, "window": 3600, **overrides}
    return outbox.settling(svc.db, item_id, **options)


def test_a_command_is_handed_out_until_done_not_until_the_broker_took_it(svc):
    outbox.add(svc.db, "firecrest_ci.sync_projects", {"repository_id": 1})
    broker = Recorder()
    assert outbox.publish_due(svc.db, broker, lease=60, epoch="e1") == 1
    assert broker.sent == [("firecrest_ci.sync_projects", [{"repository_id": 1}])]
    expire(svc, 60 * 3)
    assert outbox.publish_due(svc.db, broker, lease=60, epoch="e1") == 0  # waiting in the queue
    assert outbox.repeat_lost(svc.db, "e2") == 1  # ... until the broker lost its queue
    assert outbox.publish_due(svc.db, broker, lease=60, epoch="e2") == 1
    with settling(svc, item(svc).id):
        assert item(svc).picked  # taken up: due again one lease later should the task die here
        assert aware(item(svc).due_at) <= utcnow() + dt.timedelta(seconds=61)
    assert item(svc).done_at is not None
    assert outbox.backlog(svc.db) == (0, None)


def test_a_command_never_taken_up_is_handed_out_again_after_the_safety_net(svc):
    outbox.add(svc.db, "firecrest_ci.sync_projects", {"repository_id": 2})
    broker = Recorder()
    outbox.publish_due(svc.db, broker, lease=60, epoch="e1")
    expire(svc, 60 * SAFETY + 1)
    assert outbox.publish_due(svc.db, broker, lease=60, epoch="e1") == 1


def test_a_failing_command_is_postponed_with_a_backoff_and_given_up_after_its_window(svc):
    outbox.add(svc.db, "firecrest_ci.record_cleanup", {"repository_id": 1, "ref": "main"})
    item_id = item(svc).id
    with pytest.raises(RuntimeError), settling(svc, item_id):
        raise RuntimeError("GitLab away")
    postponed = item(svc)
    assert postponed.done_at is None and postponed.attempts == 1 and "GitLab away" in postponed.last_error
    assert aware(postponed.due_at) > utcnow()
    assert outbox.backlog(svc.db)[0] == 1
    with pytest.raises(RuntimeError), settling(svc, item_id, window=0):
        raise RuntimeError("still away")
    assert item(svc).done_at is not None  # given up, its last error kept
    assert "still away" in item(svc).last_error
