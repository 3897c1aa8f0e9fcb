"""`POST /webhooks/github`: verify, decide, store, acknowledge.

Order of checks: size limit, header shapes, parse, the shape of the repository
name, look up the repository named in the payload, verify
`X-Hub-Signature-256` with that repository's secret. Nothing
else is read or stored before the signature holds. An accepted delivery, its
triggers (as runs, due at once) and its cleanups (outbox rows) are written in
one transaction before the answer: the workers drive them from the database,
so nothing accepted depends on the broker. A redelivered id is answered
`duplicate`.
"""

from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import asdict
from typing import Any
from urllib.parse import parse_qs

from flask import Blueprint, Response, request
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import selectinload

from middleware.cache import Registration
from middleware.domain import CommentEvent, Decision, PingEvent, PullRequestEvent, Trigger
from middleware.errors import storage_unavailable, unavailable_text
from middleware.intake.approvals import judge
from middleware.intake.store import Accepted, store
from middleware.logs import logger
from middleware.models import Delivery, Repository
from middleware.ops import metrics
from middleware.policy import decide
from middleware.refs import is_sha
from middleware.registry.config import to_config
from middleware.registry.schemas import FULL_NAME_PATTERN
from middleware.runs.tasks import NOTIFY_STALE_APPROVAL, RECORD_CLEANUP
from middleware.services import services
from middleware.sources.github.events import MalformedPayload, parse_event, repository_full_name
from middleware.sources.github.pinning import (
    EnrichmentUnavailable,
    PullRequestNotFound,
    is_command_candidate,
    pin_pull_request,
)
from middleware.sources.github.signature import verify

bp = Blueprint("webhooks", __name__, url_prefix="/webhooks")
#: Header values stored with the delivery: printable ASCII that fits deliveries.event (50) and .id (100).
_EVENT_NAME = re.compile(r"[\x21-\x7e]{1,50}")
_DELIVERY_ID = re.compile(r"[\x21-\x7e]{1,100}")
#: Events counted under their own name; any other name a sender makes up counts as "other".
_COUNTED_EVENTS = frozenset({"ping", "push", "pull_request", "issue_comment"})
#: What the registration API accepts as a full name; anything else cannot be registered.
_FULL_NAME = re.compile(FULL_NAME_PATTERN)


class Answer(Exception):
    def __init__(self, status: int, text: str, outcome: str) -> None:
        super().__init__(text)
        self.status = status
        self.text = text
        self.outcome = outcome


def _payload(body: bytes, content_type: str) -> tuple[Any, bool]:
    """The parsed payload, and whether any of its strings may hold a NUL character.

    A JSON text can only carry NUL escaped (`\\u0000`, raw control characters are invalid
    JSON), so a text without that escape needs no cleaning (see `storable`).
    """
    try:
        if content_type.startswith("application/x-www-form-urlencoded"):
            values = parse_qs(body.decode("utf-8"), strict_parsing=False).get("payload")
            if not values:
                raise Answer(400, "form-encoded delivery without a `payload` field", "malformed")
            return json.loads(values[0]), "\\u0000" in values[0]
        return json.loads(body), b"\\u0000" in body
    except (ValueError, RecursionError) as error:  # also too deep, or an integer too long to read
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


def _as_is(value: Any) -> Any:
    return value


def trigger_payload(delivery_id: str | None, trigger: Trigger) -> dict[str, Any]:
    """The run's payload (what `schedule.run_row` reads); shallow, unlike `asdict`."""
    return {
        "repository_id": trigger.repository_id,
        "pipeline": trigger.pipeline,
        "ref": trigger.ref,
        "sha": trigger.sha,
        "kind": trigger.kind.value,
        "reason": trigger.reason,
        "variables": dict(trigger.variables),
        "pr_number": trigger.pr_number,
        "delivery_id": delivery_id,
    }


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


