"""`POST /webhooks/source/<provider>` (and GitHub's older `/webhooks/github`): verify, decide,
store, acknowledge, the same for every source provider.

Order of checks: size limit, header shapes and JSON (the provider's `read`), the shape of the
repository name, look up the registration of that provider and name, verify the request
with its secret (the provider's `verify`). Nothing else is read or stored before the
signature holds. Then the provider parses the payload into source-neutral events, fills what
the payload lacks (full SHAs), pins a comment's pull request head, and the pure policy
decides. An accepted delivery, its triggers (as runs, due at once) and its cleanups (outbox
rows) are written in one transaction before the answer: the workers drive them from the
database, so nothing accepted depends on the broker. A redelivered id is answered `duplicate`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, replace
from typing import Any

from flask import Blueprint, Request, Response, request
from sqlalchemy import or_, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import selectinload

from middleware.cache import Registration
from middleware.crypto import KeyRingMismatch
from middleware.domain import (
    CommentEvent,
    Decision,
    Event,
    PingEvent,
    PullRequestEvent,
    PushEvent,
    RerunEvent,
    Trigger,
)
from middleware.errors import key_ring_mismatch, storage_unavailable, unavailable_text
from middleware.intake import app_events
from middleware.intake.approvals import judge
from middleware.intake.incoming import Incoming
from middleware.intake.reruns import runs_to_rerun
from middleware.intake.store import Accepted, store
from middleware.logs import logger
from middleware.models import Delivery as DeliveryRow
from middleware.models import Repository
from middleware.ops import metrics
from middleware.policy import decide, is_command_candidate, merge
from middleware.refs import is_sha
from middleware.registry.config import to_config
from middleware.registry.schemas import full_name_pattern
from middleware.runs.tasks import NOTIFY_STALE_APPROVAL, RECORD_CLEANUP
from middleware.services import Services, services
from middleware.sources.base import (
    Delivery,
    MalformedPayload,
    PinUnavailable,
    PullRequestGone,
    Refusal,
    Source,
)
from middleware.sources.github import events as github_events
from middleware.sources.github.installations import EVENTS as INSTALLATION_EVENTS
from middleware.web.links import commit_runs_page

bp = Blueprint("webhooks", __name__, url_prefix="/webhooks")


class Answer(Exception):
    def __init__(self, status: int, text: str, outcome: str) -> None:
        super().__init__(text)
        self.status = status
        self.text = text
        self.outcome = outcome


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
        "attempt": trigger.attempt,
        "requested_by": trigger.requested_by,
    }


def _cache_key(provider: str, full_name: str, source_id: str | None) -> str:
    return f"{provider}#{source_id}" if source_id else f"{provider}:{full_name}"


def _registration(
    svc: Services, provider: str, full_name: str, source_id: str | None = None
) -> Registration | None:
    """The registration of the payload's repository, from the cache or the database: by the
    provider's repository id first when given (App mode: a renamed repository keeps its
    registration), then by name."""
    key = _cache_key(provider, full_name, source_id)
    cached, value = svc.registrations.get(key)
    if cached:
        return value
    with svc.db.session() as session:
        query = (
            select(Repository)
            .where(Repository.provider == provider)
            .options(selectinload(Repository.pipelines))
        )
        if source_id:
            found = session.scalars(
                query.where(or_(Repository.source_id == source_id, Repository.full_name == full_name))
            ).all()
            repo = next((r for r in found if r.source_id == source_id), found[0] if found else None)
        else:
            repo = session.scalar(query.where(Repository.full_name == full_name))
        value = None
        if repo is not None:
            value = Registration(
                to_config(repo),
                svc.box.open(repo.webhook_secret_enc),
                repo.notification_token_enc,
                repo.clone_url,
                source_id=repo.source_id,
                disabled=(repo.disabled_reason or "the GitHub App was removed") if repo.disabled_at else None,
                installation_id=repo.installation_id,
            )
    svc.registrations.put(key, value)
    return value


def _renamed_clone_url(clone_url: str, old: str, new: str) -> str:
    """The clone URL after a rename or transfer: the same host, the new path."""
    for suffix in (f"/{old}.git", f"/{old}"):
        if clone_url.lower().endswith(suffix.lower()):
            return clone_url[: -len(suffix)] + suffix.replace(old, new, 1)
    return clone_url


def _reconcile(
    svc: Services,
    provider: str,
    full_name: str,
    source_id: str | None,
    registration: Registration,
    app_mode: bool,
    payload: object,
) -> Registration:
    """After the signature holds: follow a rename (App mode), and remember the provider's ids
    the registration lacks. Cheap when nothing changed: no database round trip."""
    config = registration.config
    if app_mode and source_id and registration.source_id not in (None, source_id):
        raise Answer(
            404,
            f"repository {full_name} is not the one registered under that name (GitHub repository "
            f"{registration.source_id} was renamed or transferred); register {full_name} anew",
            "unregistered",
        )
    values: dict[str, object] = {}
    if app_mode and registration.source_id == source_id and config.full_name != full_name:
        values["full_name"] = full_name
        values["clone_url"] = _renamed_clone_url(registration.clone_url, config.full_name, full_name)
    if source_id and registration.source_id is None:
        values["source_id"] = source_id
    installation = github_events.installation_id(payload) if app_mode else None
    if installation is not None and installation != registration.installation_id:
        values["installation_id"] = installation
    if not values:
        return registration
    try:
        with svc.db.session() as session:
            session.execute(update(Repository).where(Repository.id == config.id).values(**values))
    except IntegrityError:  # the new name or id is another registration's: keep this one as it is
        logger().warning(
            "registration not updated: its new name or id belongs to another registration",
            extra={"repository_id": config.id, "fields": sorted(values)},
        )
        tried = {k: v for k, v in values.items() if k in ("source_id", "installation_id")}
        registration = replace(registration, **tried)  # type: ignore[arg-type]
        svc.registrations.put(_cache_key(provider, full_name, source_id if app_mode else None), registration)
        return registration  # not tried again while cached
    if "full_name" in values:
        logger().info(
            "registration renamed",
            extra={"repository_id": config.id, "from": config.full_name, "to": full_name},
        )
    svc.registrations.discard(
        _cache_key(provider, full_name, None), _cache_key(provider, config.full_name, None)
    )
    if source_id:
        svc.registrations.discard(_cache_key(provider, full_name, source_id))
    return _registration(svc, provider, full_name, source_id if app_mode else None) or registration


def _decide(
    svc: Services, source: Source, registration: Registration, delivery: Delivery, event: Event
) -> tuple[Event, Decision]:
    """One event's decision, with what the policy needs pinned first (a comment's PR head)."""
    config, prefix = registration.config, svc.settings.command_prefix
    if isinstance(event, PingEvent):
        return event, Decision(reason="ping")
    if isinstance(event, RerunEvent):  # the next attempt, stored with the delivery like any trigger
        app_id = int(svc.settings.github_app_id) if svc.settings.github_app_id.isdecimal() else None
        runs = runs_to_rerun(svc.db, config.id, event)
        return event, decide(event, config, prefix=prefix, runs=runs, app_id=app_id)
    token: str | None = None
    try:
        if isinstance(event, (PushEvent, PullRequestEvent)) and not _complete_shas(event):
            token = svc.box.open(registration.notification_token_enc)
            event = source.complete(event, token)
        if isinstance(event, CommentEvent) and is_command_candidate(event, config, prefix):
            token = token or svc.box.open(registration.notification_token_enc)
            event = judge(svc.db, config.id, source.pin(event, token))
    except PullRequestGone as error:  # final: stored and answered, never redelivered
        return event, Decision(reason=str(error))
    except PinUnavailable as error:
        raise Answer(
            503,
            f"could not pin the pull request's head commit: {error}; redeliver later",
            f"{source.name}-unavailable",
        ) from None
    return event, decide(event, config, prefix=prefix)


def _complete_shas(event: PushEvent | PullRequestEvent) -> bool:
    """Whether the event's commits are full SHAs already (Bitbucket sends short ones)."""
    if isinstance(event, PushEvent):
        return event.deleted or len(event.after) == 40
    return len(event.head_sha) == 40


