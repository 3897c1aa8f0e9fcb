"""Check a notification token live with PyGithub when a registration is saved.

A token that GitHub refuses, or that cannot see the repository, would make
every status report fail later and silently; refusing it at once is kinder.
"""

from __future__ import annotations

from github import Auth, BadCredentialsException, Github, GithubException, UnknownObjectException
from urllib3.util.retry import Retry

TIMEOUT = 10


class TokenRejected(ValueError):
    """The token cannot be used; the message says why, without the token."""


def github_client(api_url: str, token: str) -> Github:
    retry = Retry(total=3, backoff_factor=0.5, status_forcelist=(500, 502, 503, 504), allowed_methods=None)
    return Github(base_url=api_url, auth=Auth.Token(token), timeout=TIMEOUT, retry=retry)


def make_token_checker(api_url: str) -> TokenChecker:
    return TokenChecker(api_url)


class TokenChecker:
    def __init__(self, api_url: str) -> None:
        self.api_url = api_url

    def __call__(self, token: str, full_name: str) -> bool:
        """Check the token can see the repository; returns whether the repository is private."""
        client = github_client(self.api_url, token)
        login = "the token's user"
        try:
            login = client.get_user().login
            return bool(client.get_repo(full_name).private)
        except BadCredentialsException:
            raise TokenRejected("GitHub refused the notification token (bad credentials)") from None
        except UnknownObjectException:
            raise TokenRejected(f"the notification token (user {login}) cannot see {full_name}") from None
        except GithubException as error:
            raise TokenRejected(f"GitHub answered {error.status} when checking the token") from None
        except OSError as error:
            raise TokenRejected(f"GitHub at {self.api_url} is unreachable ({type(error).__name__})") from None
        finally:
            client.close()
