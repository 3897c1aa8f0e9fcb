"""The Bitbucket Cloud REST API 2.0 calls the service makes, with `requests` and a urllib3 Retry.

Auth is a bearer token: a repository or workspace access token (the registration's
notification token). Two kinds of client:

- bounded, for what a web worker waits on (short SHAs made full, a comment's pull request pinned):
  PIN_TIMEOUT a try, one retry on 5xx, no Retry-After waits. A 404 is a final answer
  (PullRequestGone, CommitNotFound); anything else means "redeliver later" (PinUnavailable).
- the reporter's, for build statuses and comments: reads retried on 5xx and 429 (Retry-After
  honoured up to RETRY_AFTER_CAP, so `max_seconds` holds), a POST never retried once it may have
  reached Bitbucket (only connection failures are); a lost answer is settled by `posted`.

No error text ever holds the token: only status codes, Bitbucket's own message (with the token
cut out should it echo it) and exception type names.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any, NamedTuple
from urllib.parse import quote

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import NewConnectionError
from urllib3.exceptions import TimeoutError as Urllib3Timeout
from urllib3.util.retry import Retry

from middleware.sources.base import PinUnavailable, PullRequestGone, ReportFailed, Status

DEFAULT_API_URL = "https://api.bitbucket.org/2.0"
DEFAULT_WEB_URL = "https://bitbucket.org"
#: Seconds to connect and between bytes of the answer, per try; two tries at most.
PIN_TIMEOUT = 4
PIN_RETRIES = 1
#: A status key's limit (Bitbucket answers 400 "key: Ensure this value has at most 40 characters").
MAX_KEY = 40
MAX_DESCRIPTION = 255
MAX_NAME = 255
#: The longest Retry-After the reporter waits; a longer one is cut to this.
RETRY_AFTER_CAP = 5.0
STATES = {"pending": "INPROGRESS", "success": "SUCCESSFUL", "failure": "FAILED", "error": "FAILED"}

_FULL_SHA = re.compile(r"[0-9a-f]{40}")
_HASH = re.compile(r"[0-9a-f]{4,40}")
_FULL_NAME = re.compile(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+")
_KEY = re.compile(r"[A-Za-z0-9._-]{1,40}")


class CommitNotFound(PullRequestGone):
    """Bitbucket says there is no such commit in the repository (or the token cannot see it): final."""


class PullRequestHead(NamedTuple):
    """What `pin` reads: a pull request's head, where it comes from, and where it goes."""

    sha: str
    base_ref: str
    #: The source repository's full name (a fork's differs from the destination); None once the
    #: fork is deleted.
    source_repository: str | None
    source_branch: str


class _CappedRetry(Retry):
    """Retry-After honoured, but never longer than RETRY_AFTER_CAP: the caller's bound holds."""

    def get_retry_after(self, response: Any) -> float | None:
        wait = super().get_retry_after(response)
        return None if wait is None else min(wait, RETRY_AFTER_CAP)


def is_full_name(name: str) -> bool:
    """`workspace/slug` in the characters Bitbucket allows, and no `.` or `..` a URL would resolve."""
    return _FULL_NAME.fullmatch(name) is not None and all(set(part) != {"."} for part in name.split("/"))


def repository_path(repository: str) -> str:
    """`/repositories/{workspace}/{slug}`, for a name that can only be one repository."""
    if not is_full_name(repository):
        raise ValueError(f"{repository[:200]!r} is not a Bitbucket workspace/slug")
    workspace, slug = repository.split("/")
    return f"/repositories/{quote(workspace, safe='')}/{quote(slug, safe='')}"


def _session(token: str, retry: Retry) -> requests.Session:
    session = requests.Session()
    session.trust_env = False  # no proxies or .netrc credentials picked up from the environment
    adapter = HTTPAdapter(max_retries=retry)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    session.headers.update({"Authorization": f"Bearer {token}", "Accept": "application/json"})
    return session


def _bounded_session(token: str) -> requests.Session:
    return _session(
        token,
        Retry(
            total=PIN_RETRIES,
            backoff_factor=0.5,  # urllib3 waits nothing before the first retry
            status_forcelist=(500, 502, 503, 504),
            allowed_methods=frozenset({"GET"}),
            respect_retry_after_header=False,
            raise_on_status=False,
        ),
    )


def _why(error: requests.RequestException) -> str:
    """What went wrong, in a few words, never the exception's text: requests reports a read timeout
    after the retries as a ConnectionError, and urllib3's refused connection is a kind of timeout."""
    reason = getattr(error.args[0], "reason", None) if error.args else None
    if isinstance(reason, NewConnectionError):
        return "cannot connect"
    if isinstance(error, requests.Timeout) or isinstance(reason, Urllib3Timeout):
        return "timed out"
    return type(reason if isinstance(reason, Exception) else error).__name__


def _message(response: requests.Response, token: str) -> str:
    """Bitbucket's own words from its error body (`{"type": "error", "error": {"message"}}`)."""
    try:
        body = response.json()
    except ValueError:
        return ""
    error = body.get("error") if isinstance(body, dict) else None
    message = error.get("message") if isinstance(error, dict) else None
    if not isinstance(message, str) or not message.strip():
        return ""
    text = " ".join(message.split())[:200]
    if token:
        text = text.replace(token, "***")
    return f": {text}"


