"""Turn GitHub logins into GitHub's numeric user ids (PyGithub).

Trust follows ids: a login can be renamed, and the old name taken by someone
else. Logins stay beside the ids for display.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from github import Github, GithubException, UnknownObjectException

from middleware.domain import UserId
from middleware.sources.github.tokens import github_client


class UnknownUser(ValueError):
    """GitHub has no such user; the message names the login."""


class UsersUnavailable(RuntimeError):
    """GitHub could not be asked now; resolve later."""


class UserResolver:
    def __init__(self, api_url: str) -> None:
        self.api_url = api_url

    def __call__(self, token: str, logins: list[str]) -> dict[str, int]:
        # App mode has no notification token: public look-ups (PyGithub refuses an empty token).
        client = github_client(self.api_url, token) if token else Github(base_url=self.api_url, timeout=10)
        found: dict[str, int] = {}
        try:
            for login in logins:
                found[login] = int(client.get_user(login).id)
        except UnknownObjectException:
            raise UnknownUser(f"GitHub has no user {login!r}") from None
        except GithubException as error:
            raise UsersUnavailable(f"GitHub answered {error.status} when looking up {login!r}") from None
        except OSError as error:
            raise UsersUnavailable(f"GitHub unreachable ({type(error).__name__})") from None
        finally:
            client.close()
        return found


def entries(logins: list[str], ids: Mapping[str, UserId]) -> list[dict[str, Any]]:
    """The stored form: [{"id": ..., "login": ...}], id None where it is not known yet."""
    return [{"id": ids.get(login), "login": login} for login in logins]


def unresolved(users: list[dict[str, Any]] | None) -> list[str]:
    """Logins still waiting for their id (not those GitHub said it does not know)."""
    return [str(u["login"]) for u in users or () if u.get("id") is None and not u.get("unknown")]
