"""`ci-runner`: flags and the Action entry points; nothing else.

ci-runner run --system daint --script ci/job.sh --staging upload
ci-runner action        # the Docker Action's entrypoint, reads INPUT_*
ci-runner action-post   # the Action's post step: cancels a job left running
"""

from __future__ import annotations

import logging
import os
import sys
from typing import NoReturn

import click

from ci_runner import action
from ci_runner.client import Credentials
from ci_runner.errors import Interrupted, RunnerError
from ci_runner.junit import TestTally, clip
from ci_runner.redact import RedactingFilter, Redactor
from ci_runner.report import Reporter
from ci_runner.runner import RunOptions, run
from ci_runner.spec import CLEANUP_MODES, STAGING_MODES, RawInputs, build_spec

#: Failed cases the CLI prints; the reports hold the rest.
MAX_PRINTED_FAILURES = 50


def _quiet_libraries(redactor: Redactor) -> None:
    """Library log records go to stderr only at WARNING, always redacted."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RedactingFilter(redactor))
    logging.basicConfig(level=logging.WARNING, handlers=[handler], force=True)
    # Retries are announced by the runner's own notes; the retry library's warnings are noise.
    logging.getLogger("stamina").setLevel(logging.ERROR)


def _leave(code: int) -> NoReturn:
    """Exit at once once all is written: the interpreter's teardown (freeing TLS contexts and
    hundreds of modules) takes about 0.2 s that the CI step would wait for, and does nothing."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="firecrest-ci")
def main() -> None:
    """Run CI jobs on HPC systems through FirecREST.

    Credentials come from FIRECREST_URL, AUTH_TOKEN_URL, FIRECREST_CLIENT_ID
    and FIRECREST_CLIENT_SECRET. Exit codes: 0 job passed, 1 job failed,
    2 usage or configuration error, 3 FirecREST or the system unavailable,
    130/143 interrupted (the job was cancelled).
    """


def _print_tests(reporter: Reporter, tests: TestTally) -> None:
    """The tally on one line, then each failed case (stderr: stdout carries the job's log)."""
    reporter.info(tests.tally_line())
    for case in tests.failures[:MAX_PRINTED_FAILURES]:
        where = f" ({case.location})" if case.location else ""
        first = case.message.splitlines()[0] if case.message else ""
        reporter.info(f"  {case.kind.upper()} {case.name}{where}: {clip(first, 300)}")
    more = len(tests.failures) - MAX_PRINTED_FAILURES
    if more > 0:
        reporter.info(f"  ... and {more} more failed tests: see the JUnit reports")


@main.command("run")
@click.option("--system", required=True, help="Target system, as listed by FirecREST.")
@click.option("--script", default="", help="Batch script in the repository; #SBATCH lines honoured.")
@click.option("--command", default="", help="A shell command to run instead of a script.")
@click.option("--account", default="", help="Slurm account to charge.")
@click.option("--partition", default="", help="Slurm partition.")
@click.option("--reservation", default="", help="Slurm reservation.")
@click.option(
    "--working-dir",
    default="",
    help="Absolute directory for the job. Default: a fresh "
    "<defaultWorkDir>/<user>/firecrest-ci/<owner>/<repo>/<run> directory.",
)
@click.option("--env", "env", multiple=True, metavar="K=V", help="Job environment variable; repeatable.")
@click.option(
    "--staging",
    type=click.Choice(STAGING_MODES),
    default="git",
    show_default=True,
    help="git: the job clones --repo-url at --sha; upload: a workspace tarball; none.",
)
@click.option(
    "--repo-url",
    envvar="FIRECREST_CI_REPO_URL",
    default="",
    help="Repository to clone (git staging). Credentials in it (https://user:token@host/...) are "
    "passed to the job's git apart from the URL and never printed or written.",
)
@click.option(
    "--sha",
    envvar="FIRECREST_CI_SHA",
    default="",
    help="Commit to check out (git staging). Default: the workspace's HEAD.",
)
@click.option(
    "--workspace", default="", help="Local directory of the repository. Default: current directory."
)
@click.option("--repository", default="", help="owner/repo, for the working directory name.")
@click.option(
    "--cleanup",
    type=click.Choice(CLEANUP_MODES),
    default="on-success",
    show_default=True,
    help="When to remove the per-run directory.",
)
@click.option("--timeout", default="", help="Cancel the job after this long (30m, 1h30m, HH:MM:SS).")
@click.option("--pending-timeout", default="", help="Cancel the job if still pending after this long.")
@click.option("--artifacts", multiple=True, metavar="GLOB", help="Files to copy back afterwards; repeatable.")
@click.option("--artifacts-dir", default="", help="Where artifacts land. Default: ./firecrest-artifacts.")
@click.option(
    "--junit",
    multiple=True,
    metavar="GLOB",
    help="JUnit XML reports to copy back (to <artifacts-dir>/junit) and read; repeatable, or one glob "
    "per line. Failing tests are reported; the job's state and exit code alone decide the exit code.",
)
@click.option(
    "--request-timeout",
    envvar="FIRECREST_CI_REQUEST_TIMEOUT",
    type=float,
    default=30.0,
    show_default=True,
    help="Seconds one HTTP request may take.",
)
@click.option(
    "--retry-timeout",
    envvar="FIRECREST_CI_RETRY_TIMEOUT",
    type=float,
    default=120.0,
    show_default=True,
    help="Seconds one operation may spend retrying.",
)
def run_command(**flags: object) -> None:
    """Stage, submit and follow one job; exit 0 only if it COMPLETED with exit code 0."""
    redactor = Redactor()
    _quiet_libraries(redactor)
    reporter = Reporter(redactor)
    options = RunOptions(
        request_timeout=float(flags.pop("request_timeout")),  # type: ignore[arg-type]
        retry_timeout=float(flags.pop("retry_timeout")),  # type: ignore[arg-type]
    )
    try:
        creds = Credentials.from_env()
        redactor.add(creds.client_secret)
        fields = {k: (tuple(v) if isinstance(v, tuple) else str(v)) for k, v in flags.items()}
        spec = build_spec(RawInputs(**fields))  # type: ignore[arg-type]
        result = run(spec, creds, reporter, options=options)
    except RunnerError as error:
        reporter.error(error.message)
        sys.exit(error.exit_code)
    except Interrupted as interrupt:
        reporter.error("interrupted: the HPC job was cancelled")
        sys.exit(128 + interrupt.signum)
    except Exception as error:  # noqa: BLE001 - last line of defence: no traceback, no secrets
        reporter.error(f"unexpected {type(error).__name__}: {error}")
        sys.exit(3)
    outcome = result.outcome
    if result.tests is not None:
        _print_tests(reporter, result.tests)
    if outcome.passed:
        reporter.info(outcome.reason)
        _leave(0)
    reporter.error(outcome.reason)
    _leave(1)


@main.command("action")
def action_command() -> None:
    """Entrypoint of the Docker Action: reads INPUT_* and GITHUB_* variables."""
    redactor = Redactor()
    _quiet_libraries(redactor)
    _leave(action.main())


@main.command("action-post")
def action_post_command() -> None:
    """Post step of the Action: cancels a job the main step left running."""
    sys.exit(action.post())