def _handle(svc: Services, provider: str, req: Incoming, seen: dict[str, str]) -> tuple[str, str, int, str]:
    """Returns (event, repository, status, text); raises Answer for early exits.

    `seen` gets the repository's name as soon as it is read, for the log line of a refusal.
    """
    source = svc.sources[provider]
    body = req.body
    try:
        delivery = source.read(req.headers, body, req.content_type)
    except Refusal as refusal:
        raise Answer(refusal.status, refusal.text, refusal.outcome) from None
    clean = storable if delivery.may_hold_nul else _as_is
    event_name, full_name = delivery.event, delivery.repository
    # Delivery ids are unique per provider only (GitLab's event UUID, Bitbucket's request UUID):
    # other providers' are stored under their name. GitHub's keep their form from before.
    delivery_id = delivery.id if provider == "github" else f"{provider}:{delivery.id}"
    if len(delivery_id) > 100:
        raise Answer(400, f"{source.delivery_header} is longer than {100 - len(provider) - 1}", "malformed")
    # App mode: every GitHub delivery comes with the App's one secret, checked before anything is read.
    app_mode = provider == "github" and svc.github_app is not None
    if app_mode:
        if not source.verify(req.headers, body, svc.settings.github_app_webhook_secret):
            raise Answer(401, f"signature mismatch: {source.proof} does not match the GitHub App's "
                         "webhook secret", "bad-signature")  # fmt: skip
        if event_name in INSTALLATION_EVENTS:
            try:
                status, text = app_events.receive(svc, delivery, delivery_id)
            except Refusal as refusal:
                raise Answer(refusal.status, refusal.text, refusal.outcome) from None
            return event_name, "", status, text
    if full_name is None:
        if delivery.event == source.ping_event and not (
            isinstance(delivery.payload, dict) and "repository" in delivery.payload
        ):
            raise Answer(
                202, "ping without a repository (an organisation hook): nothing to verify", "ignored"
            )
        raise Answer(400, f"the payload names no repository ({source.name_field})", "malformed")
    seen["repository"] = full_name[:200]
    if not full_name_pattern(provider).fullmatch(full_name):  # never looked up: cannot be registered
        raise Answer(400, f"{source.name_field} is not a name {source.title} could send", "malformed")
    source_id = github_events.repository_id(delivery.payload) if provider == "github" else None
    registration = _registration(svc, provider, full_name, source_id if app_mode else None)
    if registration is None:
        raise Answer(404, f"repository {full_name} is not registered with this service", "unregistered")
    if not app_mode and not source.verify(req.headers, body, registration.webhook_secret):
        raise Answer(401, f"signature mismatch: {source.proof} does not match this repository's secret",
                     "bad-signature")  # fmt: skip
    registration = _reconcile(svc, provider, full_name, source_id, registration, app_mode, delivery.payload)
    config = registration.config
    if registration.disabled is not None:
        _store_disabled(svc, delivery_id, event_name, config.id, registration.disabled)
        raise Answer(
            202,
            f"credentials disabled: {registration.disabled}; nothing runs until the App is installed "
            "on the repository again",
            "disabled",
        )
    try:
        events = source.parse(delivery)
    except MalformedPayload as error:
        raise Answer(400, f"malformed {event_name} payload: {error}", "malformed") from None
    decided = [_decide(svc, source, registration, delivery, event) for event in events]
    decision = merge([d for _, d in decided])
    if any(isinstance(e, PingEvent) for e, _ in decided):
        status, text = 200, "pong"
    elif decision.empty:
        status, text = 202, f"nothing to run: {decision.reason}"
    else:
        queued = [f"{t.pipeline}@{t.sha[:12]} ({t.reason})" for t in decision.triggers]
        cleaned = [f"cleanup {c.ref}" for c in decision.cleanups]
        status, text = 202, "queued: " + "; ".join(queued + cleaned)
        if decision.triggers:  # where the runs will show (their ids exist once stored)
            public = svc.settings.public_url
            pages = [
                commit_runs_page(public, config.id, sha)
                for sha in dict.fromkeys(t.sha for t in decision.triggers)
            ]
            text += " | runs: " + " ".join(pages)
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
        for event, one in decided:
            if isinstance(event, PullRequestEvent) and is_sha(event.head_sha):
                heads.append({"repository_id": config.id, "pr_number": event.number, "sha": event.head_sha})
            if one.stale_approval and isinstance(event, CommentEvent) and event.head_sha:
                heads.append(
                    {"repository_id": config.id, "pr_number": event.issue_number, "sha": event.head_sha}
                )
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
        record = {
            "id": delivery_id,
            "event": event_name,
            "repository_id": config.id,
            "outcome": outcome,
            "detail": clean(text)[:2000],
        }
        store(svc.db, Accepted(record, triggers, heads, cleanups))
        for trigger in decision.triggers:
            metrics().triggers.labels(trigger.kind.value).inc()
    except IntegrityError:
        # The delivery id is the primary key: a redelivery lands here.
        with svc.db.session() as session:
            if session.get(DeliveryRow, delivery_id) is None:
                svc.registrations.clear()
                raise Answer(404, f"repository {full_name} was just removed", "unregistered") from None
        raise Answer(200, "duplicate delivery: already accepted, nothing enqueued", "duplicate") from None
    return event_name, full_name, status, text


