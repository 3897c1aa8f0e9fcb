"""Operations endpoints: liveness, readiness and Prometheus metrics.

gunicorn runs several processes, and a scrape reaches one of them: what operators alert on is
therefore read from the database at scrape time (the same in every process), not counted in
memory. The in-memory counters (deliveries per event, acknowledgement time) add up across
processes only with PROMETHEUS_MULTIPROC_DIR set.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
from collections.abc import Iterator

from flask import Blueprint, Response, current_app, jsonify
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select, text
from sqlalchemy.exc import SQLAlchemyError

from middleware.health import GitLabProbe
from middleware.models import Delivery, Run, utcnow
from middleware.runs.outbox import backlog
from middleware.runs.reporting import FINAL_STATES
from middleware.runs.schedule import aware
from middleware.services import services

bp = Blueprint("ops", __name__)


#: The window of the "recent" figures: deliveries by outcome and time from delivery to final status.
RECENT = dt.timedelta(hours=1)
QUANTILES = (0.5, 0.9, 0.99, 1.0)


class Metrics:
    """Per-app registry, so test apps do not share counters."""

    def __init__(self, gitlab_probe: GitLabProbe | None = None) -> None:
        #: Probes the managed GitLab at scrape time (None: not probed, as in most tests).
        self.gitlab_probe = gitlab_probe
        self.registry = CollectorRegistry()
        self.deliveries = Counter(
            "firecrest_ci_webhook_deliveries",
            "Webhook deliveries by event and outcome.",
            ["event", "outcome"],
            registry=self.registry,
        )
        self.ack_seconds = Histogram(
            "firecrest_ci_webhook_ack_seconds",
            "Time from request to acknowledgement of a webhook delivery.",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=self.registry,
        )
        self.triggers = Counter(
            "firecrest_ci_triggers_queued",
            "Triggers written to the outbox.",
            ["kind"],
            registry=self.registry,
        )


class StateCollector(Collector):
    """Figures read from the database at scrape time, so every process reports the same."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        db = services().db
        with db.session() as session:
            counted = session.execute(select(Run.state, func.count(Run.id)).group_by(Run.state))
            by_state = {str(state): int(count) for state, count in counted}
            unreported = session.scalar(select(func.count(Run.id)).where(Run.unreported.is_(True))) or 0
            unposted = session.scalar(
                select(func.count(Run.id)).where(Run.posted_seq < Run.status_seq, Run.unreported.is_(False))
            )
        runs = GaugeMetricFamily("firecrest_ci_runs", "Runs by state.", labels=["state"])
        for state, count in sorted(by_state.items()):
            runs.add_metric([state], count)
        yield runs
        yield GaugeMetricFamily(
            "firecrest_ci_runs_unreported",
            "Runs whose final status could not be reported within REPORT_WINDOW.",
            value=unreported,
        )
        yield GaugeMetricFamily(
            "firecrest_ci_statuses_unposted",
            "Statuses waiting to be posted to the source.",
            value=unposted or 0,
        )
        waiting, oldest = backlog(db)
        yield GaugeMetricFamily("firecrest_ci_outbox_backlog", "Outbox commands not done yet.", value=waiting)
        age = (utcnow() - oldest).total_seconds() if oldest else 0.0
        yield GaugeMetricFamily(
            "firecrest_ci_outbox_oldest_seconds", "Age of the oldest outbox command not done.", value=age
        )
        yield from self._operator_figures()

    def _operator_figures(self) -> Iterator[GaugeMetricFamily]:
        """What an operator alerts on: work that does not move, and how long runs take."""
        now = utcnow()
        since = now - RECENT
        with services().db.session() as session:
            open_runs = Run.state.not_in(FINAL_STATES)
            oldest = aware(session.scalar(select(func.min(Run.created_at)).where(open_runs)))
            retrying = session.scalar(select(func.count(Run.id)).where(open_runs, Run.attempts > 0)) or 0
            outcomes = dict(
                session.execute(
                    select(Delivery.outcome, func.count(Delivery.id))
                    .where(Delivery.received_at >= since)
                    .group_by(Delivery.outcome)
                ).all()
            )
            ended = session.execute(
                select(Run.created_at, Run.finished_at).where(
                    Run.finished_at.is_not(None), Run.finished_at >= since
                )
            ).all()
        yield GaugeMetricFamily(
            "firecrest_ci_runs_oldest_open_seconds",
            "Age of the oldest run not in a final state (0 when there is none).",
            value=(now - oldest).total_seconds() if oldest else 0.0,
        )
        yield GaugeMetricFamily(
            "firecrest_ci_runs_retrying",
            "Runs not in a final state whose last step failed (GitLab, the source or the mirror away).",
            value=retrying,
        )
        recent = GaugeMetricFamily(
            "firecrest_ci_deliveries_recent",
            "Stored webhook deliveries of the last hour, by outcome.",
            labels=["outcome"],
        )
        for outcome, count in sorted(outcomes.items()):
            recent.add_metric([str(outcome)], int(count))
        yield recent
        durations = sorted(
            max(0.0, ((aware(finished) or now) - (aware(created) or now)).total_seconds())
            for created, finished in ended
        )
        yield GaugeMetricFamily(
            "firecrest_ci_runs_finished_recent", "Runs that ended in the last hour.", value=len(durations)
        )
        quantiles = GaugeMetricFamily(
            "firecrest_ci_run_seconds",
            "Time from the accepted trigger (the delivery) to the final status, over the runs that "
            "ended in the last hour, by quantile (1 is the longest).",
            labels=["quantile"],
        )
        for q in QUANTILES if durations else ():
            quantiles.add_metric([str(q)], durations[min(len(durations) - 1, int(q * len(durations)))])
        yield quantiles


