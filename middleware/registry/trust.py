"""Resolve trusted logins that were stored without their GitHub id (a worker's outbox command).

The registration API resolves logins at once when GitHub answers; when it did
not (or for registrations migrated from logins), this fills the ids in later.
Until then such a login trusts no one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy.orm import selectinload

from middleware.crypto import SecretBox
from middleware.db import Database
from middleware.logs import logger
from middleware.models import Repository
from middleware.sources.github.users import UnknownUser, unresolved


def resolve_trusted_users(
    db: Database,
    box: SecretBox,
    resolve: Callable[[str, list[str]], dict[str, int]],
    repository_id: int,
    *,
    installation_token: Callable[[int], str] | None = None,
) -> int:
    """Fill in the missing ids of a repository's trusted users; returns how many were resolved.

    Raises UsersUnavailable when GitHub cannot be asked (the command is tried again later). In
    App mode the look-ups use the installation's token (`installation_token`).
    A login GitHub does not know is kept, marked `unknown`, and trusts no one.
    """
    with db.session() as session:
        repo = session.get(Repository, repository_id, options=[selectinload(Repository.pipelines)])
        if repo is None:
            return 0
        token = box.open(repo.notification_token_enc)
        if not token and installation_token is not None and repo.installation_id is not None:
            token = installation_token(repo.installation_id)  # App mode: no person's token
        lists = [repo.trusted_users, *(p.trusted_users for p in repo.pipelines)]
        wanted = sorted({login for users in lists for login in unresolved(users) if users})
        ids: dict[str, int] = {}
        unknown: set[str] = set()
        for login in wanted:
            try:
                ids.update(resolve(token, [login]))
            except UnknownUser:
                unknown.add(login)

        def filled(users: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
            if users is None:
                return None
            return [
                {**u, "id": ids.get(u["login"], u.get("id"))}
                | ({"unknown": True} if u["login"] in unknown else {})
                for u in users
            ]

        repo.trusted_users = filled(repo.trusted_users) or []
        for pipeline in repo.pipelines:
            pipeline.trusted_users = filled(pipeline.trusted_users)
    if unknown:
        logger().warning(
            "trusted logins unknown to GitHub",
            extra={"repository_id": repository_id, "logins": sorted(unknown)},
        )
    return len(ids)
