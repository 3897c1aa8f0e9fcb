"""Database rows -> the immutable RepositoryConfig the policy reads."""

from __future__ import annotations

from middleware.domain import PipelineConfig, RepositoryConfig
from middleware.models import Repository


def to_config(repo: Repository) -> RepositoryConfig:
    return RepositoryConfig(
        id=repo.id,
        full_name=repo.full_name,
        trusted_users=frozenset(repo.trusted_users or ()),
        branches=tuple(repo.branches or ()),
        pipelines=tuple(
            PipelineConfig(
                id=p.id,
                name=p.name,
                entrypoint=p.entrypoint,
                system=p.system,
                trusted_users=None if p.trusted_users is None else frozenset(p.trusted_users),
                branches=None if p.branches is None else tuple(p.branches),
                tags=tuple(p.tags or ()),
                cancel_superseded=p.cancel_superseded,
            )
            for p in repo.pipelines
        ),
    )
