"""Calls to the SOURCE GitLab (gitlab.com or self-managed) through python-gitlab: pinning a
merge request's head, commit statuses, merge request notes and user ids.

Retries are urllib3's, mounted on the client's requests session, and python-gitlab's own
are off (`retry_transient_errors=False`, `obey_rate_limit=False` on every call): python-gitlab
sleeps for whatever `Retry-After` a 5xx or 429 names, which would leave a web worker or a
reporting task waiting without bound. So every call here has a known bound:

- the bounded client (a web worker waits on it: pinning, user look-ups) tries a GET twice at
  most, PIN_TIMEOUT each to connect and to hear back, the second try at once;
- the reporter tries a read up to REPORT_TRIES times on 5xx and 429, with a short backoff, and
  sends a POST once: a status or a note is not idempotent, so only a request that never reached
  GitLab (a connect error) is sent again, and a lost answer is settled by `posted`.

Errors never carry the token: texts are built from the status code and GitLab's own message.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import urlsplit

import gitlab
import requests
from gitlab.exceptions import GitlabError
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from middleware.refs import is_sha
from middleware.sources.base import PinUnavailable, PullRequestGone, ReportFailed, Status
from middleware.sources.github.users import UnknownUser, UsersUnavailable

#: Seconds to connect and to hear back, per try, for calls a web worker waits on; two tries.
PIN_TIMEOUT = 4
PIN_TRIES = 2
#: Tries of one read by the reporter (a POST is sent once, see the module's docstring).
REPORT_TRIES = 3
BACKOFF = 0.5
#: GitLab keeps at most 255 characters of a status description.
MAX_DESCRIPTION = 255
#: How many of a commit's latest statuses a look-up reads (one page).
LOOKUP_DEPTH = 100
#: The service's status states in GitLab's words. GitLab has no `error`: it becomes `failed`,
#: and the description says it was an error.
STATES = {"pending": "pending", "success": "success", "failure": "failed", "error": "failed"}
#: What a GitLab username may be (as the registry checks it), checked before it is sent.
USERNAME = re.compile(r"[A-Za-z0-9_.][A-Za-z0-9_.-]{0,254}")

#: What the calls pass so that python-gitlab never retries or sleeps on its own.
_NO_GITLAB_RETRIES: dict[str, Any] = {"retry_transient_errors": False, "obey_rate_limit": False}


def instance_url(clone_url: str) -> str:
    """The GitLab instance's base URL (`scheme://host[:port]`) of a project's HTTP(S) clone URL.

    GitLab served under a path (`https://example.org/gitlab/...`) cannot be told apart from a
    group named `gitlab` this way; such an instance needs its URL configured instead.
    """
    try:
        parts = urlsplit(clone_url)
        port = parts.port
    except ValueError as error:
        raise ValueError(f"{clone_url!r} is not a URL GitLab could serve ({error})") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise ValueError(f"{clone_url!r} is not an http(s) clone URL: a GitLab instance needs one")
    host = parts.hostname
    if not host:
        raise ValueError(f"{clone_url!r} names no host")
    host = f"[{host}]" if ":" in host else host
    return f"{scheme}://{host}" + (f":{port}" if port is not None else "")


def _client(api_url: str, token: str, ca_file: str | None, *, timeout: float, retry: Retry) -> gitlab.Gitlab:
    session = requests.Session()
    adapter = HTTPAdapter(max_retries=retry)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return gitlab.Gitlab(
        api_url,
        private_token=token,
        ssl_verify=ca_file or True,
        timeout=timeout,
        retry_transient_errors=False,
        keep_base_url=True,
        session=session,
    )


def bounded_client(api_url: str, token: str, ca_file: str | None = None) -> gitlab.Gitlab:
    """For calls a web worker waits on: one retry of a GET on 5xx, at once, Retry-After ignored."""
    retry = Retry(
        total=PIN_TRIES - 1,
        backoff_factor=BACKOFF,  # urllib3 waits nothing before the first retry
        status_forcelist=(500, 502, 503, 504),
        allowed_methods=frozenset({"GET"}),
        respect_retry_after_header=False,
        raise_on_status=False,
    )
    return _client(api_url, token, ca_file, timeout=PIN_TIMEOUT, retry=retry)


def reporting_client(api_url: str, token: str, ca_file: str | None, timeout: float) -> gitlab.Gitlab:
    """For a worker's calls: reads retried on 5xx and 429 with backoff; a POST only on connect errors."""
    retry = Retry(
        total=REPORT_TRIES - 1,
        backoff_factor=BACKOFF,
        status_forcelist=(429, 500, 502, 503, 504),
        allowed_methods=frozenset({"GET", "HEAD"}),
        respect_retry_after_header=False,  # the bound in `max_seconds` holds
        raise_on_status=False,
    )
    return _client(api_url, token, ca_file, timeout=timeout, retry=retry)


