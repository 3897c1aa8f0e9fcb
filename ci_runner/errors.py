"""Runner failures and the exit code each one maps to.

The exit code tells a CI system *whose* problem a red step is: the job's
(1), the configuration's (2), or the HPC centre's (3). Documented in README.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_JOB_FAILED = 1
EXIT_USAGE = 2
EXIT_INFRASTRUCTURE = 3
EXIT_SIGINT = 130
EXIT_SIGTERM = 143


class RunnerError(Exception):
    """A failure the user must see as one or two plain lines, never a traceback."""

    exit_code = EXIT_INFRASTRUCTURE

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UsageError(RunnerError):
    """Bad flags, inputs, credentials or files: fix the configuration and rerun."""

    exit_code = EXIT_USAGE


class InfrastructureError(RunnerError):
    """FirecREST unreachable, the system down, or retries exhausted."""

    exit_code = EXIT_INFRASTRUCTURE


class ServiceUnhealthy(InfrastructureError):
    """FirecREST answered 503 because its own health check sees a service down: an answer, not a blip."""


class JobFailed(RunnerError):
    """The HPC job ran and did not end COMPLETED with exit code 0."""

    exit_code = EXIT_JOB_FAILED


class Interrupted(BaseException):
    """Raised from the signal handler so blocking sleeps and reads stop at once."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum
