"""The run viewer's filters: the GET form's values read into a `RunFilter`, and its SQL conditions.

Reading is pure and never raises: a value that cannot be a filter comes back as a message for
its field (the page shows it beside the field, keeps what was entered, and lists nothing),
so bad input is a 400 with a reason, never a 500 from the database.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from sqlalchemy import ColumnElement, and_, func, or_

from middleware.domain import TriggerKind
from middleware.models import Run

PER_PAGE = 25
#: Far enough for any real history; beyond it the offset would only scan.
MAX_PAGE = 100_000
STATES = ("queued", "mirrored", "pending", "running", "success", "failed", "canceled", "error")
KINDS = tuple(kind.value for kind in TriggerKind)
#: The form's field names, in the order the page shows them.
FIELDS = ("state", "trigger", "commit", "ref", "requested_by", "from", "to")
_COMMIT = re.compile(r"[0-9a-f]{4,40}")
_PR = re.compile(r"(?:#|!|pr-|pr:)?([0-9]{1,9})", re.IGNORECASE)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
MAX_REF = 255
MAX_LOGIN = 200


@dataclass(frozen=True)
class RunFilter:
    """What the runs listed must match; None matches anything."""

    state: str | None = None
    kind: str | None = None
    #: A lowercase hex prefix of the commit SHA.
    commit: str | None = None
    #: A branch or tag name, or a pull (merge) request number, as entered.
    ref: str | None = None
    pr_number: int | None = None
    requested_by: str | None = None
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    page: int = 1


@dataclass(frozen=True)
class Parsed:
    filter: RunFilter
    #: Field name -> why its value is not a filter.
    errors: dict[str, str] = field(default_factory=dict)
    #: What was entered, to show back in the form.
    values: dict[str, str] = field(default_factory=dict)


def _when(text: str, *, end: bool) -> dt.datetime:
    """A date (the whole day) or a date and time, in UTC unless an offset is given."""
    value = dt.datetime.fromisoformat(text.replace(" ", "T", 1).removesuffix("Z").removesuffix("z"))
    if len(text) <= 10 and end:  # a day: up to its last moment
        value = dt.datetime.combine(value.date(), dt.time.max)
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def _bound(text: str, *, end: bool) -> tuple[dt.datetime | None, str | None]:
    if not text or _CONTROL.search(text):
        return None, None
    try:
        return _when(text, end=end), None
    except (ValueError, OverflowError):
        return None, "a date (2024-05-31) or a date and time (2024-05-31T14:00), in UTC"


def parse(args: Mapping[str, str]) -> Parsed:
    """The filter the form's values ask for, or a message for each value that cannot be one."""
    values = {name: str(args.get(name, "") or "").strip() for name in (*FIELDS, "page")}
    errors: dict[str, str] = {}
    for name, value in values.items():
        if _CONTROL.search(value):
            errors[name] = "must not contain control characters"
    found = RunFilter()
    state, kind = values["state"].lower(), values["trigger"].lower()
    if state and "state" not in errors:
        if state in STATES:
            found = replace(found, state=state)
        else:
            errors["state"] = f"no state {state[:30]!r}; choose one of {', '.join(STATES)}"
    if kind and "trigger" not in errors:
        if kind in KINDS:
            found = replace(found, kind=kind)
        else:
            errors["trigger"] = f"no trigger {kind[:30]!r}; choose one of {', '.join(KINDS)}"
    commit = values["commit"].lower()
    if commit and "commit" not in errors:
        if _COMMIT.fullmatch(commit):
            found = replace(found, commit=commit)
        else:
            errors["commit"] = "a commit is 4 to 40 hexadecimal characters: the SHA or its start"
    ref = values["ref"]
    if ref and "ref" not in errors:
        if len(ref) > MAX_REF:
            errors["ref"] = f"a branch or tag name has at most {MAX_REF} characters"
        else:
            number = _PR.fullmatch(ref)
            found = replace(found, ref=ref, pr_number=int(number[1]) if number else None)
    login = values["requested_by"]
    if login and "requested_by" not in errors:
        if len(login) > MAX_LOGIN:
            errors["requested_by"] = f"a login has at most {MAX_LOGIN} characters"
        else:
            found = replace(found, requested_by=login)
    since, since_error = _bound(values["from"], end=False)
    until, until_error = _bound(values["to"], end=True)
    for name, problem in (("from", since_error), ("to", until_error)):
        if problem and name not in errors:
            errors[name] = problem
    found = replace(found, since=since, until=until)
    if found.since is not None and found.until is not None and found.since > found.until:
        errors["to"] = "the end of the time range is before its start"
    page = 1
    if values["page"] and "page" not in errors:
        text = values["page"]
        if (
            len(text) <= len(str(MAX_PAGE))
            and text.isascii()
            and text.isdigit()
            and 1 <= int(text) <= MAX_PAGE
        ):
            page = int(text)
        else:
            errors["page"] = f"a page is a number from 1 to {MAX_PAGE}"
    shown = {name: value for name, value in values.items() if value}
    return Parsed(replace(found, page=page), errors, shown)


def conditions(wanted: RunFilter) -> list[ColumnElement[bool]]:
    """The SQL conditions on `runs` of a filter (the repository and pipelines are the caller's)."""
    where: list[ColumnElement[bool]] = []
    if wanted.state:
        where.append(Run.state == wanted.state)
    if wanted.kind:
        where.append(Run.trigger_kind == wanted.kind)
    if wanted.commit:  # hex only: no LIKE wildcards can be in it
        where.append(Run.sha.startswith(wanted.commit))
    if wanted.ref:
        name = wanted.ref.removeprefix("refs/heads/")
        refs: list[ColumnElement[bool]] = [
            Run.ref.in_({wanted.ref, name, f"refs/tags/{name.removeprefix('refs/tags/')}"})
        ]
        if wanted.pr_number is not None:
            refs += [Run.pr_number == wanted.pr_number, Run.ref == f"pr-{wanted.pr_number}"]
        where.append(or_(*refs))
    if wanted.requested_by:
        where.append(func.lower(Run.requested_by) == wanted.requested_by.lower())
    if wanted.since or wanted.until:
        bounds: list[ColumnElement[bool]] = []
        if wanted.since:
            bounds.append(Run.created_at >= wanted.since)
        if wanted.until:
            bounds.append(Run.created_at <= wanted.until)
        where.append(and_(*bounds))
    return where
