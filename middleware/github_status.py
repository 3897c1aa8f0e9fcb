"""Report back to GitHub as commit statuses (PyGithub).

Context `<prefix>/<pipeline>`, description cut to GitHub's 140 characters,
target URL the GitLab pipeline. Retries ride on PyGithub's urllib3 Retry
(5xx, 429 and connection errors, with backoff), bounded so a long outage
ends with an exception the task records and retries later.
"""

from __future__ import annotations

from github import Auth, Github, GithubException
from urllib3.util.retry import Retry

MAX_DESCRIPTION = 140
STATES = ("pending", "success", "failure", "error")


class StatusNotPosted(RuntimeError):
    """GitHub did not take the status; the caller retries later."""


def describe(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_DESCRIPTION else text[: MAX_DESCRIPTION - 1] + "…"


class StatusReporter:
    def __init__(self, api_url: str, *, write_interval: float = 1.0, total_retries: int = 5) -> None:
        self._api_url = api_url
        self._write_interval = write_interval
        self._retry = Retry(
            total=total_retries,
            backoff_factor=0.5,
            status_forcelist=(429, 500, 502, 503, 504),
            allowed_methods=None,
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
        client = Github(
            base_url=self._api_url,
            auth=Auth.Token(token),
            retry=self._retry,
            timeout=15,
            seconds_between_writes=self._write_interval,
            lazy=True,
        )
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