def _json(response: requests.Response) -> dict[str, Any] | None:
    try:
        body = response.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def _bounded_get(
    api_url: str, token: str, path: str, what: str, missing: tuple[int, ...] = (404,)
) -> requests.Response:
    """One bounded GET; the `missing` statuses are left to the caller, other failures are
    PinUnavailable."""
    with _bounded_session(token) as session:
        try:
            response = session.get(api_url.rstrip("/") + path, timeout=PIN_TIMEOUT, allow_redirects=False)
        except requests.RequestException as error:
            raise PinUnavailable(f"Bitbucket unreachable for {what} ({_why(error)})") from None
    if response.status_code != 200 and response.status_code not in missing:
        raise PinUnavailable(
            f"Bitbucket answered {response.status_code} for {what}{_message(response, token)}"
        )
    return response


def _lookup_commit(
    api_url: str, token: str, repository: str, short_hash: str, missing: tuple[int, ...] = (404,)
) -> str | None:
    """The full SHA of `short_hash` in `repository`, or None when Bitbucket answers a `missing` status."""
    what = f"commit {short_hash[:12]} of {repository}"
    path = f"{repository_path(repository)}/commit/{short_hash}"
    response = _bounded_get(api_url, token, path, what, missing)
    if response.status_code in missing:
        return None
    body = _json(response)
    full = body.get("hash") if body is not None else None
    if not isinstance(full, str) or not _FULL_SHA.fullmatch(full) or not full.startswith(short_hash):
        raise PinUnavailable(f"Bitbucket answered an unexpected commit for {what}")
    return full


def resolve_commit(
    api_url: str, token: str, repository: str, short_hash: str, *, also_in: str | None = None
) -> str:
    """The full 40-hex SHA of a commit Bitbucket named by a short hash.

    `also_in`: a second repository to ask when the first has no such commit (a pull request's
    fork, whose commits the destination may not hold). A fork the token may not read (401, 403)
    is final too: the mirror could not fetch from it either. Raises CommitNotFound or
    PinUnavailable.
    """
    if not _HASH.fullmatch(short_hash):
        raise ValueError(f"{short_hash[:50]!r} is not a commit hash (4 to 40 lowercase hex digits)")
    full = _lookup_commit(api_url, token, repository, short_hash)
    if full is None and also_in is not None and also_in.lower() != repository.lower():
        full = _lookup_commit(api_url, token, also_in, short_hash, missing=(401, 403, 404))
    if full is None:
        where = (
            repository
            if also_in is None or also_in.lower() == repository.lower()
            else f"{repository} or {also_in}"
        )
        raise CommitNotFound(
            f"commit {short_hash[:12]} not found in {where} (gone, or not visible to the repository's "
            "notification token)"
        )
    return full


def pull_request(api_url: str, token: str, repository: str, pr_id: int) -> dict[str, Any]:
    """The pull request as Bitbucket returns it (bounded); raises PullRequestGone or PinUnavailable."""
    what = f"pull request #{pr_id} of {repository}"
    response = _bounded_get(api_url, token, f"{repository_path(repository)}/pullrequests/{int(pr_id)}", what)
    if response.status_code == 404:
        raise PullRequestGone(
            f"pull request #{pr_id} not found in {repository} (deleted, or not visible to the "
            "repository's notification token)"
        )
    body = _json(response)
    if body is None:
        raise PinUnavailable(f"Bitbucket answered something other than a JSON object for {what}")
    return body


def _field(data: Any, path: str) -> Any:
    for part in path.split("."):
        data = data.get(part) if isinstance(data, dict) else None
    return data


def head_of(body: dict[str, Any], repository: str, pr_id: int) -> tuple[str, str, str | None, str]:
    """(short head hash, destination branch, source repository or None, source branch) of a pull
    request body; PinUnavailable when Bitbucket's answer lacks them."""
    short = _field(body, "source.commit.hash")
    base_ref = _field(body, "destination.branch.name")
    source_branch = _field(body, "source.branch.name")
    source_repository = _field(body, "source.repository.full_name")
    if (
        not isinstance(short, str)
        or not _HASH.fullmatch(short)
        or not isinstance(base_ref, str)
        or not base_ref
        or not isinstance(source_branch, str)
        or not source_branch
        or (source_repository is not None and not isinstance(source_repository, str))
    ):
        raise PinUnavailable(f"Bitbucket's answer for pull request #{pr_id} of {repository} lacks its head")
    if isinstance(source_repository, str) and not is_full_name(source_repository):
        raise PinUnavailable(f"Bitbucket named an odd source repository for pull request #{pr_id}")
    return short, base_ref, source_repository, source_branch


def pin(api_url: str, token: str, repository: str, pr_id: int) -> PullRequestHead:
    """The pull request's head, read now (its full SHA: the pull request holds a short one).

    Two or three bounded GETs: the pull request, then its head commit in the destination and,
    for a fork whose commit the destination lacks, in the fork.
    """
    short, base_ref, source_repository, source_branch = head_of(
        pull_request(api_url, token, repository, pr_id), repository, pr_id
    )
    sha = resolve_commit(api_url, token, repository, short, also_in=source_repository)
    return PullRequestHead(sha, base_ref, source_repository, source_branch)