def _handle(seen: dict[str, str]) -> tuple[str, str, int, str]:
    """Returns (event, repository, status, text); raises Answer for early exits.

    `seen` gets the repository's name as soon as it is read, for the log line of a refusal.
    """
    svc = services()
    event_name = request.headers.get("X-GitHub-Event", "").strip()
    delivery_id = request.headers.get("X-GitHub-Delivery", "").strip()
    if not event_name or not delivery_id:
        raise Answer(400, "X-GitHub-Event and X-GitHub-Delivery headers are required", "malformed")
    if not _EVENT_NAME.fullmatch(event_name) or not _DELIVERY_ID.fullmatch(delivery_id):
        raise Answer(
            400,
            "X-GitHub-Event (up to 50) and X-GitHub-Delivery (up to 100) must be printable ASCII",
            "malformed",
        )
    body = request.get_data(cache=True)
    payload, may_hold_nul = _payload(body, request.content_type or "")
    clean = storable if may_hold_nul else _as_is
    full_name = repository_full_name(payload)
    if full_name is None:
        if event_name == "ping" and not (isinstance(payload, dict) and "repository" in payload):
            raise Answer(
                202, "ping without a repository (an organisation hook): nothing to verify", "ignored"
            )
        raise Answer(400, "the payload names no repository (repository.full_name)", "malformed")
    seen["repository"] = full_name[:200]
    if not _FULL_NAME.fullmatch(full_name):  # never looked up: no such name can be registered
        raise Answer(400, "repository.full_name is not an owner/name GitHub could send", "malformed")
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
        gone: Decision | None = None
        if isinstance(event, CommentEvent) and is_command_candidate(event, config, prefix):
            try:
                event = pin_pull_request(
                    event, svc.settings.github_api_url, svc.box.open(notification_token_enc)
                )
                event = judge(svc.db, config.id, event)
            except PullRequestNotFound as error:  # final: stored and answered, never redelivered
                gone = Decision(reason=str(error))
            except EnrichmentUnavailable as error:
                raise Answer(
                    503,
                    f"could not pin the pull request's head commit: {error}; redeliver later",
                    "github-unavailable",
                ) from None
        decision = gone if gone is not None else decide(event, config, prefix=prefix)
        if decision.empty:
            status, text = 202, f"nothing to run: {decision.reason}"
        else:
            queued = [f"{t.pipeline}@{t.sha[:12]} ({t.reason})" for t in decision.triggers]
            cleaned = [f"cleanup {c.ref}" for c in decision.cleanups]
            status, text = 202, "queued: " + "; ".join(queued + cleaned)
    outcome = "queued" if not decision.empty else ("pong" if status == 200 else "no-trigger")
    try:
        triggers = [clean(trigger_payload(delivery_id, t)) for t in decision.triggers]
        cleanups = [
            {
                "delivery_id": delivery_id,
                "task": RECORD_CLEANUP,
                "payload": clean({**asdict(c), "delivery_id": delivery_id}),
            }
            for c in decision.cleanups
        ]
        heads: list[dict[str, Any]] = []
        if isinstance(event, PullRequestEvent) and is_sha(event.head_sha):
            heads.append({"repository_id": config.id, "pr_number": event.number, "sha": event.head_sha})
        if decision.stale_approval and isinstance(event, CommentEvent) and event.head_sha:
            heads.append({"repository_id": config.id, "pr_number": event.issue_number, "sha": event.head_sha})
            cleanups.append(
                {
                    "delivery_id": delivery_id,
                    "task": NOTIFY_STALE_APPROVAL,
                    "payload": {
                        "repository_id": config.id,
                        "pr_number": event.issue_number,
                        "sha": event.head_sha,
                        "commenter": clean(event.author),
                    },
                }
            )
        # One transaction: the delivery, its runs, the heads it saw and its outbox rows commit together.
        delivery = {
            "id": delivery_id,
            "event": event_name,
            "repository_id": config.id,
            "outcome": outcome,
            "detail": clean(text)[:2000],
        }
        store(svc.db, Accepted(delivery, triggers, heads, cleanups))
        for trigger in decision.triggers:
            metrics().triggers.labels(trigger.kind.value).inc()
    except IntegrityError:
        # The delivery id is the primary key: a redelivery lands here.
        with svc.db.session() as session:
            if session.get(Delivery, delivery_id) is None:
                svc.registrations.clear()
                raise Answer(404, f"repository {full_name} was just removed", "unregistered") from None
        raise Answer(200, "duplicate delivery: already accepted, nothing enqueued", "duplicate") from None
    return event_name, full_name, status, text


@bp.post("/github")
def github_webhook() -> Response:
    started = time.perf_counter()
    event_name = request.headers.get("X-GitHub-Event", "unknown")[:50]
    seen: dict[str, str] = {}
    try:
        event_name, _repository, status, text = _handle(seen)
        outcome = "queued" if text.startswith("queued") else ("pong" if text == "pong" else "no-trigger")
    except Answer as answer:
        status, text, outcome = answer.status, answer.text, answer.outcome
    except SQLAlchemyError as error:  # from the look-up or the store alike; a bug stays a 500
        if not storage_unavailable(error):
            raise
        status, outcome = 503, "store-failed"
        text = f"{unavailable_text(error)}: nothing was accepted; GitHub may redeliver it"
    elapsed = time.perf_counter() - started
    figures = metrics()
    figures.deliveries.labels(event_name if event_name in _COUNTED_EVENTS else "other", outcome).inc()
    figures.ack_seconds.observe(elapsed)
    # Accepted deliveries are rows of `deliveries` already; refusals exist only here.
    level = logging.DEBUG if status < 300 else logging.INFO
    log = logger()
    if log.isEnabledFor(level):
        log.log(
            level,
            "webhook delivery",
            extra={
                "delivery": request.headers.get("X-GitHub-Delivery", "")[:100],
                "event": event_name,
                "repository": seen.get("repository"),
                "outcome": outcome,
                "status": status,
                "ms": round(elapsed * 1000, 2),
            },
        )
    return Response(text + "\n", status=status, mimetype="text/plain")