class GitLabCollector(Collector):
    """Whether the managed GitLab answers: a transient fault shows here, never in /readyz."""

    def __init__(self, probe: GitLabProbe) -> None:
        self._probe = probe

    def collect(self) -> Iterator[GaugeMetricFamily]:
        yield GaugeMetricFamily(
            "firecrest_ci_gitlab_configured", "1 when GITLAB_URL is set.", value=int(self._probe.configured)
        )
        up = self._probe.configured and self._probe.problem() is None
        yield GaugeMetricFamily(
            "firecrest_ci_gitlab_up",
            "1 when the managed GitLab answered and took the token at the last probe (30 s at most).",
            value=int(up),
        )


def metrics() -> Metrics:
    found: Metrics = current_app.extensions["firecrest_ci_metrics"]
    return found


@bp.get("/healthz")
def healthz() -> Response:
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz() -> tuple[Response, int]:
    svc = services()
    checks: dict[str, str] = {}
    try:
        with svc.db.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as error:  # noqa: BLE001 - any failure means not ready
        checks["database"] = f"unavailable: {type(error).__name__}"
    try:
        with svc.celery.connection_for_write() as connection:
            connection.ensure_connection(max_retries=1, timeout=2)
        checks["broker"] = "ok"
    except Exception as error:  # noqa: BLE001
        checks["broker"] = f"unavailable: {type(error).__name__}"
    if not svc.settings.gitlab_url and not svc.settings.demo_mode:
        # A configuration error, unlike a GitLab that is away: work accepted now could never run.
        checks["managed_gitlab"] = "not configured: set GITLAB_URL"
    ready = all(v == "ok" for v in checks.values())
    return jsonify({"status": "ready" if ready else "not ready", "checks": checks}), 200 if ready else 503


@bp.get("/metrics")
def prometheus() -> Response:
    registry = metrics().registry
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    state = CollectorRegistry()
    state.register(StateCollector())
    body = generate_latest(registry)
    probe = metrics().gitlab_probe
    if probe is not None:
        gitlab = CollectorRegistry()
        gitlab.register(GitLabCollector(probe))
        body += generate_latest(gitlab)
    with contextlib.suppress(SQLAlchemyError):  # the counters still answer while the database is away
        body += generate_latest(state)
    return Response(body, mimetype=CONTENT_TYPE_LATEST)