# -- reporting ----------------------------------------------------------------------------------


def status_key(context: str) -> str:
    """Bitbucket's status key for a context: the context itself when short and plain, otherwise a
    readable stem and a hash of the whole, so that each context keeps its own key (one status per
    pipeline) and the key never changes between posts."""
    if _KEY.fullmatch(context):
        return context
    digest = hashlib.sha256(context.encode("utf-8", "surrogatepass")).hexdigest()[:12]
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", context)[: MAX_KEY - len(digest) - 1]
    return f"{stem}-{digest}"


def describe(text: str, limit: int = MAX_DESCRIPTION) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


class BitbucketReporter:
    """Build statuses and pull request comments on Bitbucket Cloud."""

    def __init__(
        self,
        api_url: str = DEFAULT_API_URL,
        timeout: int = 10,
        *,
        web_url: str = DEFAULT_WEB_URL,
        tries: int = 3,
        backoff: float = 0.5,
    ) -> None:
        if tries < 1:
            raise ValueError("tries must be at least 1")
        self.api_url = api_url.rstrip("/")
        self.web_url = web_url.rstrip("/")
        self._timeout = timeout
        #: The longest one post or one look-up can take, every try and pause included (connect and
        #: read timeouts a try, and each pause at most the longer of the backoff and the cap).
        self.max_seconds: float = tries * 2 * timeout + (tries - 1) * max(backoff * 2**tries, RETRY_AFTER_CAP)
        self._retry = _CappedRetry(
            total=tries - 1,
            backoff_factor=backoff,
            status_forcelist=(429, 500, 502, 503, 504),
            allowed_methods=frozenset({"GET", "HEAD"}),
            respect_retry_after_header=True,
            raise_on_status=False,
        )

    def target_url(self, repository: str, sha: str, status: Status) -> str:
        # Bitbucket refuses a build status without a url, and a run's first status (pending, before
        # its GitLab pipeline exists) has none: it then links to the commit on Bitbucket itself.
        return status.url or f"{self.web_url}/{repository}/commits/{sha}"

    def post(self, token: str, repository: str, sha: str, status: Status) -> None:
        """Post (or, for the same key, replace) the commit's build status; raises ReportFailed."""
        state = self._state(status)
        body = {
            "key": status_key(status.context),
            "state": state,
            "name": describe(status.context, MAX_NAME),
            "url": self.target_url(repository, sha, status),
            "description": describe(status.description),
        }
        path = f"{repository_path(repository)}/commit/{self._sha(sha)}/statuses/build"
        what = f"the {status.state} status for {sha[:12]}"
        response = self._request(token, "POST", path, what, json=body)
        if response.status_code not in (200, 201):
            raise ReportFailed(
                f"Bitbucket answered {response.status_code} to {what}{_message(response, token)}"
            )

    def posted(self, token: str, repository: str, sha: str, status: Status) -> bool:
        """Whether the commit's build status under this context's key is exactly this one."""
        key = status_key(status.context)
        path = f"{repository_path(repository)}/commit/{self._sha(sha)}/statuses/build/{quote(key, safe='')}"
        what = f"the status look-up for {sha[:12]}"
        response = self._request(token, "GET", path, what)
        if response.status_code == 404:
            return False
        found = _json(response) if response.status_code == 200 else None
        if found is None:
            raise ReportFailed(
                f"Bitbucket answered {response.status_code} to {what}{_message(response, token)}"
            )
        wanted = (self._state(status), describe(status.description), self.target_url(repository, sha, status))
        return (found.get("state"), found.get("description"), found.get("url")) == wanted

    def comment(self, token: str, repository: str, number: int, body: str) -> None:
        """Comment on pull request `number`; raises ReportFailed."""
        path = f"{repository_path(repository)}/pullrequests/{int(number)}/comments"
        what = f"a comment on #{number}"
        response = self._request(token, "POST", path, what, json={"content": {"raw": body}})
        if response.status_code not in (200, 201):
            raise ReportFailed(
                f"Bitbucket answered {response.status_code} to {what}{_message(response, token)}"
            )

    @staticmethod
    def _state(status: Status) -> str:
        try:
            return STATES[status.state]
        except KeyError:
            raise ValueError(f"unknown status state {status.state!r}") from None

    @staticmethod
    def _sha(sha: str) -> str:
        if not _FULL_SHA.fullmatch(sha):
            raise ValueError(f"{sha[:50]!r} is not a full commit SHA")
        return sha

    def _request(self, token: str, method: str, path: str, what: str, **kwargs: Any) -> requests.Response:
        with _session(token, self._retry) as session:
            try:
                return session.request(
                    method, self.api_url + path, timeout=self._timeout, allow_redirects=False, **kwargs
                )
            except requests.RequestException as error:
                raise ReportFailed(f"Bitbucket unreachable for {what} ({_why(error)})") from None
