"""The GitHub App's identity (App mode): installation tokens and where the App is installed.

Installation tokens are minted through PyGithub's App support and kept in memory only, until
shortly before they expire (GitHub gives them an hour): minting one per status or check run
would cost a round trip each and use up the App's rate limit. They are never stored, and
never logged: PyGithub masks them in its own debug output, and no message here holds one.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from dataclasses import dataclass

from github import Auth, Github, GithubException, GithubIntegration, UnknownObjectException
from urllib3.util.retry import Retry

from middleware.settings import Settings

#: A cached token is replaced this many seconds before it expires, so no request carries one
#: that expires on the way.
REFRESH_MARGIN = 5 * 60
TIMEOUT = 10


class AppUnavailable(RuntimeError):
    """GitHub could not be asked now (an outage, or the App's key was refused); try later."""


@dataclass(frozen=True)
class _Minted:
    token: str
    #: time.monotonic() after which it is minted again.
    renew_at: float


def _retry() -> Retry:
    return Retry(
        total=2, backoff_factor=0.5, status_forcelist=(500, 502, 503, 504), allowed_methods=frozenset({"GET"})
    )


class GitHubApp:
    """One App (GITHUB_APP_ID and its private key) against GITHUB_API_URL; thread-safe."""

    def __init__(self, settings: Settings) -> None:
        if not settings.app_mode:
            raise ValueError("GITHUB_APP_ID is not set: this service is in token mode")
        self.api_url = settings.github_api_url
        self.app_id = settings.github_app_id
        self._auth = Auth.AppAuth(settings.github_app_id, settings.app_private_key())
        self._tokens: dict[int, _Minted] = {}
        self._locks: dict[int, threading.Lock] = {}
        self._guard = threading.Lock()

    def jwt(self) -> str:
        """A fresh App JWT (ten minutes at most), for the App's own endpoints."""
        return self._auth.token

    def client(self) -> Github:
        """PyGithub authenticated as the App itself (JWT), for `/app/...` endpoints."""
        return Github(base_url=self.api_url, auth=self._auth, timeout=TIMEOUT, retry=_retry(), lazy=True)

    def installation_token(self, installation_id: int) -> str:
        """A token of the installation, minted once and reused until 5 minutes before it expires.

        Raises UnknownObjectException (404: the App is not installed there any more),
        GithubException (403: suspended) or AppUnavailable.
        """
        cached = self._tokens.get(installation_id)
        if cached is not None and cached.renew_at > time.monotonic():
            return cached.token
        with self._lock_for(installation_id):  # one mint per installation, not one per thread
            cached = self._tokens.get(installation_id)
            if cached is not None and cached.renew_at > time.monotonic():
                return cached.token
            minted = self._mint(installation_id)
            self._tokens[installation_id] = minted
            return minted.token

    def forget(self, installation_id: int) -> None:
        """Drop a cached token (the installation was removed or suspended)."""
        self._tokens.pop(installation_id, None)

    def repository_installation(self, full_name: str) -> tuple[int, int] | None:
        """(installation id, GitHub's numeric repository id), or None when the App is not
        installed on the repository (GitHub answers 404). Raises AppUnavailable."""
        owner, _, name = full_name.partition("/")
        integration = GithubIntegration(
            base_url=self.api_url, auth=self._auth, timeout=TIMEOUT, retry=_retry(), lazy=True
        )
        try:
            installation_id = int(integration.get_repo_installation(owner, name).id)
            client = Github(
                base_url=self.api_url,
                auth=Auth.Token(self.installation_token(installation_id)),
                timeout=TIMEOUT,
                retry=_retry(),
            )
            try:
                repository_id = int(client.get_repo(full_name).id)
            finally:
                client.close()
        except UnknownObjectException:
            return None
        except GithubException as error:
            raise AppUnavailable(f"GitHub answered {error.status} about the App on {full_name}") from None
        except OSError as error:
            raise AppUnavailable(f"GitHub unreachable ({type(error).__name__})") from None
        finally:
            integration.close()
        return installation_id, repository_id

    def _lock_for(self, installation_id: int) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(installation_id, threading.Lock())

    def _mint(self, installation_id: int) -> _Minted:
        integration = GithubIntegration(
            base_url=self.api_url, auth=self._auth, timeout=TIMEOUT, retry=_retry()
        )
        try:
            granted = integration.get_access_token(installation_id)
            token, expires_at = granted.token, granted.expires_at
        except UnknownObjectException:
            self.forget(installation_id)
            raise
        except GithubException as error:
            if error.status in (401, 403, 404, 422):
                raise
            raise AppUnavailable(
                f"GitHub answered {error.status} to an installation token for {installation_id}"
            ) from None
        except OSError as error:
            raise AppUnavailable(f"GitHub unreachable ({type(error).__name__})") from None
        finally:
            integration.close()
        left = (
            expires_at.replace(tzinfo=expires_at.tzinfo or dt.UTC) - dt.datetime.now(dt.UTC)
        ).total_seconds()
        return _Minted(token, time.monotonic() + max(0.0, left - REFRESH_MARGIN))
