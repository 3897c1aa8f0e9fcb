"""GitLab webhook request -> Delivery -> Events. Pure: hostile headers and JSON in, typed events,
a Refusal or a MalformedPayload out.

GitLab's words are turned into the service's on the way in (see `sources.base`): merge request
actions become GitHub's (`open` -> `opened`, `update` with new commits -> `synchronize`, ...),
refs stay full, and trust follows the numeric ids GitLab sends (`object_attributes.author_id`:
the merge request's or the note's AUTHOR, never whoever triggered the event). Only the fields
the policy needs are read, each checked for its type, so a payload shaped to confuse is refused
with a readable 400 instead of failing later.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from middleware.domain import CommentEvent, Event, OtherEvent, PullRequestEvent, PushEvent
from middleware.refs import ZERO_SHA
from middleware.sources.base import Delivery, HeaderMap, MalformedPayload, Refusal
from middleware.sources.fields import get as _get
from middleware.sources.fields import optional_text as _optional_str
from middleware.sources.fields import positive as _check_int
from middleware.sources.fields import present as _present
from middleware.sources.fields import text as _str
from middleware.sources.gitlab.signature import header
from middleware.sources.headers import json_body

EVENT_HEADER = "X-Gitlab-Event"
#: GitLab 17.4+: the same on every retry of one delivery, so a retry is seen as a duplicate.
IDEMPOTENCY_HEADER = "Idempotency-Key"
#: Older GitLab: one UUID per event (and per retry of a failed delivery).
UUID_HEADER = "X-Gitlab-Event-UUID"

#: Event names have spaces ("Merge Request Hook"); both fit deliveries.event (50) and .id (100),
#: as `sources.headers` checks them for the providers with one delivery id header.
_EVENT_NAME = re.compile(r"[\x20-\x7e]{1,50}")
_DELIVERY_ID = re.compile(r"[\x21-\x7e]{1,100}")
#: One segment of a GitLab namespace or project path; nested groups nest up to 20 deep.
_PATH_SEGMENT = re.compile(r"[A-Za-z0-9_.][A-Za-z0-9_.-]*")
MAX_FULL_NAME = 200  # repositories.full_name
MAX_SEGMENTS = 21

PUSH_EVENTS = frozenset({"Push Hook", "Tag Push Hook"})
MERGE_REQUEST_EVENT = "Merge Request Hook"
NOTE_EVENT = "Note Hook"

#: GitLab's merge request actions in GitHub's words; `update` depends on `oldrev` (see below).
_MR_ACTIONS = {"open": "opened", "reopen": "reopened", "close": "closed", "merge": "closed"}
_NOTE_ACTIONS = {"create": "created", "update": "edited"}
#: Bound for numeric ids (PostgreSQL bigint) and for iids (integer).
_ID_BOUND = 2**63
_IID_BOUND = 2**31


# -- reading the request ----------------------------------------------------------------


def read(headers: HeaderMap, body: bytes, content_type: str) -> Delivery:
    """Event name, delivery id, project path and payload; raises Refusal (400) on anything odd.

    `content_type` is not consulted: GitLab always sends JSON, and a body that is not JSON is
    refused whatever it claims to be.
    """
    del content_type
    event = (header(headers, EVENT_HEADER) or "").strip()
    delivery_id = (header(headers, IDEMPOTENCY_HEADER) or header(headers, UUID_HEADER) or "").strip()
    if not event or not delivery_id:
        raise Refusal(
            400, f"{EVENT_HEADER} and {IDEMPOTENCY_HEADER} or {UUID_HEADER} headers are required", "malformed"
        )
    if not _EVENT_NAME.fullmatch(event) or not _DELIVERY_ID.fullmatch(delivery_id):
        raise Refusal(
            400,
            f"{EVENT_HEADER} must be printable ASCII (up to 50 characters) and the delivery id "
            f"({IDEMPOTENCY_HEADER} or {UUID_HEADER}) printable ASCII without spaces (up to 100)",
            "malformed",
        )
    payload, may_hold_nul = json_body(body)  # Refusal (400) when it is not JSON
    return Delivery(event, delivery_id, project_path(payload), payload, may_hold_nul)


def full_name_problem(name: str) -> str | None:
    """Why `name` cannot be a GitLab project's full path (`group/sub/project`), or None."""
    if not 3 <= len(name) <= MAX_FULL_NAME:
        return f"it must be 3 to {MAX_FULL_NAME} characters long"
    segments = name.split("/")
    if not 2 <= len(segments) <= MAX_SEGMENTS:
        return "it must be a namespace and a project, `group/project` or `group/sub/project`"
    for segment in segments:
        if not _PATH_SEGMENT.fullmatch(segment) or set(segment) == {"."}:
            return f"{segment!r} is not a GitLab path (letters, digits, '_', '-' and '.')"
    return None


def project_path(payload: object) -> str | None:
    """`project.path_with_namespace`, the key to look the registration up; None if absent or odd."""
    if not isinstance(payload, dict):
        return None
    project = payload.get("project")
    if not isinstance(project, dict):
        return None
    name = project.get("path_with_namespace")
    if not isinstance(name, str) or full_name_problem(name) is not None:
        return None
    return name


# -- typed field access -------------------------------------------------------------------


def _int(data: Any, path: str, bound: int = _IID_BOUND) -> int:
    return _check_int(_get(data, path), path, bound)


