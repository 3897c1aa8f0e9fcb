"""Report back to GitHub as commit statuses (PyGithub).

Context `<prefix>/<pipeline>`, description cut to GitHub's 140 characters,
target URL the GitLab pipeline. Retries ride on PyGithub's urllib3 Retry
(5xx, 429 and connection errors, with backoff), bounded (`max_seconds`) so a
long outage ends with an exception the caller records and retries later.
`posted` looks a status up, for a retry that cannot know whether its earlier
attempt reached GitHub.
"""

from __future__ import annotations

from github import Auth, Github, GithubException
from urllib3.util.retry import Retry

from middleware.sources.base import ReportFailed

MAX_DESCRIPTION = 140
STATES = ("pending", "success", "failure", "error")


class StatusNotPosted(ReportFailed):
    """GitHub did not take the status; the caller retries later."""


def describe(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_DESCRIPTION else text[: MAX_DESCRIPTION - 1] + "…"


#: A request's tries (reads only; a POST is tried once unless it never reached GitHub).
TRIES = 3
BACKOFF = 0.5
#: How many of a commit's newest statuses a look-up reads (GitHub lists newest first).
LOOKUP_DEPTH = 100


class StatusReporter:
    def __init__(self, api_url: str, *, write_interval: float = 1.0, timeout: int = 10) -> None:
        self._api_url = api_url
        self._write_interval = write_interval
        self._timeout = timeout
        #: The longest one post or one look-up can take, every try and pause included.
        self.max_seconds: float = TRIES * (timeout + write_interval) + BACKOFF * (2**TRIES)
        # Reads are retried on 5xx and 429; a POST only when it never reached GitHub (connect
        # errors): a status is not idempotent, and a lost answer is settled by `posted`.
        self._retry = Retry(
            total=TRIES - 1,
            backoff_factor=BACKOFF,
            status_forcelist=(429, 500, 502, 503, 504),
            allowed_methods=frozenset({"GET", "HEAD"}),
            respect_retry_after_header=True,
        )

    def post(
        self,
        token: str,
        repository: str,
        sha: str,
        *,
        state: str,
        context: str,
        description: str,
        url: str | None,
    ) -> None:
        if state not in STATES:
            raise ValueError(f"unknown status state {state!r}")
        client = self._client(token)
        try:
            commit = client.get_repo(repository).get_commit(sha)
            commit.create_status(
                state, target_url=url or "", description=describe(description), context=context
            )
        except GithubException as error:
            raise StatusNotPosted(
                f"GitHub answered {error.status} to the {state} status for {sha[:12]}"
            ) from None
        except OSError as error:
            raise StatusNotPosted(f"GitHub unreachable ({type(error).__name__})") from None
        finally:
            client.close()

    def posted(
        self,
        token: str,
        repository: str,
        sha: str,
        *,
        state: str,
        context: str,
        description: str,
        url: str | None,
    ) -> bool:
        """Whether this exact status is among the commit's newest ones."""
        client = self._client(token)
        wanted = (state, context, describe(description), url or None)
        try:
            statuses = client.get_repo(repository).get_commit(sha).get_statuses()
            for index, status in enumerate(statuses):
                if index >= LOOKUP_DEPTH:
                    return False
                if (status.state, status.context, status.description, status.target_url or None) == wanted:
                    return True
            return False
        except GithubException as error:
            raise StatusNotPosted(
                f"GitHub answered {error.status} to the status look-up for {sha[:12]}"
            ) from None
        except OSError as error:
            raise StatusNotPosted(f"GitHub unreachable ({type(error).__name__})") from None
        finally:
            client.close()

    def _client(self, token: str) -> Github:
        return Github(
            base_url=self._api_url,
            auth=Auth.Token(token),
            retry=self._retry,
            timeout=self._timeout,
            seconds_between_writes=self._write_interval,
            lazy=True,
        )
