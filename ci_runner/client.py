"""The FirecREST gateway: the only module that knows HTTP details.

It builds the pyfirecrest v2 client with client-credentials auth and wraps
every call in one retry policy (stamina): transport errors, timeouts, 408 and
5xx back off exponentially with jitter; 429 waits for `Retry-After`; a 401
for an expiring token re-authenticates once. Everything else becomes an
`ApiError` carrying the server's message, for the caller to judge.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx
import requests
import stamina
from firecrest import ClientCredentialsAuth
from firecrest.FirecrestException import ClientsCredentialsException, FirecrestException
from firecrest.v2 import Firecrest

from ci_runner.errors import InfrastructureError, UsageError

T = TypeVar("T")

#: Statuses that mean "the server or a proxy had a bad moment": worth a retry.
TRANSIENT_STATUSES = frozenset({408, 500, 502, 503, 504})
#: The real v2 server refuses tokens with less than 30 s left; stay well clear.
MIN_TOKEN_VALIDITY = 60
#: Longest `Retry-After` the runner honours before it just retries.
MAX_RETRY_AFTER = 30.0

ENV_URL = "FIRECREST_URL"
ENV_TOKEN_URL = "AUTH_TOKEN_URL"  # noqa: S105 - a variable name
ENV_CLIENT_ID = "FIRECREST_CLIENT_ID"
ENV_CLIENT_SECRET = "FIRECREST_CLIENT_SECRET"  # noqa: S105 - a variable name, not a secret
CREDENTIAL_ENV = (ENV_URL, ENV_TOKEN_URL, ENV_CLIENT_ID, ENV_CLIENT_SECRET)


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


class _TokenAuth(ClientCredentialsAuth):
    """Client-credentials auth that reports each new token, so it can be masked."""

    def __init__(self, creds: Credentials, on_token: Callable[[str], None]) -> None:
        super().__init__(
            creds.client_id,
            creds.client_secret,
            creds.token_url,
            min_token_validity=MIN_TOKEN_VALIDITY,
        )
        self._on_token = on_token
        self._last_token: str | None = None
        self.disable_client_logging = True

    def get_access_token(self) -> str:
        token: str = super().get_access_token()
        if token != self._last_token:
            self._last_token = token
            self._on_token(token)
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

        def backoff(exc: Exception) -> bool | float:
            nonlocal reauthenticated
            if isinstance(exc, httpx.TransportError | requests.RequestException):
                self._on_retry(f"FirecREST unreachable while {what} ({type(exc).__name__}); retrying")
                return True
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
            if status in TRANSIENT_STATUSES and not final(ApiError(status, message)):
                self._on_retry(f"FirecREST answered {status} while {what}; retrying")
                return True
            return False

        try:
            for attempt in stamina.retry_context(
                on=backoff,
                attempts=None,
                timeout=retry_timeout or self.retry_timeout,
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
                    f"the token endpoint {self.creds.token_url} kept failing ({status}: {message})"
                ) from None
            raise UsageError(
                f"the token endpoint {self.creds.token_url} refused the client credentials "
                f"({status}: {message}); check the client id and secret"
            ) from None
        except FirecrestException as exc:
            status, message = _status_and_message(exc)
            if (status in TRANSIENT_STATUSES or status == 429) and not final(ApiError(status, message)):
                raise InfrastructureError(
                    f"FirecREST kept failing while {what} ({status}: {message}); "
                    f"gave up after {retry_timeout or self.retry_timeout:g} s"
                ) from None
            if status == 401:
                raise UsageError(
                    f"FirecREST refused the access token while {what} ({message}); "
                    "check the client's permissions"
                ) from None
            raise ApiError(status, message) from None
        except (httpx.TransportError, requests.RequestException) as exc:
            raise InfrastructureError(
                f"FirecREST at {self.creds.firecrest_url} is unreachable while {what} "
                f"({type(exc).__name__}); gave up after {self.retry_timeout:g} s"
            ) from None
        raise AssertionError("unreachable: stamina either returns or raises")

    # -- typed operations -------------------------------------------------------

    def systems(self) -> list[dict[str, Any]]:
        return self.call("listing systems", self.client.systems)

    def userinfo(self, system: str) -> dict[str, Any]:
        return self.call(f"reading user info on {system}", self.client.userinfo, system)

    def mkdir(self, system: str, path: str) -> None:
        self.call(f"creating {path}", self.client.mkdir, system, path, create_parents=True)

    def upload(self, system: str, data: bytes, directory: str, filename: str) -> None:
        import io

        self.call(
            f"uploading {filename}",
            lambda: self.client.upload(system, io.BytesIO(data), directory, filename, file_size=len(data)),
        )

    def download(self, system: str, source: str, target: str) -> None:
        self.call(f"downloading {source}", self.client.download, system, source, target)

    def list_dir(self, system: str, path: str) -> list[dict[str, Any]]:
        return self.call(f"listing {path}", self.client.list_files, system, path, show_hidden=True)

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

    def tail_from(self, system: str, path: str, offset: int) -> str:
        """The file's content after byte `offset` (`tail -c +offset+1`)."""
        output = self.call(
            f"reading {path}",
            self.client.tail,
            system,
            path,
            num_bytes=offset + 1,
            exclude_beginning=True,
        )
        return str(output.get("content", "")) if isinstance(output, dict) else str(output)

    def tail_bytes(self, system: str, path: str, num_bytes: int) -> str:
        """The last `num_bytes` of a file, for the final summary."""
        output = self.call(f"reading {path}", self.client.tail, system, path, num_bytes=num_bytes)
        return str(output.get("content", "")) if isinstance(output, dict) else str(output)

    def set_max_direct_transfer(self, size: int) -> None:
        """Use the server's `max_ops_file_size` instead of pyfirecrest's 1 MiB guess."""
        self.client.MAX_DIRECT_UPLOAD_SIZE = size

    def close(self) -> None:
        self.client.close_session()
