"""Redeliver the App's webhook deliveries that failed on our side (App mode).

GitHub never redelivers on its own: a delivery answered 5xx (the database was away) or not
answered at all would need a person to press "Redeliver". Every `hook_sweep_interval`
seconds one worker (see middleware.runs.periodic) reads the App's delivery log, newest
first, back to `hook_sweep_window`, and asks GitHub once to redeliver each GUID whose
latest attempt failed that way and that never succeeded. A GUID is asked once per failed
attempt (`hook_redeliveries` keeps which one) and at most MAX_REDELIVERIES times in all.
4xx answers are final refusals (bad signature, unregistered repository) and stay as they are.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field

from github import GithubException
from github.HookDelivery import HookDeliverySummary
from github.PaginatedList import PaginatedList
from sqlalchemy import select

from middleware.db import Database
from middleware.logs import logger
from middleware.models import HookRedelivery, utcnow
from middleware.sources.github.app_auth import GitHubApp

#: Redeliveries asked for one GUID, at most (a delivery that keeps failing is left to a person).
MAX_REDELIVERIES = 5
#: Redeliveries asked in one sweep, at most (the rest wait for the next sweep).
MAX_PER_SWEEP = 100
PER_PAGE = 100


@dataclass(frozen=True)
class Attempt:
    """One attempt of a delivery, as GitHub's delivery log lists it."""

    id: int
    guid: str
    status_code: int
    redelivery: bool
    delivered_at: dt.datetime
    event: str = ""

    @property
    def ok(self) -> bool:
        return 200 <= self.status_code < 300

    @property
    def failed_here(self) -> bool:
        """No answer (0), or a server error: worth another try."""
        return self.status_code == 0 or self.status_code >= 500


@dataclass
class SweepReport:
    seen: int = 0
    redelivered: list[str] = field(default_factory=list)
    given_up: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


def to_redeliver(
    attempts: Iterable[Attempt], asked: dict[str, int], *, limit: int = MAX_REDELIVERIES
) -> tuple[list[Attempt], list[str]]:
    """Which failed attempts to redeliver (one per GUID, newest first), and which GUIDs are given
    up; pure. `attempts` are newest first; `asked` maps a GUID to the attempt already redelivered."""
    by_guid: dict[str, list[Attempt]] = {}
    for attempt in attempts:
        by_guid.setdefault(attempt.guid, []).append(attempt)
    chosen: list[Attempt] = []
    given_up: list[str] = []
    for guid, tries in by_guid.items():
        latest = tries[0]
        if any(t.ok for t in tries) or not latest.failed_here or asked.get(guid) == latest.id:
            continue
        if sum(t.redelivery for t in tries) >= limit:
            given_up.append(guid)
            continue
        chosen.append(latest)
    return chosen, given_up


def read_attempts(app: GitHubApp, since: dt.datetime) -> list[Attempt]:
    """The App's delivery attempts back to `since`, newest first (GitHub's cursor pages)."""
    client = app.client()
    found: list[Attempt] = []
    try:
        pages = PaginatedList(
            HookDeliverySummary, client.requester, "/app/hook/deliveries", {"per_page": PER_PAGE}
        )
        for summary in pages:
            delivered = summary.delivered_at
            if delivered is not None and delivered.replace(tzinfo=delivered.tzinfo or dt.UTC) < since:
                break
            if summary.id is None or not summary.guid:
                continue
            found.append(
                Attempt(
                    id=int(summary.id),
                    guid=str(summary.guid),
                    status_code=int(summary.status_code or 0),
                    redelivery=bool(summary.redelivery),
                    delivered_at=delivered or since,
                    event=str(summary.event or ""),
                )
            )
    finally:
        client.close()
    return found


def sweep(app: GitHubApp, db: Database, window: int, *, now: dt.datetime | None = None) -> SweepReport:
    """One sweep: read the log, redeliver what failed here, record what was asked."""
    now = now or utcnow()
    attempts = read_attempts(app, now - dt.timedelta(seconds=window))
    guids = {a.guid for a in attempts}
    with db.session() as session:
        asked = {
            row.guid: row.delivery_id
            for row in session.scalars(select(HookRedelivery).where(HookRedelivery.guid.in_(guids)))
        }
    chosen, given_up = to_redeliver(attempts, asked)
    report = SweepReport(seen=len(attempts), given_up=given_up)
    client = app.client()
    try:
        for attempt in chosen[:MAX_PER_SWEEP]:
            try:
                client.requester.requestJsonAndCheck("POST", f"/app/hook/deliveries/{attempt.id}/attempts")
            except GithubException as error:
                report.failed.append(attempt.guid)
                logger().warning(
                    "hook redelivery refused",
                    extra={"guid": attempt.guid, "delivery": attempt.id, "status": error.status},
                )
                continue
            except OSError as error:
                report.failed.append(attempt.guid)
                logger().warning("hook redelivery failed", extra={"error": type(error).__name__})
                break
            _remember(db, attempt, now)
            report.redelivered.append(attempt.guid)
    finally:
        client.close()
    if report.redelivered or report.given_up or report.failed:
        logger().info(
            "hook deliveries swept",
            extra={
                "seen": report.seen,
                "redelivered": report.redelivered,
                "given_up": report.given_up,
                "failed": report.failed,
            },
        )
    return report


def _remember(db: Database, attempt: Attempt, now: dt.datetime) -> None:
    with db.session() as session:
        row = session.get(HookRedelivery, attempt.guid)
        if row is None:
            session.add(
                HookRedelivery(
                    guid=attempt.guid,
                    delivery_id=attempt.id,
                    status_code=attempt.status_code,
                    requested_at=now,
                )
            )
        else:
            row.delivery_id, row.status_code, row.requested_at = attempt.id, attempt.status_code, now