def _optional_int(data: Any, path: str, bound: int = _ID_BOUND) -> int | None:
    value = _present(data, path)
    return None if value is None else _check_int(value, path, bound)


def _object(data: Any, path: str) -> dict[str, Any]:
    value = _get(data, path)
    if not isinstance(value, dict):
        raise MalformedPayload(f"field {path} must be an object")
    return value


def _optional_object(data: Any, path: str) -> dict[str, Any] | None:
    value = _present(data, path)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise MalformedPayload(f"field {path} must be an object or null")
    return value


def _project_path(data: Any, path: str) -> str:
    name = _str(data, path, max_len=MAX_FULL_NAME)
    problem = full_name_problem(name)
    if problem is not None:
        raise MalformedPayload(f"field {path} is not a GitLab project path: {problem}")
    return name


def _timestamp(value: str) -> str:
    """ISO 8601, as the approval check reads it; GitLab's hooks say `2015-05-17 18:21:36 UTC`.

    A time that cannot be read is kept as it is: the approval check then refuses to take the
    comment as approving anything, which is the safe way to fail.
    """
    text = value.strip()
    if text.endswith(" UTC"):
        text = text[: -len(" UTC")] + "+00:00"
    try:
        moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return value
    return (moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)).isoformat()


# -- events ----------------------------------------------------------------------------------


def _push(repository: str, payload: dict[str, Any]) -> PushEvent:
    after = _str(payload, "after", max_len=64)
    return PushEvent(
        repository=repository,
        ref=_str(payload, "ref", max_len=300),
        after=after,
        before=_optional_str(payload, "before", max_len=64) or "",
        deleted=ZERO_SHA.fullmatch(after) is not None,
        sender=_optional_str(payload, "user_username", max_len=255) or "",
    )


def _merge_request_action(payload: dict[str, Any]) -> str:
    action = _str(payload, "object_attributes.action", max_len=50)
    if action == "update":
        # `oldrev` comes only when the update brought new commits; a title or label edit has none.
        oldrev = _optional_str(payload, "object_attributes.oldrev", max_len=64)
        return "synchronize" if oldrev else "edited"
    return _MR_ACTIONS.get(action, action)


def _merge_request(repository: str, payload: dict[str, Any]) -> PullRequestEvent:
    _object(payload, "object_attributes")
    source = _optional_object(payload, "object_attributes.source")
    head_repository = None
    if source is not None:  # null when the source project (a fork) was deleted
        head_repository = _project_path(payload, "object_attributes.source.path_with_namespace")
    sender = _str(payload, "user.username", max_len=255)
    # GitLab's hook names the author by id only; a username beside it is used when one is sent.
    author = _optional_str(payload, "object_attributes.author.username", max_len=255) or sender
    return PullRequestEvent(
        repository=repository,
        action=_merge_request_action(payload),
        number=_int(payload, "object_attributes.iid"),
        author=author,
        head_sha=_optional_str(payload, "object_attributes.last_commit.id", max_len=64) or "",
        head_ref=_str(payload, "object_attributes.source_branch", max_len=300),
        head_repository=head_repository,
        base_ref=_str(payload, "object_attributes.target_branch", max_len=300),
        sender=sender,
        author_id=_int(payload, "object_attributes.author_id", bound=_ID_BOUND),
    )


def _note(repository: str, payload: dict[str, Any]) -> CommentEvent:
    _object(payload, "object_attributes")
    noteable = _str(payload, "object_attributes.noteable_type", max_len=50)
    action = _optional_str(payload, "object_attributes.action", max_len=50)
    author_id = _optional_int(payload, "object_attributes.author_id")
    if author_id is None:
        author_id = _optional_int(payload, "user.id")
    if author_id is None:
        raise MalformedPayload("missing field object_attributes.author_id (and user.id)")
    if noteable == "MergeRequest":
        _object(payload, "merge_request")
        number = _int(payload, "merge_request.iid")
    elif noteable == "Issue":
        _object(payload, "issue")
        number = _int(payload, "issue.iid")
    else:  # a commit or a snippet: no number the policy could use; it ignores such notes anyway
        number = 0
    return CommentEvent(
        repository=repository,
        action=_NOTE_ACTIONS.get(action or "create", action or "created"),
        issue_number=number,
        is_pull_request=noteable == "MergeRequest",
        author=_str(payload, "user.username", max_len=255),
        body=_optional_str(payload, "object_attributes.note") or "",
        author_id=author_id,
        created_at=_timestamp(_optional_str(payload, "object_attributes.created_at", max_len=100) or ""),
    )


def parse(delivery: Delivery) -> list[Event]:
    """The delivery's event: push, merge request, note, or one the service does not act on."""
    payload = delivery.payload
    if not isinstance(payload, dict):
        raise MalformedPayload("the payload must be a JSON object")
    name = delivery.event
    repository = project_path(payload)
    if name in PUSH_EVENTS or name in (MERGE_REQUEST_EVENT, NOTE_EVENT):
        if repository is None:  # read again, to raise with the reason
            repository = _project_path(payload, "project.path_with_namespace")
        if name in PUSH_EVENTS:
            return [_push(repository, payload)]
        if name == MERGE_REQUEST_EVENT:
            return [_merge_request(repository, payload)]
        return [_note(repository, payload)]
    action = _present(payload, "object_attributes.action")
    return [
        OtherEvent(
            repository=repository, name=name[:50], action=action[:50] if isinstance(action, str) else None
        )
    ]
