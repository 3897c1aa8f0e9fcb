"""Outbox commands: handed out until their task records them done, postponed on failure."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select, update

from middleware import outbox
from middleware.models import OutboxItem, utcnow
from middleware.schedule import aware
from tests.middleware.test_schedule import Recorder


def item(svc) -> OutboxItem:
    with svc.db.session() as session:
        return session.scalars(select(OutboxItem)).one()


def test_a_command_is_handed_out_until_done_not_until_the_broker_took_it(svc):
    outbox.add(svc.db, "firecrest_ci.sync_projects", {"repository_id": 1})
    broker = Recorder()
    assert outbox.publish_due(svc.db, broker, lease=60) == 1
    assert broker.sent == [("firecrest_ci.sync_projects", [{"repository_id": 1}])]
    assert outbox.publish_due(svc.db, broker, lease=60) == 0  # within the lease
    with svc.db.session() as session:  # the message was lost with the broker: the lease runs out
        session.execute(update(OutboxItem).values(due_at=utcnow() - dt.timedelta(seconds=1)))
    assert outbox.publish_due(svc.db, broker, lease=60) == 1
    with outbox.settling(svc.db, item(svc).id, backoff_max=5, window=3600):
        pass  # the task did its work
    assert item(svc).done_at is not None
    assert outbox.backlog(svc.db) == (0, None)


def test_a_failing_command_is_postponed_with_a_backoff_and_given_up_after_its_window(svc):
    outbox.add(svc.db, "firecrest_ci.record_cleanup", {"repository_id": 1, "ref": "main"})
    item_id = item(svc).id
    with pytest.raises(RuntimeError), outbox.settling(svc.db, item_id, backoff_max=5, window=3600):
        raise RuntimeError("GitLab away")
    postponed = item(svc)
    assert postponed.done_at is None and postponed.attempts == 1 and "GitLab away" in postponed.last_error
    assert aware(postponed.due_at) > utcnow()
    assert outbox.backlog(svc.db)[0] == 1
    with pytest.raises(RuntimeError), outbox.settling(svc.db, item_id, backoff_max=5, window=0):
        raise RuntimeError("still away")
    assert item(svc).done_at is not None  # given up, its last error kept
    assert "still away" in item(svc).last_error
