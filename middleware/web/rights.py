"""A GitHub user's managed repositories here: the registered GitHub repositories where GitHub
grants them admin or maintain rights (read with their own token)."""

from __future__ import annotations

from sqlalchemy import select

from middleware.models import Repository
from middleware.services import services
from middleware.web.github_signin import managing_names


def managed_repository_ids(token: str) -> list[int]:
    """Ids of the registered GitHub repositories `token`'s user manages."""
    svc = services()
    with svc.db.session() as session:
        rows = session.execute(
            select(Repository.id, Repository.full_name).where(Repository.provider == "github")
        ).all()
    names = managing_names(svc.settings, token, sorted({name for _, name in rows}))
    return sorted(repo_id for repo_id, name in rows if name in names)


def read_with_sealed(sealed: str) -> list[int]:
    """The same, from the token as the session keeps it (sealed by the SecretBox)."""
    return managed_repository_ids(services().box.open(sealed))
