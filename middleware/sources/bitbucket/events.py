"""Bitbucket Cloud webhook request -> Delivery -> Events. Pure: hostile JSON in, typed events or a
readable MalformedPayload (or a 400 Refusal for the request itself) out.

Only the fields the policy needs are read, each checked for its type, so a payload shaped to
confuse is refused with a readable 400 rather than crashing later. Bitbucket's words become the
service's: `pullrequest:created` is `opened`, `updated` is `synchronize`, merged (`fulfilled`) and
declined (`rejected`) are `closed`; a push of several refs is one PushEvent per ref. Pull request
payloads carry 12-character commit hashes: they are kept as sent, and the provider's `complete`
resolves them to full SHAs through the API before the policy sees them.
"""

from __future__ import annotations

import json
import re
from typing import Any

from middleware.domain import CommentEvent, Event, OtherEvent, PullRequestEvent, PushEvent, UserId
from middleware.sources.base import Delivery, HeaderMap, MalformedPayload, Refusal
from middleware.sources.fields import get as _get
from middleware.sources.fields import integer as _int
from middleware.sources.fields import name as _name
from middleware.sources.fields import optional_text as _optional_str
from middleware.sources.fields import text as _str

EVENT_HEADER = "X-Event-Key"
#: The same on Bitbucket's retries of one delivery (X-Attempt-Number counts them), so a retry is a
#: duplicate. X-Hook-UUID names the webhook, not the delivery: it is no substitute.
ID_HEADER = "X-Request-UUID"
#: Header values stored with the delivery: printable ASCII that fits deliveries.event (50) and .id (100).
_EVENT_NAME = re.compile(r"[\x21-\x7e]{1,50}")
_DELIVERY_ID = re.compile(r"[\x21-\x7e]{1,100}")
#: A commit hash as Bitbucket sends it: full (pushes) or abbreviated (pull requests: 12 digits).
_HASH = re.compile(r"[0-9a-f]{4,40}")
#: A Bitbucket account UUID, braces included: the stable id trust is keyed on.
_UUID = re.compile(r"\{[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\}")
ZERO_SHA = "0" * 40

PULL_REQUEST_ACTIONS = {
    "pullrequest:created": "opened",
    "pullrequest:updated": "synchronize",
    "pullrequest:fulfilled": "closed",  # merged
    "pullrequest:rejected": "closed",  # declined
}
COMMENT_ACTIONS = {"pullrequest:comment_created": "created", "pullrequest:comment_updated": "edited"}
_NEEDS_REPOSITORY = frozenset({"repo:push", *PULL_REQUEST_ACTIONS, *COMMENT_ACTIONS})


def header(headers: HeaderMap, name: str) -> str | None:
    """A header's value whatever its case: a plain dict is not case-insensitive like werkzeug's."""
    value = headers.get(name)
    if value is not None:
        return value
    wanted = name.lower()
    return next((v for k, v in headers.items() if k.lower() == wanted), None)


def read(headers: HeaderMap, body: bytes, content_type: str) -> Delivery:
    """Event key, delivery id, repository and payload off the request; raises Refusal (400)."""
    event = (header(headers, EVENT_HEADER) or "").strip()
    delivery_id = (header(headers, ID_HEADER) or "").strip()
    if not event or not delivery_id:
        raise Refusal(
            400,
            f"{EVENT_HEADER} and {ID_HEADER} headers are required (Bitbucket Cloud sends both)",
            "malformed",
        )
    if not _EVENT_NAME.fullmatch(event) or not _DELIVERY_ID.fullmatch(delivery_id):
        raise Refusal(
            400, f"{EVENT_HEADER} (up to 50) and {ID_HEADER} (up to 100) must be printable ASCII", "malformed"
        )
    if content_type.startswith("application/x-www-form-urlencoded"):
        raise Refusal(400, "Bitbucket Cloud sends JSON; a form-encoded delivery is refused", "malformed")
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError) as error:  # also bad UTF-8, too deep, or an integer too long
        raise Refusal(400, f"the body is not valid JSON ({type(error).__name__})", "malformed") from None
    # JSON can carry NUL only escaped, so a body without the escape needs no cleaning before storage.
    return Delivery(event, delivery_id, repository_full_name(payload), payload, b"\\u0000" in body)


def repository_full_name(payload: object) -> str | None:
    """`repository.full_name` (`workspace/slug`), the key to the registration; None if absent or odd."""
    if not isinstance(payload, dict):
        return None
    repository = payload.get("repository")
    if not isinstance(repository, dict):
        return None
    name = repository.get("full_name")
    if not isinstance(name, str) or not 3 <= len(name) <= 200 or name.count("/") != 1:
        return None
    workspace, slug = name.split("/")
    return name if workspace and slug else None


# -- typed field access -------------------------------------------------------------------------


def _hash(data: Any, path: str, *, where: str = "") -> str:
    value = _str(data, path, where=where, max_len=64)
    if not _HASH.fullmatch(value):
        raise MalformedPayload(
            f"field {_name(where, path)} must be a commit hash (4 to 40 lowercase hex digits)"
        )
    return value


def _object_or_none(data: Any, path: str, *, where: str = "") -> dict[str, Any] | None:
    value = data.get(path) if isinstance(data, dict) else None
    if value is not None and not isinstance(value, dict):
        raise MalformedPayload(f"field {_name(where, path)} must be an object or null")
    return value


