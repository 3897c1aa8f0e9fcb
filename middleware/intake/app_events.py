"""App-mode deliveries about the App itself: `installation` and `installation_repositories`.

They name no repository of their own, so no registration is looked up: the caller has
verified the App's webhook secret already. The change is applied first (idempotent: the
installation row, the registrations it attaches or withdraws, their runs), then the
delivery is stored with no repository; a delivery id already stored is answered
`duplicate` without applying it again, so an old event redelivered late cannot undo a
newer one.
"""

from __future__ import annotations

from sqlalchemy.exc import IntegrityError

from middleware.intake.store import Accepted, store
from middleware.models import Delivery as DeliveryRow
from middleware.runs.withdrawal import disable, enable
from middleware.services import Services
from middleware.sources.base import Delivery, MalformedPayload, Refusal
from middleware.sources.github.installations import read_change, record


def receive(svc: Services, delivery: Delivery, delivery_id: str) -> tuple[int, str]:
    """Apply one installation delivery; returns (status, text). Raises Refusal (400)."""
    try:
        change = read_change(delivery.event, delivery.payload)
    except MalformedPayload as error:
        raise Refusal(400, f"malformed {delivery.event} payload: {error}", "malformed") from None
    with svc.db.session() as session:
        if session.get(DeliveryRow, delivery_id) is not None:
            return 200, "duplicate delivery: already accepted, nothing enqueued"
    settings = svc.settings
    effect = record(svc.db, change, retention=settings.installation_retention)
    where = f"installation {change.installation_id} on {change.account_login}"
    if change.takes:
        if svc.github_app is not None:
            svc.github_app.forget(change.installation_id)
        canceled = disable(
            svc.db, effect.withdraw, change.reason(), retention=settings.installation_retention
        )
        text = (
            f"{delivery.event} {change.action} ({where}): {len(effect.withdraw)} registration(s) disabled, "
            f"{len(canceled)} run(s) canceled; stored credentials are purged in "
            f"{settings.installation_retention}s unless the App is installed again"
        )
    elif change.gives:
        enabled = enable(svc.db, effect.attach)
        text = (
            f"{delivery.event} {change.action} ({where}): {len(effect.attach)} registration(s) attached, "
            f"{len(enabled)} re-enabled"
        )
    else:
        text = f"{delivery.event} {change.action} ({where}): recorded"
    svc.registrations.clear()
    record_row = {
        "id": delivery_id,
        "event": delivery.event,
        "repository_id": None,
        "outcome": "installation",
        "detail": text[:2000],
    }
    try:
        store(svc.db, Accepted(record_row))
    except IntegrityError:
        return 200, "duplicate delivery: already accepted, nothing enqueued"
    return 200, text
