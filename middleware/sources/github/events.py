"""GitHub webhook payload -> Event. Pure: hostile JSON in, a typed event or MalformedPayload out.

Only the fields the policy needs are read, each checked for its type, so a
payload shaped to confuse (a number where a string belongs, a bool as a PR
number) is refused with a readable 400 rather than crashing later.
"""

from __future__ import annotations

from typing import Any

from middleware.domain import (
    CommentEvent,
    Event,
    OtherEvent,
    PingEvent,
    PullRequestEvent,
    PushEvent,
    RerunEvent,
)
from middleware.sources import base
from middleware.sources.fields import flag as _bool
from middleware.sources.fields import get as _get
from middleware.sources.fields import integer as _int
from middleware.sources.fields import optional_text as _optional_str
from middleware.sources.fields import text as _str

#: The interface's error, importable from here as before.
MalformedPayload = base.MalformedPayload


def repository_full_name(payload: object) -> str | None:
    """`repository.full_name`, the key to look the registration up; None if absent or odd."""
    if not isinstance(payload, dict):
        return None
    repository = payload.get("repository")
    if not isinstance(repository, dict):
        return None
    name = repository.get("full_name")
    if not isinstance(name, str) or not 3 <= len(name) <= 200 or name.count("/") != 1:
        return None
    return name


def repository_id(payload: object) -> str | None:
    """`repository.id`, GitHub's stable numeric id of the repository, as text; None if absent or odd."""
    repository = payload.get("repository") if isinstance(payload, dict) else None
    number = repository.get("id") if isinstance(repository, dict) else None
    if isinstance(number, bool) or not isinstance(number, int) or not 0 < number < 2**63:
        return None
    return str(number)


def installation_id(payload: object) -> int | None:
    """`installation.id` (App deliveries name the installation they come through); None if absent."""
    installation = payload.get("installation") if isinstance(payload, dict) else None
    number = installation.get("id") if isinstance(installation, dict) else None
    if isinstance(number, bool) or not isinstance(number, int) or not 0 < number < 2**63:
        return None
    return number


def _sender(payload: dict[str, Any]) -> str:
    login = _optional_str(payload, "sender.login")
    return login or _optional_str(payload, "pusher.name") or ""


def parse_event(event_name: str, payload: object) -> Event:
    """Map one delivery (its `X-GitHub-Event` name and JSON body) to an Event."""
    if not isinstance(payload, dict):
        raise MalformedPayload("the payload must be a JSON object")
    repository = repository_full_name(payload)
    if event_name == "ping":
        zen = payload.get("zen")
        return PingEvent(repository=repository, zen=zen if isinstance(zen, str) else "")
    if event_name in ("push", "pull_request", "issue_comment") and repository is None:
        raise MalformedPayload("missing field repository.full_name")
    if event_name == "push":
        return PushEvent(
            repository=str(repository),
            ref=_str(payload, "ref", max_len=300),
            after=_str(payload, "after", max_len=64),
            before=_optional_str(payload, "before") or "",
            deleted=_bool(payload, "deleted"),
            sender=_sender(payload),
        )
    if event_name == "pull_request":
        head = _get(payload, "pull_request.head")
        if not isinstance(head, dict):
            raise MalformedPayload("field pull_request.head must be an object")
        head_repository = None
        head_repo = head.get("repo")
        if head_repo is not None:
            head_repository = _str(payload, "pull_request.head.repo.full_name", max_len=200)
        return PullRequestEvent(
            repository=str(repository),
            action=_str(payload, "action", max_len=50),
            number=_int(payload, "pull_request.number"),
            author=_str(payload, "pull_request.user.login", max_len=100),
            head_sha=_str(payload, "pull_request.head.sha", max_len=64),
            head_ref=_str(payload, "pull_request.head.ref", max_len=300),
            head_repository=head_repository,
            base_ref=_str(payload, "pull_request.base.ref", max_len=300),
            sender=_sender(payload),
            author_id=_int(payload, "pull_request.user.id", bound=2**63),
        )
    if event_name == "issue_comment":
        issue = _get(payload, "issue")
        if not isinstance(issue, dict):
            raise MalformedPayload("field issue must be an object")
        return CommentEvent(
            repository=str(repository),
            action=_str(payload, "action", max_len=50),
            issue_number=_int(payload, "issue.number"),
            is_pull_request=isinstance(issue.get("pull_request"), dict),
            author=_str(payload, "comment.user.login", max_len=100),
            body=_optional_str(payload, "comment.body") or "",
            author_id=_int(payload, "comment.user.id", bound=2**63),
            created_at=_optional_str(payload, "comment.created_at") or "",
        )
    if event_name in ("check_run", "check_suite") and payload.get("action") == "rerequested":
        return _rerun(event_name, payload, repository)
    action = payload.get("action")
    return OtherEvent(
        repository=repository, name=event_name[:50], action=action if isinstance(action, str) else None
    )


def _rerun(event_name: str, payload: dict[str, Any], repository: str | None) -> RerunEvent:
    """`check_run`/`check_suite` `rerequested`: someone pressed "Re-run" on GitHub."""
    if repository is None:
        raise MalformedPayload("missing field repository.full_name")
    run_id = None
    if event_name == "check_run":
        # Our check runs carry the run's id; anything else (another App's, or empty) names no run.
        external = _optional_str(payload, "check_run.external_id") or ""
        run_id = int(external) if external.isdecimal() and len(external) <= 18 else None
    app = _get(payload, f"{event_name}.app")
    return RerunEvent(
        repository=repository,
        head_sha=_str(payload, f"{event_name}.head_sha", max_len=64),
        sender=_str(payload, "sender.login", max_len=100),
        sender_id=_int(payload, "sender.id", bound=2**63),
        app_id=_int(payload, f"{event_name}.app.id", bound=2**63) if isinstance(app, dict) else None,
        run_id=run_id,
        scope=event_name,
    )
