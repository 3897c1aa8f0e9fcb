"""Every source provider this service serves, built from the settings (the app factory and the
workers use the same catalogue)."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import select

from middleware.db import Database
from middleware.models import Repository
from middleware.settings import Settings
from middleware.sources.base import Source
from middleware.sources.bitbucket.provider import BitbucketSource
from middleware.sources.github.provider import GitHubSource
from middleware.sources.gitlab.api import instance_url
from middleware.sources.gitlab.provider import GitLabSource


def build(settings: Settings, db: Database) -> dict[str, Source]:
    sources: list[Source] = [
        GitHubSource(
            settings.github_api_url,
            write_interval=settings.github_write_interval,
            timeout=settings.github_timeout,
        ),
        GitLabSource(
            settings.gitlab_source_ca_file, settings.github_timeout, instance_for=gitlab_instances(db)
        ),
        BitbucketSource(settings.bitbucket_api_url, settings.github_timeout, web_url=settings.bitbucket_url),
    ]
    return {source.name: source for source in sources}


def gitlab_instances(db: Database) -> Callable[[str], str]:
    """A GitLab project's instance, from the clone URL it was registered with: its token goes
    to that instance and no other."""

    def instance_for(full_name: str) -> str:
        with db.session() as session:
            clone_url = session.scalar(
                select(Repository.clone_url).where(
                    Repository.provider == "gitlab", Repository.full_name == full_name
                )
            )
        if clone_url is None:
            raise LookupError(f"no GitLab registration named {full_name!r}")
        return instance_url(clone_url)

    return instance_for