def _said(error: GitlabError, token: str) -> str:
    """GitLab's status code and message, short and without the token."""
    message = " ".join(str(error.error_message or "").split())[:200]
    if token:
        message = message.replace(token, "***")
    code = error.response_code if error.response_code is not None else "an unreadable answer"
    return f"{code}" + (f" ({message})" if message else "")


def pin(
    api_url: str, token: str, repository: str, iid: int, ca_file: str | None = None
) -> tuple[str | None, str]:
    """The merge request's head SHA (None when it has no commits) and target branch, read now.

    One GET of the merge request in the registered (target) project, bounded; a 404 is final
    (PullRequestGone), anything else means "ask again later" (PinUnavailable).
    """
    try:
        with bounded_client(api_url, token, ca_file) as client:
            request = client.projects.get(repository, lazy=True).mergerequests.get(iid, **_NO_GITLAB_RETRIES)
            sha, target = request.attributes.get("sha"), request.attributes.get("target_branch")
    except GitlabError as error:
        if error.response_code == 404:
            raise PullRequestGone(
                f"merge request !{iid} not found in {repository} (deleted, or not visible to the "
                "repository's notification token)"
            ) from None
        raise PinUnavailable(f"GitLab answered {_said(error, token)} for merge request !{iid}") from None
    except OSError as error:  # requests' errors, TLS ones and an unreadable CA file included
        raise PinUnavailable(f"GitLab unreachable ({type(error).__name__})") from None
    if not isinstance(target, str) or not target:
        raise PinUnavailable(f"GitLab answered merge request !{iid} without a target branch")
    return (sha if isinstance(sha, str) and sha else None), target


def resolve_users(
    api_url: str, token: str, usernames: Iterable[str], ca_file: str | None = None
) -> dict[str, int]:
    """GitLab's numeric ids of `usernames` (`GET /users?username=`), to register trusted users.

    Raises UnknownUser (a name GitLab does not know, or no GitLab username at all) or
    UsersUnavailable (GitLab could not be asked now).
    """
    names = list(usernames)
    for name in names:
        if not USERNAME.fullmatch(name):
            raise UnknownUser(f"{name[:100]!r} is not a GitLab username (letters, digits, '_', '-', '.')")
    found: dict[str, int] = {}
    name = ""
    try:
        with bounded_client(api_url, token, ca_file) as client:
            for name in names:
                users = client.users.list(username=name, get_all=False, **_NO_GITLAB_RETRIES)
                match = next(
                    (u for u in users if str(u.attributes.get("username", "")).lower() == name.lower()), None
                )
                if match is None:
                    raise UnknownUser(f"GitLab has no user {name!r}")
                user_id = match.attributes.get("id")
                if isinstance(user_id, bool) or not isinstance(user_id, int) or user_id <= 0:
                    raise UsersUnavailable(f"GitLab answered an odd id for {name!r}")
                found[name] = user_id
    except GitlabError as error:
        raise UsersUnavailable(f"GitLab answered {_said(error, token)} when looking up {name!r}") from None
    except OSError as error:
        raise UsersUnavailable(f"GitLab unreachable ({type(error).__name__})") from None
    return found


def describe(state: str, text: str) -> str:
    """The description GitLab keeps: one line, 255 characters at most; an error says so."""
    text = " ".join(text.split())
    if state == "error" and not text.lower().startswith("error"):
        text = f"error: {text}" if text else "error"
    return text if len(text) <= MAX_DESCRIPTION else text[: MAX_DESCRIPTION - 1] + "…"


