"""Pull request comments back to GitHub (PyGithub): what a person must see and act on."""

from __future__ import annotations

from github import Auth, Github, GithubException
from urllib3.util.retry import Retry

from middleware.sources.base import ReportFailed

TIMEOUT = 10


class CommentNotPosted(ReportFailed):
    """GitHub did not take the comment; the caller retries later."""


def post_comment(api_url: str, token: str, repository: str, number: int, body: str) -> None:
    # A comment is not idempotent: a POST is tried again only if it never reached GitHub.
    retry = Retry(
        total=2, backoff_factor=0.5, status_forcelist=(502, 503, 504), allowed_methods=frozenset({"GET"})
    )
    # Lazy: the comment is one POST, with no GET of the repository or the issue before it.
    client = Github(base_url=api_url, auth=Auth.Token(token), timeout=TIMEOUT, retry=retry, lazy=True)
    try:
        client.get_repo(repository).get_issue(number).create_comment(body)
    except GithubException as error:
        raise CommentNotPosted(f"GitHub answered {error.status} to a comment on #{number}") from None
    except OSError as error:
        raise CommentNotPosted(f"GitHub unreachable ({type(error).__name__})") from None
    finally:
        client.close()
