"""Whether the managed GitLab can be used, for the operator: `check`, a metric, the worker's log.

A GitLab that is not configured is a configuration error (the worker refuses to start, /readyz
fails, runs end `error`). One that is configured but unreachable is a transient fault that the
delivery guarantee rides out, so it never takes the web tier out of a load balancer: it shows in
`firecrest_ci_gitlab_up`, in `check` and in the worker's log instead. Messages name the URL and
the kind of failure, never the token.
"""

from __future__ import annotations

import threading
import time

import gitlab
import requests

from middleware.settings import Settings, SettingsError

#: How long one probe may take; a scrape or `check` must not hang on a GitLab that is away.
PROBE_TIMEOUT = 3.0
#: A scrape reuses a probe this recent (every gunicorn worker probes on its own).
PROBE_TTL = 30.0

NOT_CONFIGURED = "not configured: set GITLAB_URL (and GITLAB_TOKEN) to the GitLab that runs the pipelines"


def require_managed_gitlab(settings: Settings) -> None:
    """Refuse to start a web tier or a worker that could only leave runs waiting (DEMO_MODE excepted)."""
    if not settings.gitlab_url and not settings.demo_mode:
        raise SettingsError(f"managed GitLab {NOT_CONFIGURED}")


def gitlab_problem(url: str, token: str, timeout: float = PROBE_TIMEOUT) -> str | None:
    """None when GitLab answers and takes the token (`auth()`, i.e. GET /user); else why not."""
    if not url:
        return NOT_CONFIGURED
    if not token:
        return f"{url}: GITLAB_TOKEN is not set"
    client = gitlab.Gitlab(url, private_token=token, timeout=timeout, retry_transient_errors=False)
    try:
        client.auth()
    except gitlab.exceptions.GitlabAuthenticationError:
        return f"{url} refused GITLAB_TOKEN (401): is it valid, with the api scope?"
    except gitlab.exceptions.GitlabError as error:
        return f"{url} answered HTTP {error.response_code or '?'}"
    except requests.RequestException as error:
        return f"{url} is unreachable ({type(error).__name__})"
    finally:
        client.session.close()
    return None


class GitLabProbe:
    """The last probe's answer, kept PROBE_TTL seconds so scrapes do not hammer GitLab."""

    def __init__(self, url: str, token: str, ttl: float = PROBE_TTL) -> None:
        self._url, self._token, self._ttl = url, token, ttl
        self._lock = threading.Lock()
        self._at = -float("inf")
        self._problem: str | None = None

    @property
    def configured(self) -> bool:
        return bool(self._url)

    def problem(self) -> str | None:
        with self._lock:
            if time.monotonic() - self._at >= self._ttl:
                self._problem = gitlab_problem(self._url, self._token)
                self._at = time.monotonic()
            return self._problem
