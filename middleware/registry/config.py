"""Database rows -> the immutable RepositoryConfig the policy reads."""

from __future__ import annotations

from typing import Any

from middleware.domain import PipelineConfig, RepositoryConfig, UserId
from middleware.models import Repository


def trusted_ids(users: list[dict[str, Any]] | None) -> frozenset[UserId]:
    """The resolved ids (numbers, or Bitbucket's UUIDs); a login whose id is not known yet trusts
    no one."""
    return frozenset(
        u["id"] if isinstance(u["id"], str) else int(u["id"])
        for u in users or ()
        if isinstance(u, dict) and u.get("id") is not None
    )


def to_config(repo: Repository) -> RepositoryConfig:
    return RepositoryConfig(
        id=repo.id,
        full_name=repo.full_name,
        trusted_users=trusted_ids(repo.trusted_users),
        branches=tuple(repo.branches or ()),
        pipelines=tuple(
            PipelineConfig(
                id=p.id,
                name=p.name,
                entrypoint=p.entrypoint,
                system=p.system,
                trusted_users=None if p.trusted_users is None else trusted_ids(p.trusted_users),
                branches=None if p.branches is None else tuple(p.branches),
                tags=tuple(p.tags or ()),
                cancel_superseded=p.cancel_superseded,
                allowed_variables=None if p.allowed_variables is None else frozenset(p.allowed_variables),
            )
            for p in repo.pipelines
        ),
    )
