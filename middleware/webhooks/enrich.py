"""Pin what the policy needs from GitHub before it runs, so the policy stays pure.

A `firecrest-ci run` comment names no commit; the PR's head SHA is read
through the GitHub API at comment time, so a push that lands after the
comment cannot slip into a run the commenter approved.
"""

from __future__ import annotations

import dataclasses

from github import GithubException

from middleware.domain import CommentEvent, RepositoryConfig
from middleware.registry.github_token import github_client


class EnrichmentUnavailable(RuntimeError):
    """GitHub could not be asked; the delivery should be redelivered later."""


def is_command_candidate(event: CommentEvent, repo: RepositoryConfig, prefix: str) -> bool:
    """Worth an API call: a created PR comment by someone trusted, starting with the prefix."""
    if event.action != "created" or not event.is_pull_request:
        return False
    first_line = (event.body or "").strip().splitlines()[0] if (event.body or "").strip() else ""
    if not first_line.startswith(f"{prefix} run"):
        return False
    author = event.author.lower()
    return any(author in {u.lower() for u in repo.trusted_for(p)} for p in repo.pipelines)


def pin_pull_request(event: CommentEvent, api_url: str, token: str) -> CommentEvent:
    client = github_client(api_url, token)
    try:
        pull = client.get_repo(event.repository).get_pull(event.issue_number)
        return dataclasses.replace(event, head_sha=pull.head.sha, base_ref=pull.base.ref)
    except GithubException as error:
        raise EnrichmentUnavailable(
            f"GitHub answered {error.status} for pull request #{event.issue_number}"
        ) from None
    except OSError as error:
        raise EnrichmentUnavailable(f"GitHub unreachable ({type(error).__name__})") from None
    finally:
        client.close()
