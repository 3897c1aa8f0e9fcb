"""Move one file between the runner and the system, directly or staged through S3.

FirecREST v2 caps `ops/upload` and `ops/download` at the system's
`max_ops_file_size` (5 MiB unless configured). A download also travels as
base64 through an SSH read buffer of that same size, so it carries about
three quarters of it. Above the cap a centre may offer staged transfers
(`dataOperation.data_transfer`): `POST transfer/upload|download` hands out
presigned multipart S3 URLs and starts a transfer job that moves the data
between S3 and the file system. pyfirecrest switches to staging at a fixed
1 MiB, so the path is chosen here from what the server advertises, and
pyfirecrest's own pieces of the flow do the HTTP (see `Gateway`).

The transfer job is followed here rather than by pyfirecrest, so each poll
is retried on its own and a signal stops the wait at once. A staged
transfer that does not finish, for any reason (SIGINT and SIGTERM
included), cancels its job: an upload's job would otherwise wait hours for
data that never comes.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ci_runner.client import ApiError, Gateway
from ci_runner.errors import InfrastructureError, RunnerError, UsageError
from ci_runner.health import SystemInfo
from ci_runner.report import Reporter
from ci_runner.schedule import PollSchedule
from ci_runner.signals import interruptible, shielded
from ci_runner.states import base_states, is_terminal, state_text

#: The real server's default `max_ops_file_size`, for a server that does not say.
DEFAULT_MAX_OPS_FILE_SIZE = 5 * 1024 * 1024
#: Staged-transfer backends the runner drives (pyfirecrest's wormhole and streamer need extra tools).
SUPPORTED_BACKENDS = ("s3",)
#: How long a cancel may take after a signal (GitHub follows SIGINT with SIGTERM 7.5 s later).
CANCEL_WITHIN = 5.0
#: A transfer job may be missing from job info for a moment after it is created.
NOT_FOUND_GRACE = 30.0

Route = Literal["direct", "staged"]


class TransferUnavailable(RunnerError):
    """The file is above the direct limit and the server offers no staged path the runner can use."""


def human_size(size: int) -> str:
    """A size as people read it: bytes below 1 MiB, MiB with one decimal above."""
    return f"{size} bytes" if size < 1048576 else f"{size / 1048576:.1f} MiB"


@dataclass(frozen=True)
class Limits:
    """What the server allows: the direct cap and the staged backend, if any."""

    max_ops_file_size: int
    backend: str | None

    @classmethod
    def of(cls, system: SystemInfo) -> Limits:
        return cls(system.max_direct_transfer or DEFAULT_MAX_OPS_FILE_SIZE, system.staged_transfer)

    @property
    def largest_download(self) -> int:
        """The largest file whose base64 text (4 bytes per 3) stays below the SSH read buffer."""
        return 3 * ((self.max_ops_file_size - 1) // 4)


def upload_route(size: int, limits: Limits) -> Route:
    """`ops/upload` takes up to `max_ops_file_size` bytes; more must be staged."""
    return "direct" if size <= limits.max_ops_file_size else _staged(size, limits.max_ops_file_size, limits)


def download_route(size: int, limits: Limits) -> Route:
    """`ops/download` sends base64 through a buffer of `max_ops_file_size` bytes; more must be staged."""
    fits = 4 * math.ceil(size / 3) < limits.max_ops_file_size
    return "direct" if fits else _staged(size, limits.largest_download, limits)


def _staged(size: int, cap: int, limits: Limits) -> Route:
    if limits.backend in SUPPORTED_BACKENDS:
        return "staged"
    raise TransferUnavailable(f"{human_size(size)}: {no_staged_path(cap, limits)}")


def no_staged_path(cap: int, limits: Limits) -> str:
    """Why a file above `cap` cannot be moved at all on this server."""
    if limits.backend is None:
        return (
            f"this FirecREST server moves at most {human_size(cap)} directly, and it has no staged-transfer "
            "backend for larger files (its dataOperation.data_transfer is null)"
        )
    return (
        f"this FirecREST server moves at most {human_size(cap)} directly, and its staged transfers use "
        f"{limits.backend!r}, which firecrest-ci does not drive (it drives {', '.join(SUPPORTED_BACKENDS)})"
    )


def upload(
    gateway: Gateway,
    system: str,
    limits: Limits,
    local: Path,
    directory: str,
    filename: str,
    reporter: Reporter,
    *,
    account: str | None = None,
) -> Route:
    """Put the local file at `directory/filename`; returns the path taken."""
    size = local.stat().st_size
    route = upload_route(size, limits)
    if route == "direct":
        gateway.upload(system, str(local), directory, filename)
        return route
    try:
        transfer = gateway.start_upload(system, str(local), directory, filename, account)
    except ApiError as error:
        raise _start_failed("upload", filename, error) from None
    job = _transfer_job(transfer.transfer_data)
    reporter.info(f"{filename} ({human_size(size)}) goes through the staging area, job {job['jobId']}")
    with _cancel_unless_done(gateway, system, job, reporter):
        gateway.send_parts(transfer, filename)
        wait(gateway, system, job)
    target = f"{directory.rstrip('/')}/{filename}"
    try:
        arrived = int(gateway.stat(system, target)["size"])
    except ApiError as error:
        raise InfrastructureError(
            f"transfer job {job['jobId']} ended but {target} is not there ({error.message})"
        ) from None
    if arrived != size:
        raise InfrastructureError(
            f"transfer job {job['jobId']} left {arrived} bytes in {target}, not the {size} sent"
        )
    return route


def download(
    gateway: Gateway,
    system: str,
    limits: Limits,
    source: str,
    size: int,
    target: Path,
    reporter: Reporter,
    *,
    account: str | None = None,
) -> Route:
    """Write the remote file `source` (`size` bytes by the caller's listing) to `target`."""
    route = download_route(size, limits)
    if route == "direct":
        gateway.download(system, source, str(target))
        return route
    try:
        transfer = gateway.start_download(system, source, str(target), account)
    except ApiError as error:
        raise _start_failed("download", source, error) from None
    job = _transfer_job(transfer.transfer_data)
    reporter.info(f"{source} ({human_size(size)}) comes through the staging area, job {job['jobId']}")
    with _cancel_unless_done(gateway, system, job, reporter):
        wait(gateway, system, job)
    gateway.fetch_staged(transfer, source)
    got = target.stat().st_size
    if got != size:
        raise InfrastructureError(f"the staging area gave {got} bytes of {source}, not {size}")
    return route


def _start_failed(kind: str, name: str, error: ApiError) -> RunnerError:
    if error.status == 0 or error.status >= 500:
        return InfrastructureError(
            f"FirecREST failed to start the staged {kind} of {name} ({error.status or 'no answer'}: "
            f"{error.message}); not retried, since a transfer job may have been created"
        )
    return UsageError(
        f"FirecREST refused the staged {kind} of {name} ({error.status}: {error.message}); "
        "transfer jobs may need --account on this system"
    )


def _transfer_job(info: Any) -> dict[str, Any]:
    job = info.get("transferJob") if isinstance(info, dict) else None
    if not isinstance(job, dict) or not job.get("jobId") or not job.get("system"):
        raise InfrastructureError("FirecREST answered a staged transfer without its transfer job")
    return job


@contextmanager
def _cancel_unless_done(
    gateway: Gateway, system: str, job: dict[str, Any], reporter: Reporter
) -> Iterator[None]:
    """Within the block signals raise `Interrupted`; leaving it by any exception cancels the job."""
    with interruptible():
        try:
            yield
        except BaseException:
            job_id = str(job["jobId"])
            with shielded():
                try:
                    gateway.cancel_job(system, job_id, within=CANCEL_WITHIN)
                    reporter.info(f"cancelled transfer job {job_id}")
                except (ApiError, RunnerError) as error:
                    reporter.info(f"transfer job {job_id} could not be cancelled ({error.message})")
            raise


def wait(gateway: Gateway, system: str, job: dict[str, Any]) -> dict[str, Any]:
    """Poll the transfer job until it ends; raise unless it ended COMPLETED with exit code 0."""
    job_id = str(job["jobId"])
    schedule = PollSchedule()
    started = time.monotonic()
    while True:
        try:
            found = gateway.job_info(system, job_id)
        except ApiError as error:
            if error.status != 404 or time.monotonic() - started > NOT_FOUND_GRACE:
                raise InfrastructureError(
                    f"cannot follow transfer job {job_id} ({error.status}: {error.message})"
                ) from None
            found = []
        info = found[0] if found else {}
        state = (info.get("status") or {}).get("state")
        if found and is_terminal(state):
            break
        time.sleep(schedule.next_interval())
    exit_code = (info.get("status") or {}).get("exitCode")
    if base_states(state) == {"COMPLETED"} and exit_code in (0, None):
        return info
    why = _error_log(gateway, system, job)
    raise InfrastructureError(f"transfer job {job_id} ended {state_text(state)} (exit code {exit_code}){why}")


def _error_log(gateway: Gateway, system: str, job: dict[str, Any]) -> str:
    """The end of the transfer job's error log, to say why it failed."""
    path = (job.get("logs") or {}).get("errorLog")
    if not path:
        return ""
    try:
        text = gateway.tail_bytes(system, str(path), 300).strip()
    except (ApiError, RunnerError):
        return ""
    return f": {' '.join(text.split())}" if text else ""
