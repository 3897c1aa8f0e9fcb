"""The FirecREST gateway: the only module that knows HTTP details.

It builds the pyfirecrest v2 client with client-credentials auth and wraps
every call in one retry policy (stamina): transport errors, timeouts, 408 and
5xx back off exponentially with jitter; 429 waits for `Retry-After`; a 401
for an expiring token re-authenticates once. Everything else becomes an
`ApiError` carrying the server's message, for the caller to judge. A 503
saying a service "is unhealthy" is the server's own health check speaking,
so it is not retried (`ServiceUnhealthy`). Misconfigured URLs fail at once
as configuration errors, and stamina's own log lines are switched off: the
runner's one-line notes say what is being retried.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx
import requests
import stamina
import stamina.instrumentation
from firecrest import ClientCredentialsAuth
from firecrest.FirecrestException import (
    ClientsCredentialsException,
    FirecrestException,
    MultipartUploadException,
)
from firecrest.v2 import ExternalDownload, ExternalUpload, Firecrest

from ci_runner.errors import InfrastructureError, ServiceUnhealthy, UsageError
from ci_runner.redact import public_url

T = TypeVar("T")

#: Statuses that mean "the server or a proxy had a bad moment": worth a retry.
TRANSIENT_STATUSES = frozenset({408, 500, 502, 503, 504})
#: The real v2 server refuses tokens with less than 30 s left (its `min_token_ttl`).
SERVER_MIN_TOKEN_TTL = 30.0
#: Renew an ordinary token this long before it expires; see `renewal_margin` for short ones.
MIN_TOKEN_VALIDITY = 60.0
#: Longest `Retry-After` the runner honours before it just retries.
MAX_RETRY_AFTER = 30.0

ENV_URL = "FIRECREST_URL"
ENV_TOKEN_URL = "AUTH_TOKEN_URL"  # noqa: S105 - a variable name
ENV_CLIENT_ID = "FIRECREST_CLIENT_ID"
ENV_CLIENT_SECRET = "FIRECREST_CLIENT_SECRET"  # noqa: S105 - a variable name, not a secret
CREDENTIAL_ENV = (ENV_URL, ENV_TOKEN_URL, ENV_CLIENT_ID, ENV_CLIENT_SECRET)
_URL_EXAMPLES = {
    ENV_URL: "https://api.example.org/firecrest/v2",
    ENV_TOKEN_URL: "https://auth.example.org/realms/r/protocol/openid-connect/token",
}
#: Transport errors that no retry can fix: the URL itself is wrong.
_BAD_URL_ERRORS = (
    httpx.UnsupportedProtocol,
    httpx.InvalidURL,
    requests.exceptions.MissingSchema,
    requests.exceptions.InvalidSchema,
    requests.exceptions.InvalidURL,
)


def renewal_margin(lifetime: float) -> float:
    """Seconds before expiry to renew a token that lives `lifetime` seconds.

    60 s for ordinary tokens. A short-lived token (60 s or less) would be
    renewed before every request with a fixed 60 s, so the margin shrinks
    with the lifetime, staying at least 5 s above the server's 30 s floor.
    """
    spare = max(lifetime - SERVER_MIN_TOKEN_TTL, 0.0)
    return min(MIN_TOKEN_VALIDITY, SERVER_MIN_TOKEN_TTL + max(5.0, spare / 2))


def _check_url(name: str, value: str) -> None:
    """An http(s) URL with a host, or a configuration error naming the variable."""
    try:
        parts = httpx.URL(value)
        ok = parts.scheme in ("http", "https") and bool(parts.host)
    except (httpx.InvalidURL, ValueError):
        ok = False
    if not ok:
        raise UsageError(
            f"{name} is {public_url(value)!r}, which is not an http(s) URL with a host; "
            f"it should look like {_URL_EXAMPLES[name]}"
        )


@dataclass(frozen=True)
class Credentials:
    """Where FirecREST is and how to get a token; the secret never prints."""

    firecrest_url: str
    token_url: str
    client_id: str
    client_secret: str = field(repr=False)

    @classmethod
    def from_values(cls, values: dict[str, str | None]) -> Credentials:
        """Build from the four env names; names every missing one in the error."""
        missing = [name for name in CREDENTIAL_ENV if not (values.get(name) or "").strip()]
        if missing:
            raise UsageError(
                "missing FirecREST credentials: set "
                + ", ".join(missing)
                + " (environment variables, or the Action's inputs)"
            )
        for name in (ENV_URL, ENV_TOKEN_URL):
            _check_url(name, str(values[name]).strip())
        return cls(
            firecrest_url=str(values[ENV_URL]).strip(),
            token_url=str(values[ENV_TOKEN_URL]).strip(),
            client_id=str(values[ENV_CLIENT_ID]).strip(),
            client_secret=str(values[ENV_CLIENT_SECRET]).strip(),
        )

    @classmethod
    def from_env(cls) -> Credentials:
        return cls.from_values({name: os.environ.get(name) for name in CREDENTIAL_ENV})


class ApiError(Exception):
    """A definite, non-transient answer from FirecREST (4xx, or a 5xx judged final)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.message = message


