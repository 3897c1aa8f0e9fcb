"""Pin what the policy needs from GitHub before it runs, so the policy stays pure.

A `firecrest-ci run` comment names no commit; the PR's head SHA is read
through the GitHub API at comment time, so a push that lands after the
comment cannot slip into a run the commenter approved.

This happens while a web worker holds the delivery, so the call is bounded
(PIN_TIMEOUT a try, one retry, no Retry-After waits: at most about 8 s);
GitHub slow or failing means "redeliver later", a 404 is a final answer.
"""

from __future__ import annotations

import dataclasses

from github import Auth, Github, GithubException, UnknownObjectException
from urllib3.util.retry import Retry

from middleware.domain import CommentEvent
from middleware.policy import is_command_candidate  # noqa: F401  (its tests import it from here)
from middleware.sources.base import PinUnavailable, PullRequestGone

#: Seconds to connect and between bytes of the answer, per try; two tries at most.
PIN_TIMEOUT = 4
PIN_RETRIES = 1


class EnrichmentUnavailable(PinUnavailable):
    """GitHub could not be asked; the delivery should be redelivered later."""


class PullRequestNotFound(PullRequestGone):
    """GitHub says there is no such pull request (or the token cannot see it): nothing to run."""


def pinning_client(api_url: str, token: str) -> Github:
    """A client for calls a web worker waits on: one retry on 5xx, the last answer kept, and lazy
    objects, so that reading the pull request is the only request."""
    retry = Retry(
        total=PIN_RETRIES,
        backoff_factor=0.5,  # urllib3 waits nothing before the first retry
        status_forcelist=(500, 502, 503, 504),
        allowed_methods=frozenset({"GET"}),
        respect_retry_after_header=False,
        raise_on_status=False,
    )
    return Github(base_url=api_url, auth=Auth.Token(token), timeout=PIN_TIMEOUT, retry=retry, lazy=True)


def pin_pull_request(event: CommentEvent, api_url: str, token: str) -> CommentEvent:
    """The event with the PR's head SHA and base branch read from GitHub (one GET)."""
    client = pinning_client(api_url, token)
    try:
        pull = client.get_repo(event.repository).get_pull(event.issue_number)  # lazy: one GET, below
        return dataclasses.replace(event, head_sha=pull.head.sha, base_ref=pull.base.ref)
    except UnknownObjectException:
        raise PullRequestNotFound(
            f"pull request #{event.issue_number} not found in {event.repository} (deleted, or not "
            "visible to the repository's notification token)"
        ) from None
    except GithubException as error:
        raise EnrichmentUnavailable(
            f"GitHub answered {error.status} for pull request #{event.issue_number}"
        ) from None
    except OSError as error:
        raise EnrichmentUnavailable(f"GitHub unreachable ({type(error).__name__})") from None
    finally:
        client.close()
