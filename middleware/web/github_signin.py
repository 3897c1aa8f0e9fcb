"""GitHub's OAuth web flow for the pages' sign-in, and what GitHub says a user may do.

The code is traded at `<github_url>/login/oauth/access_token` (github.com, not the API host);
the user and their repository roles come from the API through PyGithub. Tokens and the
client secret never reach an error message or a log line.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlencode

import requests
from github import Auth, Github, GithubException, UnknownObjectException

from middleware.settings import Settings

TIMEOUT = 10


class SignInFailed(Exception):
    """The GitHub sign-in could not be completed; the message says why, without secrets."""


@dataclass(frozen=True)
class GitHubUser:
    login: str
    user_id: int


def authorize_url(settings: Settings, redirect_uri: str, state: str) -> str:
    query = urlencode(
        {"client_id": settings.github_oauth_client_id, "redirect_uri": redirect_uri, "state": state}
    )
    return f"{settings.github_url.rstrip('/')}/login/oauth/authorize?{query}"


def exchange_code(settings: Settings, code: str, redirect_uri: str) -> str:
    """The user's access token for the one-time `code` GitHub sent back."""
    try:
        answer = requests.post(
            f"{settings.github_url.rstrip('/')}/login/oauth/access_token",
            data={
                "client_id": settings.github_oauth_client_id,
                "client_secret": settings.github_oauth_client_secret,
                "code": code,
                "redirect_uri": redirect_uri,
            },
            headers={"Accept": "application/json"},
            timeout=TIMEOUT,
        )
    except requests.RequestException as error:
        raise SignInFailed(f"GitHub is unreachable ({type(error).__name__}); try again") from None
    try:
        body = answer.json()
    except ValueError:
        body = None
    if answer.status_code != 200 or not isinstance(body, dict):
        raise SignInFailed(f"GitHub answered {answer.status_code} when the sign-in code was traded")
    token = body.get("access_token")
    if not isinstance(token, str) or not token:
        reason = body.get("error") if isinstance(body.get("error"), str) else "no token"
        raise SignInFailed(f"GitHub did not complete the sign-in ({reason}); sign in again")
    return token


def _client(settings: Settings, token: str) -> Github:
    return Github(base_url=settings.github_api_url, auth=Auth.Token(token), timeout=TIMEOUT, retry=None)


def signed_in_user(settings: Settings, token: str) -> GitHubUser:
    client = _client(settings, token)
    try:
        user = client.get_user()
        return GitHubUser(user.login, int(user.id))
    except GithubException as error:
        raise SignInFailed(f"GitHub answered {error.status} when asked who signed in") from None
    except OSError as error:
        raise SignInFailed(f"GitHub is unreachable ({type(error).__name__}); try again") from None
    finally:
        client.close()


def managing_names(settings: Settings, token: str, full_names: list[str]) -> set[str]:
    """Which of `full_names` the token's user has admin or maintain rights on.

    A repository GitHub does not show them counts as none; any other failure raises, so that
    unknown rights are never taken for granted."""
    client = _client(settings, token)
    found: set[str] = set()
    try:
        for full_name in full_names:
            try:
                permissions = client.get_repo(full_name).permissions
            except UnknownObjectException:
                continue
            if permissions is not None and (permissions.admin or permissions.maintain):
                found.add(full_name)
    except GithubException as error:
        raise SignInFailed(f"GitHub answered {error.status} when repository rights were read") from None
    except OSError as error:
        raise SignInFailed(f"GitHub is unreachable ({type(error).__name__}); try again") from None
    finally:
        client.close()
    return found
