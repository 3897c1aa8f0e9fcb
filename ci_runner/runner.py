"""One run, start to end: spec -> health -> stage -> submit -> follow -> result.

Front ends (cli.py) build the JobSpec and a Reporter, call `run`, and turn
the Outcome into exit codes and GitHub outputs. Interrupts cancel the job.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from ci_runner import artifacts, junit, staging, transfers
from ci_runner.client import ApiError, Credentials, Gateway
from ci_runner.errors import Interrupted, RunnerError, UsageError
from ci_runner.follow import Followed, Follower, Target, TimeLimitReached
from ci_runner.health import SystemInfo, check_system, check_working_dir
from ci_runner.jobscript import SOURCE_DIR, build_batch_script, git_credential_env
from ci_runner.logs import new_end_marker
from ci_runner.report import Reporter
from ci_runner.result import Outcome, judge
from ci_runner.signals import interruptible, shielded
from ci_runner.spec import JobSpec
from ci_runner.submit import find_job_by_name, submit_job

#: How long a cancel may take after SIGINT: GitHub sends SIGTERM 7.5 s later.
CANCEL_WITHIN = 5.0


@dataclass(frozen=True)
class RunOptions:
    request_timeout: float = 30.0
    retry_timeout: float = 120.0


@dataclass
class RunResult:
    outcome: Outcome
    log_tail: str
    #: What the JUnit reports said; None when no `junit` glob was given.
    tests: junit.TestTally | None = None


def cancel(gateway: Gateway, system: str, job_id: str, reporter: Reporter) -> None:
    """Cancel, shielded from further signals; a finished job counts as done."""
    with shielded():
        try:
            gateway.cancel_job(system, job_id, within=CANCEL_WITHIN)
            reporter.info(f"cancelled job {job_id}")
        except ApiError as error:
            reporter.info(f"job {job_id} was already over ({error.message.splitlines()[-1]})")
        except RunnerError as error:
            reporter.error(f"could not cancel job {job_id}: {error.message}")


def _cleanup(
    gateway: Gateway, spec: JobSpec, workdir: staging.WorkDir, passed: bool, reporter: Reporter
) -> None:
    working_dir = workdir.path
    wanted = spec.cleanup == "always" or (spec.cleanup == "on-success" and passed)
    if not wanted:
        if spec.cleanup == "on-success":
            reporter.info(f"kept {working_dir} for inspection (cleanup: on-success)")
        return
    if not workdir.owned:
        reporter.info(f"kept {working_dir}: it was given explicitly, so it is not this run's to remove")
        return
    try:
        gateway.rm(spec.system, working_dir)
    except (ApiError, RunnerError) as error:
        reporter.warning(f"could not remove {working_dir}: {getattr(error, 'message', error)}")


def run(
    spec: JobSpec,
    creds: Credentials,
    reporter: Reporter,
    *,
    options: RunOptions | None = None,
    on_submitted: Callable[[str], None] = lambda _job_id: None,
    on_finished: Callable[[], None] = lambda: None,
) -> RunResult:
    """Run the job; raises RunnerError for setup failures and Interrupted on signals."""
    options = options or RunOptions()
    reporter.redactor.add(creds.client_secret)
    reporter.redactor.add(spec.repo_password)
    gateway = Gateway(
        creds,
        request_timeout=options.request_timeout,
        retry_timeout=options.retry_timeout,
        on_token=reporter.mask,
        on_retry=reporter.info,
    )
    job_id: str | None = None
    with interruptible():
        try:
            system = check_system(gateway, spec.system)
            check_working_dir(system, spec.working_dir)
            workdir = _prepare_working_dir(gateway, spec, system, reporter)
            working_dir = workdir.path
            reporter.info(f"working directory on {spec.system}: {working_dir}")
            if spec.staging == "upload":
                size = staging.upload_workspace(gateway, spec, system, working_dir, reporter)
                reporter.info(f"uploaded the workspace ({size} bytes)")
            script = build_batch_script(
                spec.script_text,
                job_name=spec.job_name,
                staging=spec.staging,
                repo_url=spec.repo_url,
                sha=spec.sha,
                git_auth=bool(spec.repo_username or spec.repo_password),
                end_marker=new_end_marker(),
            )
            job_env = {**spec.env, **git_credential_env(spec.repo_username, spec.repo_password)}
            submitted = submit_job(
                gateway,
                spec.system,
                spec.job_name,
                reporter,
                working_dir=working_dir,
                script_str=script.text,
                env_vars=job_env or None,
                account=spec.account,
                partition=spec.partition,
                reservation=spec.reservation,
            )
            job_id = submitted.job_id
            submitted_epoch = time.time()
            on_submitted(job_id)
            reporter.info(f"submitted job {job_id} ({spec.job_name}) on {spec.system}")
            target = Target(
                spec.system,
                job_id,
                spec.job_name,
                working_dir,
                workdir.username,
                script.output_pattern,
                script.error_pattern,
            )
            follower = Follower(
                gateway,
                target,
                reporter,
                timeout=spec.timeout,
                pending_timeout=spec.pending_timeout,
                end_marker=script.end_marker,
                read_limit=system.max_direct_transfer,
            )
            try:
                followed = follower.run(submitted.submitted_at)
            except TimeLimitReached as limit:
                cancel(gateway, spec.system, job_id, reporter)
                followed = _after_cancel(gateway, follower, spec.system, job_id, limit.reason)
        except Interrupted:
            if job_id is None:
                job_id = _job_from_lost_submit(gateway, spec)
            if job_id is not None:
                reporter.info(f"interrupted: cancelling job {job_id}")
                cancel(gateway, spec.system, job_id, reporter)
            on_finished()
            raise
    on_finished()
    outcome = judge(
        spec.system,
        job_id,
        followed.info,
        working_dir=working_dir,
        output_path=followed.output_path,
        stopped_by_runner=followed.stopped_by_runner,
        submitted_at=submitted_epoch,
    )
    run_dir = working_dir if spec.staging == "none" else f"{working_dir}/{SOURCE_DIR}"
    if spec.artifacts:
        artifacts.collect(
            gateway,
            spec.system,
            run_dir,
            spec.artifacts,
            spec.artifacts_dir,
            reporter,
            limits=transfers.Limits.of(system),
            account=spec.account,
        )
    tests = None
    if spec.junit:
        # After the artifacts, so that a report wins should an artifact land on the same local path.
        tests = junit.collect(
            gateway,
            spec.system,
            run_dir,
            spec.junit,
            spec.artifacts_dir / junit.JUNIT_SUBDIR,
            reporter,
            limits=transfers.Limits.of(system),
            account=spec.account,
            workspace=str(spec.workspace.resolve()),
        )
    _cleanup(gateway, spec, workdir, outcome.passed, reporter)
    gateway.close()
    return RunResult(outcome=outcome, log_tail=followed.log_tail, tests=tests)


def _prepare_working_dir(
    gateway: Gateway, spec: JobSpec, system: SystemInfo, reporter: Reporter
) -> staging.WorkDir:
    """Create the working directory; a per-run one is made private (mode 700) before anything goes in."""
    try:
        workdir = staging.prepare_working_dir(gateway, spec, system)
    except ApiError as error:
        where = spec.working_dir or f"the per-run directory under {system.default_work_dir}"
        raise UsageError(f"cannot create {where} on {spec.system}: {error.message}") from None
    if workdir.owned:
        try:
            gateway.chmod(spec.system, workdir.path, "700")
        except ApiError as error:
            reporter.warning(f"could not make {workdir.path} private (mode 700): {error.message}")
    return workdir


def _job_from_lost_submit(gateway: Gateway, spec: JobSpec) -> str | None:
    """Interrupted mid-submit: the job may exist without us knowing its id."""
    with shielded():
        try:
            return find_job_by_name(gateway, spec.system, spec.job_name)
        except (ApiError, RunnerError):
            return None


def _after_cancel(gateway: Gateway, follower: Follower, system: str, job_id: str, reason: str) -> Followed:
    """Read the final record and the rest of the log after the runner cancelled the job."""
    info = follower.last_info or {"jobId": job_id, "status": {"state": "CANCELLED"}}
    try:
        jobs = gateway.job_info(system, job_id)
        info = jobs[0] if jobs else info
    except (ApiError, RunnerError):
        pass
    follower.log.drain()
    return Followed(
        info=info,
        output_path=follower.log.path,
        log_tail=follower.log.tail,
        stopped_by_runner=reason,
    )