def _store_disabled(
    svc: Services, delivery_id: str, event_name: str, repository_id: int, reason: str
) -> None:
    """Keep the delivery of a disabled registration (nothing runs); a redelivery is stored once."""
    record = {
        "id": delivery_id,
        "event": event_name,
        "repository_id": repository_id,
        "outcome": "disabled",
        "detail": storable(f"credentials disabled: {reason}")[:2000],
    }
    try:
        store(svc.db, Accepted(record))
    except IntegrityError:
        raise Answer(200, "duplicate delivery: already accepted, nothing enqueued", "duplicate") from None


@bp.post("/github")
def github_webhook() -> Response:
    """GitHub's path from before the per-provider ones: hooks made then keep working."""
    return receive("github", request)


@bp.post("/source/<provider>")
def source_webhook(provider: str) -> Response:
    return receive(provider, request)


def receive(provider: str, req: Request) -> Response:
    """The answer to one delivery for `provider` (a name from the URL, maybe unknown)."""
    status, text = answer(provider, Incoming.of(req))
    return Response(text, status=status, mimetype="text/plain")


def answer(provider: str, req: Incoming) -> tuple[int, str]:
    """The status and plain text that answer one delivery for `provider` (a name from the URL,
    maybe unknown); counted and, unless accepted, logged."""
    svc = services()
    if provider not in svc.sources:
        known = ", ".join(sorted(svc.sources))
        return 404, f"no source provider {provider[:40]!r} here; one of: {known}\n"
    started = time.perf_counter()
    source = svc.sources[provider]
    event_name = req.headers.get(source.event_header, "unknown")[:50]
    seen: dict[str, str] = {}
    try:
        event_name, _repository, status, text = _handle(svc, provider, req, seen)
        outcome = "queued" if text.startswith("queued") else ("pong" if text == "pong" else "no-trigger")
    except Answer as early:
        status, text, outcome = early.status, early.text, early.outcome
    except SQLAlchemyError as error:  # from the look-up or the store alike; a bug stays a 500
        if not storage_unavailable(error):
            raise
        status, outcome = 503, "store-failed"
        text = f"{unavailable_text(error)}: nothing was accepted; {source.title} may redeliver it"
    except KeyRingMismatch as error:  # the registration's secret or token: nothing was accepted
        status, outcome = 503, "key-ring-mismatch"
        why = key_ring_mismatch(error, provider=provider, repository=seen.get("repository"))
        text = f"{why}; redeliver once fixed"
    elapsed = time.perf_counter() - started
    figures = metrics()
    figures.deliveries.labels(event_name if event_name in source.events else "other", outcome).inc()
    figures.ack_seconds.observe(elapsed)
    # Accepted deliveries are rows of `deliveries` already; refusals exist only here.
    level = logging.DEBUG if status < 300 else logging.INFO
    log = logger()
    if log.isEnabledFor(level):
        log.log(
            level,
            "webhook delivery",
            extra={
                "provider": provider,
                "delivery": req.headers.get(source.delivery_header, "")[:100],
                "event": event_name,
                "repository": seen.get("repository"),
                "outcome": outcome,
                "status": status,
                "ms": round(elapsed * 1000, 2),
            },
        )
    return status, text + "\n"
