"""The GitHub App's `installation` and `installation_repositories` events (App mode).

`read_change` turns a payload into an `InstallationChange` (pure, hostile JSON in); `record`
keeps the `installations` row up to date and says which registrations the change gives
the App (`attach`: their installation is recorded, and they are re-enabled) and which it
takes away (`withdraw`: disabled by the caller, see middleware.runs.withdrawal).
Registrations are matched by GitHub's numeric repository id, and by name only while their
id is still unknown (the id is then recorded).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, and_, func, or_, select, update

from middleware.db import Database
from middleware.models import Installation, Repository, utcnow
from middleware.sources.base import MalformedPayload
from middleware.sources.fields import integer, optional_text, text

EVENTS = frozenset({"installation", "installation_repositories"})
#: Actions that give the App repositories, and those that take them away.
GIVING = frozenset({"created", "unsuspend", "new_permissions_accepted", "added"})
TAKING = frozenset({"deleted", "suspend", "removed"})


@dataclass(frozen=True)
class RepositoryRef:
    id: int
    full_name: str


@dataclass(frozen=True)
class InstallationChange:
    event: str
    action: str
    installation_id: int
    account_login: str
    account_id: int
    account_type: str
    #: The repositories named: all of them for `created`/`deleted`, the added or removed ones
    #: for `installation_repositories` (none for suspend, unsuspend, new_permissions_accepted).
    repositories: tuple[RepositoryRef, ...] = ()
    sender: str = ""

    @property
    def gives(self) -> bool:
        return self.action in GIVING

    @property
    def takes(self) -> bool:
        return self.action in TAKING

    def reason(self) -> str:
        """Why registrations are disabled, for the intake's answers and the pages."""
        by = f" by {self.sender}" if self.sender else ""
        where = f"{self.account_login} (installation {self.installation_id})"
        if self.action == "deleted":
            return f"the GitHub App was uninstalled from {where}{by}"
        if self.action == "suspend":
            return f"the GitHub App's installation on {where} was suspended{by}"
        return f"the repository was removed from the GitHub App's installation on {where}{by}"


@dataclass
class Effect:
    """What a change means for the registrations: their ids."""

    attach: list[int] = field(default_factory=list)
    withdraw: list[int] = field(default_factory=list)


def _repositories(payload: dict[str, Any], key: str) -> tuple[RepositoryRef, ...]:
    found = payload.get(key)
    if found is None:
        return ()
    if not isinstance(found, list) or len(found) > 100_000:
        raise MalformedPayload(f"field {key} must be a list")
    refs = []
    for index, item in enumerate(found):
        if not isinstance(item, dict):
            raise MalformedPayload(f"field {key}.{index} must be an object")
        refs.append(RepositoryRef(integer(item, "id", bound=2**63), text(item, "full_name", max_len=200)))
    return tuple(refs)


def read_change(event: str, payload: object) -> InstallationChange:
    """The change an installation delivery describes; raises MalformedPayload."""
    if not isinstance(payload, dict):
        raise MalformedPayload("the payload must be a JSON object")
    action = text(payload, "action", max_len=50)
    if event == "installation":
        repositories = _repositories(payload, "repositories")
    elif action == "added":
        repositories = _repositories(payload, "repositories_added")
    else:
        repositories = _repositories(payload, "repositories_removed")
    return InstallationChange(
        event=event,
        action=action,
        installation_id=integer(payload, "installation.id", bound=2**63),
        account_login=text(payload, "installation.account.login", max_len=200),
        account_id=integer(payload, "installation.account.id", bound=2**63),
        account_type=optional_text(payload, "installation.account.type") or "User",
        repositories=repositories,
        sender=(optional_text(payload, "sender.login") or "")[:100],
    )


def record(
    db: Database, change: InstallationChange, *, retention: int, now: dt.datetime | None = None
) -> Effect:
    """Update the installation row and find the registrations the change concerns."""
    now = now or utcnow()
    ids = {ref.id for ref in change.repositories}
    with db.session() as session:
        row = session.get(Installation, change.installation_id)
        if row is None:
            row = Installation(id=change.installation_id, repository_ids=[], created_at=now)
            session.add(row)
        row.account_login, row.account_id = change.account_login, change.account_id
        row.account_type = change.account_type[:20]
        known = set(row.repository_ids or ())
        if change.action == "created":
            known, row.removed_at, row.suspended_at, row.purge_after = ids, None, None, None
        elif change.action == "added":
            known |= ids
        elif change.action == "removed":
            known -= ids
        elif change.action == "deleted":
            row.removed_at, row.purge_after = now, now + dt.timedelta(seconds=retention)
        elif change.action == "suspend":
            row.suspended_at = now
        elif change.action == "unsuspend":
            row.suspended_at = None
        row.repository_ids = sorted(known)
        session.flush()

        effect = Effect()
        github = Repository.provider == "github"
        if change.takes:
            named = ids if change.action == "removed" else ids | known
            conditions: list[ColumnElement[bool]] = [Repository.source_id.in_([str(i) for i in named])]
            if change.action != "removed":
                conditions.append(Repository.installation_id == change.installation_id)
            effect.withdraw = list(session.scalars(select(Repository.id).where(github, or_(*conditions))))
            if effect.withdraw and change.action != "suspend":  # gone from the installation for good
                session.execute(
                    update(Repository).where(Repository.id.in_(effect.withdraw)).values(installation_id=None)
                )
        elif change.gives:
            by_name = {ref.full_name.lower(): ref.id for ref in change.repositories}
            conditions = [Repository.source_id.in_([str(i) for i in ids | known])]
            if change.action in ("unsuspend", "new_permissions_accepted"):
                conditions.append(Repository.installation_id == change.installation_id)
            if by_name:
                conditions.append(
                    and_(Repository.source_id.is_(None), func.lower(Repository.full_name).in_(list(by_name)))
                )
            for repo in session.scalars(select(Repository).where(github, or_(*conditions))):
                if repo.source_id is None:
                    number = by_name.get(repo.full_name.lower())
                    if number is None:
                        continue
                    repo.source_id = str(number)
                effect.attach.append(repo.id)
            if effect.attach:
                session.execute(
                    update(Repository)
                    .where(Repository.id.in_(effect.attach))
                    .values(installation_id=change.installation_id)
                )
    return effect