class GitLabReporter:
    """Commit statuses and merge request notes on the source project (implements `Reporter`).

    `api_url_for` is the instance's base URL, or a function of the repository's full path that
    gives it (one service may serve projects of several GitLab instances).
    """

    def __init__(
        self, api_url_for: Callable[[str], str] | str, ca_file: str | None = None, timeout: int = 10
    ) -> None:
        if ca_file is not None and not os.path.isfile(ca_file):
            raise ValueError(f"the CA bundle {ca_file!r} is not a readable file")
        self._api_url_for = api_url_for
        self._ca_file = ca_file
        self._timeout = timeout
        #: The longest one post or one look-up can take, every try and pause included: each try
        #: connects and hears back within `timeout` each, and the pauses add up to under BACKOFF * 2**TRIES.
        self.max_seconds: float = REPORT_TRIES * 2 * timeout + BACKOFF * 2**REPORT_TRIES

    def _api_url(self, repository: str) -> str:
        return self._api_url_for if isinstance(self._api_url_for, str) else self._api_url_for(repository)

    def _client(self, repository: str, token: str) -> gitlab.Gitlab:
        return reporting_client(self._api_url(repository), token, self._ca_file, self._timeout)

    @staticmethod
    def _wanted(sha: str, status: Status) -> dict[str, Any]:
        if status.state not in STATES:
            raise ValueError(f"unknown status state {status.state!r} (one of {', '.join(STATES)})")
        if not is_sha(sha):
            raise ValueError(f"{sha[:80]!r} is not a full commit SHA")
        data = {
            "state": STATES[status.state],
            "name": status.context,
            "description": describe(status.state, status.description),
        }
        if status.url:
            data["target_url"] = status.url
        if status.pull_request is not None:
            # A fork's commit is only under the merge request's ref in the target project; without
            # a ref GitLab looks for a branch holding the commit and answers 404.
            data["ref"] = f"refs/merge-requests/{status.pull_request}/head"
        return data

    def post(self, token: str, repository: str, sha: str, status: Status) -> None:
        """Post `status` on the commit in the source project; raises ReportFailed.

        GitLab refuses to post a state the status already holds (`pending` twice: 400 "Cannot
        transition status via :enqueue from :pending") after it has taken the new description and
        URL; that answer is settled by a look-up, not taken as a failure.
        """
        data = self._wanted(sha, status)
        try:
            with self._client(repository, token) as client:
                commit = client.projects.get(repository, lazy=True).commits.get(sha, lazy=True)
                commit.statuses.create(data, **_NO_GITLAB_RETRIES)
            return
        except GitlabError as error:
            refused = f"GitLab answered {_said(error, token)} to the {status.state} status for {sha[:12]}"
            transition = error.response_code == 400 and "Cannot transition status" in str(error.error_message)
        except OSError as error:
            raise ReportFailed(f"GitLab unreachable ({type(error).__name__})") from None
        if transition and self.posted(token, repository, sha, status):
            return
        raise ReportFailed(refused)

    def posted(self, token: str, repository: str, sha: str, status: Status) -> bool:
        """Whether this exact status is the commit's latest of its name (GitLab lists the latest)."""
        data = self._wanted(sha, status)
        wanted = (data["state"], data["name"], data["description"], data.get("target_url"))
        try:
            with self._client(repository, token) as client:
                commit = client.projects.get(repository, lazy=True).commits.get(sha, lazy=True)
                listed = commit.statuses.list(
                    name=status.context, per_page=LOOKUP_DEPTH, get_all=False, **_NO_GITLAB_RETRIES
                )
                for found in listed:
                    seen = found.attributes
                    if (
                        seen.get("status"),
                        seen.get("name"),
                        seen.get("description") or "",
                        seen.get("target_url") or None,
                    ) == wanted:
                        return True
                return False
        except GitlabError as error:
            raise ReportFailed(
                f"GitLab answered {_said(error, token)} to the status look-up for {sha[:12]}"
            ) from None
        except OSError as error:
            raise ReportFailed(f"GitLab unreachable ({type(error).__name__})") from None

    def comment(self, token: str, repository: str, number: int, body: str) -> None:
        """A note on merge request `number` (its iid); sent once, raises ReportFailed."""
        if isinstance(number, bool) or not isinstance(number, int) or number <= 0:
            raise ValueError(f"{number!r} is not a merge request number")
        try:
            with self._client(repository, token) as client:
                request = client.projects.get(repository, lazy=True).mergerequests.get(number, lazy=True)
                request.notes.create({"body": body}, **_NO_GITLAB_RETRIES)
        except GitlabError as error:
            raise ReportFailed(f"GitLab answered {_said(error, token)} to a note on !{number}") from None
        except OSError as error:
            raise ReportFailed(f"GitLab unreachable ({type(error).__name__})") from None
