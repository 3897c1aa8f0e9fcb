"""Operations endpoints: liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import contextlib
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

from middleware.models import Run, utcnow
from middleware.runs.outbox import backlog
from middleware.services import services

bp = Blueprint("ops", __name__)


class Metrics:
    """Per-app registry, so test apps do not share counters."""

    def __init__(self) -> None:
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
    with contextlib.suppress(SQLAlchemyError):  # the counters still answer while the database is away
        body += generate_latest(state)
    return Response(body, mimetype=CONTENT_TYPE_LATEST)