class StagingError(Exception):
    """The S3 staging area of a transfer refused a part, the completion or the download."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"{status}: {detail}" if status else detail)
        self.status = status
        #: S3 asks for a retry with 5xx (SlowDown, InternalError), 408 and 429.
        self.transient = status in TRANSIENT_STATUSES or status == 429


def _staging_error(exc: Exception) -> StagingError:
    """pyfirecrest's view of an S3 failure as a StagingError, without the presigned URLs."""
    if isinstance(exc, httpx.HTTPStatusError):
        return StagingError(exc.response.status_code, exc.response.reason_phrase)
    detail = str(getattr(exc, "_msg", "") or "the staging area refused the transfer")
    status = re.search(r": (\d{3}): ", detail)
    code = re.search(r"<Code>([^<]{1,80})</Code>", detail)
    text = detail.split(": ", 1)[0] + (f" ({code.group(1)})" if code else "")
    return StagingError(int(status.group(1)) if status else 0, text)


def _reached_server(error: ApiError) -> bool:
    """Final unless the request was certainly not acted on: a failed connect, or 503 (unavailable)."""
    unsent = error.status == 0 and error.message in ("ConnectError", "ConnectTimeout")
    return not (unsent or error.status == 503)


def _missing_is_404(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """pyfirecrest's download turns the stat's 404 into FileNotFoundError; keep it an answer."""
    try:
        return fn(*args, **kwargs)
    except FileNotFoundError as exc:
        raise ApiError(404, str(exc)) from None


class _TokenAuth(ClientCredentialsAuth):
    """Client-credentials auth that reports each new token, so it can be masked."""

    def __init__(self, creds: Credentials, on_token: Callable[[str], None]) -> None:
        super().__init__(
            creds.client_id,
            creds.client_secret,
            creds.token_url,
            min_token_validity=int(MIN_TOKEN_VALIDITY),
        )
        self._on_token = on_token
        self._last_token: str | None = None
        self.disable_client_logging = True

    def get_access_token(self) -> str:
        fetched_at = time.time()
        try:
            token: str = super().get_access_token()
        except (KeyError, TypeError, ValueError):
            raise UsageError(
                f"the token endpoint {public_url(self._token_uri)} answered without an access token; "
                f"check {ENV_TOKEN_URL}: it should be the identity provider's token URL, "
                f"like {_URL_EXAMPLES[ENV_TOKEN_URL]}"
            ) from None
        if token != self._last_token:
            self._last_token = token
            self._on_token(token)
            if self._token_expiration_ts:
                self._min_token_validity = renewal_margin(self._token_expiration_ts - fetched_at)
        return token

    def invalidate(self) -> None:
        """Forget the cached token so the next request fetches a fresh one."""
        self._access_token = None
        self._token_expiration_ts = None


def _status_and_message(exc: FirecrestException) -> tuple[int, str]:
    response = exc.responses[-1]
    try:
        body = response.json()
    except (json.JSONDecodeError, ValueError):
        body = None
    if isinstance(body, dict):
        message = body.get("message") or body.get("error_description") or body.get("error")
        if message:
            return response.status_code, str(message).strip()
    text = (getattr(response, "text", "") or "").strip()
    return response.status_code, text[:300] or response.reason_phrase


def _retry_after(exc: FirecrestException) -> float:
    header = exc.responses[-1].headers.get("Retry-After", "1")
    try:
        return min(max(float(header), 0.0), MAX_RETRY_AFTER)
    except ValueError:
        return 1.0


def is_unhealthy(status: int, message: str) -> bool:
    """A 503 from FirecREST's own availability check ("The scheduler service ... is unhealthy.")."""
    return status == 503 and "is unhealthy" in message


class Gateway:
    """pyfirecrest behind one retry policy, with errors the runner can explain."""

    def __init__(
        self,
        creds: Credentials,
        *,
        request_timeout: float = 30.0,
        retry_timeout: float = 120.0,
        on_token: Callable[[str], None] = lambda _token: None,
        on_retry: Callable[[str], None] = lambda _msg: None,
    ) -> None:
        self.creds = creds
        self.retry_timeout = retry_timeout
        self._on_retry = on_retry
        #: FirecREST requests made (token requests excluded): the poll budget's meter.
        self.requests = 0
        self._auth = _TokenAuth(creds, on_token)
        self._auth.timeout = request_timeout
        self.client = Firecrest(firecrest_url=creds.firecrest_url, authorization=self._auth)
        self.client.timeout = request_timeout
        # 429 is handled by our retry policy, with a cap on Retry-After.
        self.client.num_retries_rate_limit = 0
        self.client.disable_client_logging = True
        # stamina would log a WARNING per retry; `on_retry` gives the user one line instead.
        stamina.instrumentation.set_on_retry_hooks([])

    # -- the retry policy ---------------------------------------------------

    def call(
        self,
        what: str,
        fn: Callable[..., T],
        *args: Any,
        final: Callable[[ApiError], bool] = lambda _e: False,
        retry_timeout: float | None = None,
        **kwargs: Any,
    ) -> T:
        """Run one pyfirecrest call under the retry policy.

        `what` names the operation for messages ("reading job 12"). `final`
        marks errors that look transient but are real answers (the 500 the
        real server gives when cancelling a finished job).
        """
        reauthenticated = False
        budget = retry_timeout or self.retry_timeout

        def backoff(exc: Exception) -> bool | float:
            nonlocal reauthenticated
            if isinstance(exc, _BAD_URL_ERRORS):
                return False
            if isinstance(exc, requests.RequestException):
                self._on_retry(f"the token endpoint is unreachable ({type(exc).__name__}); retrying")
                return True
            if isinstance(exc, httpx.TransportError):
                if final(ApiError(0, type(exc).__name__)):
                    return False
                self._on_retry(f"FirecREST unreachable while {what} ({type(exc).__name__}); retrying")
                return True
            if isinstance(exc, StagingError):
                if exc.transient:
                    self._on_retry(f"the staging area answered {exc.status} while {what}; retrying")
                return exc.transient
            if not isinstance(exc, FirecrestException):
                return False
            status, message = _status_and_message(exc)
            if isinstance(exc, ClientsCredentialsException):
                if status in TRANSIENT_STATUSES or status == 429:
                    self._on_retry(f"token endpoint answered {status}; retrying")
                    return True
                return False
            if status == 401 and not reauthenticated:
                reauthenticated = True
                self._auth.invalidate()
                self._on_retry(f"FirecREST refused the token ({message}); fetching a new one")
                return 0.0
            if status == 429:
                wait = _retry_after(exc)
                self._on_retry(f"FirecREST is rate limiting ({what}); waiting {wait:g} s")
                return wait
            if is_unhealthy(status, message):
                return False
            if status in TRANSIENT_STATUSES and not final(ApiError(status, message)):
                self._on_retry(f"FirecREST answered {status} while {what}; retrying")
                return True
            return False

        token_url = public_url(self.creds.token_url)
        try:
            for attempt in stamina.retry_context(
                on=backoff,
                attempts=None,
                timeout=budget,
                wait_initial=0.5,
                wait_max=10.0,
                wait_jitter=0.5,
            ):
                with attempt:
                    self.requests += 1
                    return fn(*args, **kwargs)
        except ClientsCredentialsException as exc:
            status, message = _status_and_message(exc)
            if status in TRANSIENT_STATUSES or status == 429:
                raise InfrastructureError(
                    f"the token endpoint {token_url} kept failing ({status}: {message})"
                ) from None
            if status in (404, 405):
                raise UsageError(
                    f"the token endpoint {token_url} does not exist ({status}: {message}); "
                    f"check {ENV_TOKEN_URL}: it should be the identity provider's token URL, "
                    f"like {_URL_EXAMPLES[ENV_TOKEN_URL]}"
                ) from None
            raise UsageError(
                f"the token endpoint {token_url} refused the client credentials "
                f"({status}: {message}); check the client id and secret"
            ) from None
        except FirecrestException as exc:
            status, message = _status_and_message(exc)
            if is_unhealthy(status, message):
                raise ServiceUnhealthy(
                    f"FirecREST answered 503 while {what}: {message} "
                    "(its own health check, so the runner does not retry)"
                ) from None
            if (status in TRANSIENT_STATUSES or status == 429) and not final(ApiError(status, message)):
                raise InfrastructureError(
                    f"FirecREST kept failing while {what} ({status}: {message}); gave up after {budget:g} s"
                ) from None
            if status == 401:
                raise UsageError(
                    f"FirecREST refused the access token while {what} ({message}); "
                    "check the client's permissions"
                ) from None
            raise ApiError(status, message) from None
        except StagingError as exc:
            raise InfrastructureError(f"the centre's staging area (S3) failed while {what}: {exc}") from None
        except _BAD_URL_ERRORS as exc:
            raise UsageError(
                f"cannot use the FirecREST or token URL ({type(exc).__name__}: {exc}); "
                f"check {ENV_URL} and {ENV_TOKEN_URL}"
            ) from None
        except requests.RequestException as exc:
            raise InfrastructureError(
                f"the token endpoint {token_url} is unreachable ({type(exc).__name__}); "
                f"gave up after {budget:g} s (--retry-timeout, FIRECREST_CI_RETRY_TIMEOUT)"
            ) from None
        except httpx.TransportError as exc:
            raise InfrastructureError(
                f"FirecREST at {public_url(self.creds.firecrest_url)} is unreachable while {what} "
                f"({type(exc).__name__}); gave up after {budget:g} s "
                "(--retry-timeout, FIRECREST_CI_RETRY_TIMEOUT)"
            ) from None
        raise AssertionError("unreachable: stamina either returns or raises")

    # -- typed operations -------------------------------------------------------

    def systems(self) -> list[dict[str, Any]]:
        return self.call("listing systems", self.client.systems)

    def userinfo(self, system: str) -> dict[str, Any]:
        return self.call(f"reading user info on {system}", self.client.userinfo, system)

    def mkdir(self, system: str, path: str) -> None:
        self.call(f"creating {path}", self.client.mkdir, system, path, create_parents=True)

    # -- transfers: transfers.py picks the path, pyfirecrest speaks HTTP ----------------------

    def _pin_path(self, *, staged: bool) -> None:
        """pyfirecrest stages at or above `MAX_DIRECT_UPLOAD_SIZE`: pin it to the caller's choice."""
        self.client.MAX_DIRECT_UPLOAD_SIZE = 0 if staged else sys.maxsize

    def upload(self, system: str, local: str, directory: str, filename: str) -> None:
        """`ops/upload` of a local file; a retry just writes it again."""

        def send() -> None:
            self._pin_path(staged=False)
            self.client.upload(system, local, directory, filename)

        self.call(f"uploading {filename}", send)

    def download(self, system: str, source: str, target: str) -> None:
        """`ops/download` into the local file `target`."""

        def fetch() -> None:
            self._pin_path(staged=False)
            _missing_is_404(self.client.download, system, source, target)

        self.call(f"downloading {source}", fetch)

    def stat(self, system: str, path: str, *, dereference: bool = False) -> dict[str, Any]:
        return self.call(f"reading the status of {path}", self.client.stat, system, path, dereference)

    def start_upload(
        self, system: str, local: str, directory: str, filename: str, account: str | None
    ) -> ExternalUpload:
        """`POST transfer/upload`: part URLs and a transfer job, nothing sent yet.

        Never re-POSTed once it may have reached the server: a lost answer may
        hide a transfer job that the runner could not name, let alone cancel.
        """

        def start() -> ExternalUpload:
            self._pin_path(staged=True)
            started: ExternalUpload = self.client.upload(
                system, local, directory, filename, account=account, blocking=False
            )
            return started

        return self.call(f"starting the staged upload of {filename}", start, final=_reached_server)

    def send_parts(self, transfer: ExternalUpload, what: str) -> None:
        """PUT every part to its presigned URL, then complete; parts simply overwrite on a retry."""

        def send() -> None:
            # pyfirecrest collects the parts' ETags across calls; a retry starts a fresh list.
            tags = getattr(transfer, "_all_tags", None)
            if isinstance(tags, list):
                tags.clear()
            try:
                transfer.upload_file_to_stage()  # type: ignore[no-untyped-call]
            except (MultipartUploadException, httpx.HTTPStatusError) as exc:
                raise _staging_error(exc) from None

        self.call(f"sending {what} to the staging area", send)

    def start_download(self, system: str, source: str, target: str, account: str | None) -> ExternalDownload:
        """`POST transfer/download`: a transfer job that moves the file to S3 (see `start_upload`)."""

        def start() -> ExternalDownload:
            self._pin_path(staged=True)
            started: ExternalDownload = _missing_is_404(
                self.client.download, system, source, target, account=account, blocking=False
            )
            return started

        return self.call(f"starting the staged download of {source}", start, final=_reached_server)

    def fetch_staged(self, transfer: ExternalDownload, what: str) -> None:
        """GET the staged object into the target file given to `start_download`."""

        def fetch() -> None:
            try:
                transfer.download_file_from_stage()  # type: ignore[no-untyped-call]
            except httpx.HTTPStatusError as exc:
                raise _staging_error(exc) from None

        self.call(f"fetching {what} from the staging area", fetch)

    def list_dir(self, system: str, path: str) -> list[dict[str, Any]]:
        return self.call(f"listing {path}", self.client.list_files, system, path, show_hidden=True)

    def chmod(self, system: str, path: str, mode: str) -> None:
        self.call(f"setting the mode of {path}", self.client.chmod, system, path, mode)

    def rm(self, system: str, path: str) -> None:
        self.call(f"removing {path}", self.client.rm, system, path)

    def submit(self, system: str, **kwargs: Any) -> dict[str, Any]:
        """One POST, no retry: a lost answer may hide a created job (see submit.py).

        Transport failures come back as `ApiError` with status 0.
        """
        self.call("authenticating", self._auth.get_access_token)
        self.requests += 1
        try:
            answer: dict[str, Any] = self.client.submit(system, **kwargs)
            return answer
        except FirecrestException as exc:
            status, message = _status_and_message(exc)
            if status == 401:
                self._auth.invalidate()
            raise ApiError(status, message) from None
        except (httpx.TransportError, requests.RequestException) as exc:
            raise ApiError(0, f"no answer ({type(exc).__name__})") from None

    def job_info(self, system: str, job_id: str) -> list[dict[str, Any]]:
        return self.call(f"reading job {job_id}", self.client.job_info, system, job_id)

    def jobs(self, system: str) -> list[dict[str, Any]]:
        return self.call("listing jobs", self.client.job_info, system)

    def job_metadata(self, system: str, job_id: str) -> list[dict[str, Any]]:
        return self.call(f"reading job {job_id} metadata", self.client.job_metadata, system, job_id)

    def cancel_job(self, system: str, job_id: str, *, within: float | None = None) -> None:
        """Cancel; the real server's 500 for an already finished job is an answer, not a fault."""
        self.call(
            f"cancelling job {job_id}",
            self.client.cancel_job,
            system,
            job_id,
            final=lambda e: "scancel" in e.message or "Kill job error" in e.message,
            retry_timeout=within,
        )

    def tail_from(self, system: str, path: str, offset: int, *, retry_timeout: float | None = None) -> str:
        """The file's content after byte `offset` (`tail -c +offset+1`)."""
        output = self.call(
            f"reading {path}",
            self.client.tail,
            system,
            path,
            num_bytes=offset + 1,
            exclude_beginning=True,
            retry_timeout=retry_timeout,
        )
        return str(output.get("content", "")) if isinstance(output, dict) else str(output)

    def head_bytes(
        self, system: str, path: str, num_bytes: int, *, retry_timeout: float | None = None
    ) -> str:
        """The first `num_bytes` of a file (`head -c`), for a log too big to read whole."""
        output = self.call(
            f"reading {path}",
            self.client.head,
            system,
            path,
            num_bytes=num_bytes,
            retry_timeout=retry_timeout,
        )
        return str(output.get("content", "")) if isinstance(output, dict) else str(output)

    def file_size(self, system: str, path: str, *, retry_timeout: float | None = None) -> int:
        """The file's size in bytes (`stat`), to window a log that outgrew one read."""
        output = self.call(f"reading {path}", self.client.stat, system, path, retry_timeout=retry_timeout)
        return int(output["size"])

    def tail_bytes(self, system: str, path: str, num_bytes: int) -> str:
        """The last `num_bytes` of a file, for the final summary."""
        output = self.call(f"reading {path}", self.client.tail, system, path, num_bytes=num_bytes)
        return str(output.get("content", "")) if isinstance(output, dict) else str(output)

    def close(self) -> None:
        self.client.close_session()
