"""Where a run's commit and pull (merge) request live on its source, for the run viewer's links.

Pure: built from the registration's provider, full name and clone URL and the settings' web
addresses, never asked of the provider.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

from middleware.settings import Settings
from middleware.sources.gitlab.api import instance_url


@dataclass(frozen=True)
class SourceLinks:
    """The source's web pages of one run; None where the provider has no such page."""

    repository: str
    commit: str
    pull_request: str | None
    #: How people call the source ("GitHub", "GitLab", "Bitbucket").
    title: str


def source_links(
    settings: Settings, provider: str, full_name: str, clone_url: str, sha: str, pr_number: int | None
) -> SourceLinks:
    name = quote(full_name, safe="/")
    commit = quote(sha, safe="")
    if provider == "gitlab":
        try:
            base = f"{instance_url(clone_url).rstrip('/')}/{name}"
        except ValueError:  # registered URLs are checked; an old one may not be
            base = clone_url.removesuffix(".git")
        pr = f"{base}/-/merge_requests/{pr_number}" if pr_number else None
        return SourceLinks(base, f"{base}/-/commit/{commit}", pr, "GitLab")
    if provider == "bitbucket":
        base = f"{settings.bitbucket_url.rstrip('/')}/{name}"
        pr = f"{base}/pull-requests/{pr_number}" if pr_number else None
        return SourceLinks(base, f"{base}/commits/{commit}", pr, "Bitbucket")
    base = f"{settings.github_url.rstrip('/')}/{name}"
    pr = f"{base}/pull/{pr_number}" if pr_number else None
    return SourceLinks(base, f"{base}/commit/{commit}", pr, "GitHub")