def _user(data: Any, path: str) -> tuple[str, UserId]:
    """A user's name for display and their account UUID, the id trust follows."""
    uuid = _str(data, f"{path}.uuid", max_len=100)
    if not _UUID.fullmatch(uuid):
        raise MalformedPayload(f"field {path}.uuid must be an account UUID like {{xxxxxxxx-xxxx-...}}")
    shown = _optional_str(data, f"{path}.display_name", max_len=100) or _optional_str(
        data, f"{path}.nickname", max_len=100
    )
    return shown or uuid, uuid


def _sender(payload: dict[str, Any]) -> str:
    return (
        _optional_str(payload, "actor.display_name", max_len=100)
        or _optional_str(payload, "actor.nickname", max_len=100)
        or ""
    )


# -- events -------------------------------------------------------------------------------------


def parse(delivery: Delivery) -> list[Event]:
    """The delivery's source-neutral events: one, or one per ref of a push. Raises MalformedPayload."""
    payload = delivery.payload
    if not isinstance(payload, dict):
        raise MalformedPayload("the payload must be a JSON object")
    name = delivery.event
    repository = repository_full_name(payload)
    if name in _NEEDS_REPOSITORY and repository is None:
        raise MalformedPayload("missing field repository.full_name (workspace/slug)")
    if name == "repo:push":
        assert repository is not None
        return _push(payload, repository)
    if name in PULL_REQUEST_ACTIONS:
        assert repository is not None
        return [_pull_request(payload, repository, PULL_REQUEST_ACTIONS[name])]
    if name in COMMENT_ACTIONS:
        assert repository is not None
        return [_comment(payload, repository, COMMENT_ACTIONS[name])]
    return [OtherEvent(repository=repository, name=name[:50])]


def _ref(state: dict[str, Any], where: str) -> str:
    kind = _str(state, "type", where=where, max_len=50)
    name = _str(state, "name", where=where, max_len=300)
    if kind == "branch":
        return f"refs/heads/{name}"
    if kind == "tag":
        return f"refs/tags/{name}"
    raise MalformedPayload(f"field {where}.type must be branch or tag, not {kind[:20]!r}")


def _push(payload: dict[str, Any], repository: str) -> list[Event]:
    changes = _get(payload, "push.changes")
    if not isinstance(changes, list):
        raise MalformedPayload("field push.changes must be a list")
    sender = _sender(payload)
    found: list[Event] = []
    for index, change in enumerate(changes):
        where = f"push.changes[{index}]"
        if not isinstance(change, dict):
            raise MalformedPayload(f"field {where} must be an object")
        new = _object_or_none(change, "new", where=where)
        old = _object_or_none(change, "old", where=where)
        before = _hash(old, "target.hash", where=f"{where}.old") if old is not None else ""
        if new is not None:
            ref = _ref(new, f"{where}.new")
            after, deleted = _hash(new, "target.hash", where=f"{where}.new"), False
        elif old is not None:
            ref, after, deleted = _ref(old, f"{where}.old"), ZERO_SHA, True
        else:
            raise MalformedPayload(f"field {where} has neither new nor old")
        found.append(PushEvent(repository, ref, after, before, deleted, sender))
    if not found:  # nothing changed (Bitbucket sends no such push; a hand-made one runs nothing)
        return [OtherEvent(repository=repository, name="repo:push", action="no changes")]
    return found


def _pull_request(payload: dict[str, Any], repository: str, action: str) -> PullRequestEvent:
    source = _get(payload, "pullrequest.source")
    if not isinstance(source, dict):
        raise MalformedPayload("field pullrequest.source must be an object")
    head_repository = None
    # A deleted fork leaves no source repository: not the destination, so trust decides.
    if _object_or_none(source, "repository", where="pullrequest.source") is not None:
        head_repository = _str(payload, "pullrequest.source.repository.full_name", max_len=200)
    author, author_id = _user(payload, "pullrequest.author")
    return PullRequestEvent(
        repository=repository,
        action=action,
        number=_int(payload, "pullrequest.id"),
        author=author,
        head_sha=_hash(payload, "pullrequest.source.commit.hash"),
        head_ref=_str(payload, "pullrequest.source.branch.name", max_len=300),
        head_repository=head_repository,
        base_ref=_str(payload, "pullrequest.destination.branch.name", max_len=300),
        sender=_sender(payload),
        author_id=author_id,
    )


def _comment(payload: dict[str, Any], repository: str, action: str) -> CommentEvent:
    comment = _get(payload, "comment")
    if not isinstance(comment, dict):
        raise MalformedPayload("field comment must be an object")
    # The comment's own `user`; payloads without one name the commenter as the event's `actor`
    # ("the user who created the comment", Bitbucket's event payload reference).
    author, author_id = _user(payload, "comment.user" if comment.get("user") is not None else "actor")
    return CommentEvent(
        repository=repository,
        action=action,
        issue_number=_int(payload, "pullrequest.id"),
        is_pull_request=True,
        author=author,
        body=_optional_str(payload, "comment.content.raw") or "",
        author_id=author_id,
        created_at=_optional_str(payload, "comment.created_on", max_len=100) or "",
    )
