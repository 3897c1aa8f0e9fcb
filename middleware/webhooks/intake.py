"""`POST /webhooks/github`: verify, decide, store, acknowledge.

Order of checks: size limit, parse, look up the repository named in the
payload, verify `X-Hub-Signature-256` with that repository's secret. Nothing
else is read or stored before the signature holds. An accepted delivery, its
triggers (as runs, due at once) and its cleanups (outbox rows) are written in
one transaction before the answer: the workers drive them from the database,
so nothing accepted depends on the broker. A redelivered id is answered
`duplicate`.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from typing import Any
from urllib.parse import parse_qs

from flask import Blueprint, Response, request
from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import selectinload

from middleware.domain import CommentEvent, Decision, PingEvent
from middleware.logs import logger
from middleware.models import Delivery, OutboxItem, Repository, utcnow
from middleware.ops import metrics
from middleware.policy import decide
from middleware.registry.cache import Registration
from middleware.registry.config import to_config
from middleware.schedule import insert_runs
from middleware.services import services
from middleware.tasks import RECORD_CLEANUP
from middleware.webhooks.enrich import EnrichmentUnavailable, is_command_candidate, pin_pull_request
from middleware.webhooks.events import MalformedPayload, parse_event, repository_full_name
from middleware.webhooks.signature import verify

bp = Blueprint("webhooks", __name__, url_prefix="/webhooks")


class Answer(Exception):
    def __init__(self, status: int, text: str, outcome: str) -> None:
        super().__init__(text)
        self.status = status
        self.text = text
        self.outcome = outcome


def _payload(body: bytes, content_type: str) -> Any:
    try:
        if content_type.startswith("application/x-www-form-urlencoded"):
            values = parse_qs(body.decode("utf-8"), strict_parsing=False).get("payload")
            if not values:
                raise Answer(400, "form-encoded delivery without a `payload` field", "malformed")
            return json.loads(values[0])
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
        raise Answer(400, f"the body is not valid JSON ({type(error).__name__})", "malformed") from None


def storable(value: Any) -> Any:
    """PostgreSQL text and JSON cannot hold NUL characters; hostile payloads may carry them."""
    if isinstance(value, str):
        return value.replace("\x00", "\\x00")
    if isinstance(value, dict):
        return {storable(k): storable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [storable(v) for v in value]
    return value


def trigger_payload(delivery_id: str | None, trigger: Any) -> dict[str, Any]:
    data = asdict(trigger)
    data["kind"] = trigger.kind.value
    data["delivery_id"] = delivery_id
    return data


def _registration(full_name: str) -> Registration | None:
    """The registration named in the payload, from the cache or the database."""
    svc = services()
    cached, value = svc.registrations.get(full_name)
    if cached:
        return value
    with svc.db.session() as session:
        repo = session.scalar(
            select(Repository)
            .where(Repository.provider == "github", Repository.full_name == full_name)
            .options(selectinload(Repository.pipelines))
        )
        value = None
        if repo is not None:
            value = Registration(
                to_config(repo), svc.box.open(repo.webhook_secret_enc), repo.notification_token_enc
            )
    svc.registrations.put(full_name, value)
    return value


def _handle() -> tuple[str, str, int, str]:
    """Returns (event, repository, status, text); raises Answer for early exits."""
    svc = services()
    event_name = request.headers.get("X-GitHub-Event", "").strip()
    delivery_id = request.headers.get("X-GitHub-Delivery", "").strip()
    if not event_name or not delivery_id or len(delivery_id) > 100:
        raise Answer(400, "X-GitHub-Event and X-GitHub-Delivery headers are required", "malformed")
    body = request.get_data(cache=True)
    payload = _payload(body, request.content_type or "")
    full_name = repository_full_name(payload)
    if full_name is None:
        if event_name == "ping":
            raise Answer(
                202, "ping without a repository (an organisation hook): nothing to verify", "ignored"
            )
        raise Answer(400, "the payload names no repository (repository.full_name)", "malformed")
    registration = _registration(full_name)
    if registration is None:
        raise Answer(404, f"repository {full_name} is not registered with this service", "unregistered")
    if not verify(registration.webhook_secret, body, request.headers.get("X-Hub-Signature-256")):
        raise Answer(
            401,
            "signature mismatch: X-Hub-Signature-256 does not match this repository's secret",
            "bad-signature",
        )
    config = registration.config
    notification_token_enc = registration.notification_token_enc
    try:
        event = parse_event(event_name, payload)
    except MalformedPayload as error:
        raise Answer(400, f"malformed {event_name} payload: {error}", "malformed") from None
    if isinstance(event, PingEvent):
        decision, status, text = Decision(reason="ping"), 200, "pong"
    else:
        prefix = svc.settings.command_prefix
        if isinstance(event, CommentEvent) and is_command_candidate(event, config, prefix):
            try:
                event = pin_pull_request(
                    event, svc.settings.github_api_url, svc.box.open(notification_token_enc)
                )
            except EnrichmentUnavailable as error:
                raise Answer(
                    503,
                    f"could not pin the pull request's head commit: {error}; redeliver later",
                    "github-unavailable",
                ) from None
        decision = decide(event, config, prefix=prefix)
        if decision.empty:
            status, text = 202, f"nothing to run: {decision.reason}"
        else:
            queued = [f"{t.pipeline}@{t.sha[:12]} ({t.reason})" for t in decision.triggers]
            cleaned = [f"cleanup {c.ref}" for c in decision.cleanups]
            status, text = 202, "queued: " + "; ".join(queued + cleaned)
    outcome = "queued" if not decision.empty else ("pong" if status == 200 else "no-trigger")
    try:
        triggers = [storable(trigger_payload(delivery_id, t)) for t in decision.triggers]
        cleanups = [
            {
                "delivery_id": delivery_id,
                "task": RECORD_CLEANUP,
                "payload": storable({**asdict(c), "delivery_id": delivery_id}),
            }
            for c in decision.cleanups
        ]
        # Core inserts in one transaction: the delivery, its runs and its outbox rows commit together.
        with svc.db.engine.begin() as connection:
            now = utcnow()
            connection.execute(
                insert(Delivery).values(
                    id=delivery_id,
                    event=event_name,
                    repository_id=config.id,
                    outcome=outcome,
                    detail=storable(text)[:2000],
                    received_at=now,
                )
            )
            insert_runs(connection, triggers)
            if cleanups:
                connection.execute(
                    insert(OutboxItem),
                    [{**row, "created_at": now, "due_at": now, "attempts": 0} for row in cleanups],
                )
        for trigger in decision.triggers:
            metrics().triggers.labels(trigger.kind.value).inc()
    except IntegrityError:
        # The delivery id is the primary key: a redelivery lands here.
        with svc.db.session() as session:
            if session.get(Delivery, delivery_id) is None:
                svc.registrations.clear()
                raise Answer(404, f"repository {full_name} was just removed", "unregistered") from None
        raise Answer(200, "duplicate delivery: already accepted, nothing enqueued", "duplicate") from None
    except SQLAlchemyError as error:
        raise Answer(
            503,
            f"could not store the delivery ({type(error).__name__}); GitHub may redeliver it",
            "store-failed",
        ) from None
    return event_name, full_name, status, text


@bp.post("/github")
def github_webhook() -> Response:
    started = time.perf_counter()
    event_name = request.headers.get("X-GitHub-Event", "unknown")[:50]
    repository = None
    try:
        event_name, repository, status, text = _handle()
        outcome = "queued" if text.startswith("queued") else ("pong" if text == "pong" else "no-trigger")
    except Answer as answer:
        status, text, outcome = answer.status, answer.text, answer.outcome
    elapsed = time.perf_counter() - started
    metrics().deliveries.labels(event_name, outcome).inc()
    metrics().ack_seconds.observe(elapsed)
    logger().info(
        "webhook delivery",
        extra={
            "delivery": request.headers.get("X-GitHub-Delivery", "")[:100],
            "event": event_name,
            "repository": repository,
            "outcome": outcome,
            "status": status,
            "ms": round(elapsed * 1000, 2),
        },
    )
    return Response(text + "\n", status=status, mimetype="text/plain")
