"""A Slurm-like job manager: batch scripts run for real as local processes.

It follows what a real FirecREST v2 server on Slurm 22.05 reports (recorded
responses and src/lib/scheduler_clients/slurm/): ids are increasing integers
sent as strings; PENDING (exitCode null) -> RUNNING -> COMPLETED | FAILED
(exitCode = the script's) | TIMEOUT (exitCode 0) | `CANCELLED by <uid>`;
output goes to `slurm-<id>.out` in the working directory with stderr merged
unless `--output`/`--error` say otherwise; a job without a name is `sbatch`.
A cancelled job reads `CANCELLED by <uid of its user>` with `interruptSignal`
0 (its batch step shows the SIGTERM). sbatch refuses unknown options and
partitions. For a job that ran under a second, sacct may for a while show
Slurm's placeholder record (name `allocation`, empty working directory and
partition, `time.limit` null), which the `placeholder_seconds` knob
reproduces in job info and listings (not in `/_sandbox/jobs`).

Like Slurm, submission does not check the working directory: the job is
accepted and fails when it starts if it cannot enter it (the sandbox's
"compute node" only sees the sandbox file systems). Each job runs in its own
session and process group; cancel and time-outs send SIGTERM, then SIGKILL
after a short grace (Slurm's KillWait, shortened). Honest differences: one
node, no real accounting or scheduling, limits enforced to the second.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sandbox.firecrest import sbatch
from sandbox.firecrest.errors import slurm_error

#: The partition's default time limit in the recorded cluster (30 minutes).
DEFAULT_LIMIT = 1800
#: Seconds between SIGTERM and SIGKILL (Slurm's KillWait is 30 s; tests want it short).
KILL_GRACE = 1.0
#: Slurm's priority for job N in the recorded cluster.
PRIORITY_BASE = 4294901761
TICK = 0.02
#: Variables of the server's own environment that a job must not inherit.
PRIVATE_PREFIXES = ("FIRECREST_", "AUTH_TOKEN_URL")
#: What the real server passes as `--export` when the request has no `env`.
DEFAULT_JOB_ENV = {"F7T_version": "v2.0.0"}
#: Slurm's placeholder record: the name sacct shows, and how short a job must be to get it.
PLACEHOLDER_NAME = "allocation"
PLACEHOLDER_MAX_RUN = 1.0


@dataclass
class JobRequest:
    """The `job` object of `POST /compute/{system}/jobs`, after validation."""

    working_directory: str
    script: str
    env: dict[str, str] | None = None
    name: str | None = None
    account: str | None = None
    partition: str | None = None
    reservation: str | None = None
    standard_input: str | None = None
    standard_output: str | None = None
    standard_error: str | None = None


@dataclass
class Job:
    job_id: str
    system: str
    name: str
    script: str
    working_dir: str
    stdin: str
    stdout: str
    stderr: str
    env: dict[str, str]
    account: str
    partition: str
    time_limit: int | None
    submitted_at: float
    start_after: float
    visible_after: float
    state: str = "PENDING"
    exit_code: int | None = None
    signal: int | None = None
    start: float | None = None
    end: float | None = None
    launched: bool = False
    task_state: str | None = None
    task_signal: int = 0
    kill_at: float | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def ended(self) -> bool:
        """The scheduler considers the job over (its processes may still be dying)."""
        return self.end is not None


class JobManager:
    """Owns every job of every system; a monitor thread starts, times out and reaps them."""

    def __init__(
        self,
        spool: Path,
        *,
        uid: str,
        username: str,
        group: str,
        account: str,
        partition: str,
        roots: dict[str, Path],
    ) -> None:
        self._spool = spool
        self._spool.mkdir(parents=True, exist_ok=True)
        self._uid = uid
        self._user = username
        self._group = group
        self._account = account
        self._partition = partition
        self._roots = roots
        self._jobs: dict[str, Job] = {}
        self._lock = threading.RLock()
        self._next_id = 1
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._monitor, name="sandbox-jobs", daemon=True)
        self._thread.start()

    # -- submission ----------------------------------------------------------------

    def home(self, system: str) -> Path:
        return self._roots[system] / self._user

    def submit(
        self, system: str, request: JobRequest, pending_seconds: float, invisible_seconds: float
    ) -> Job:
        """sbatch: check the script, resolve options (request fields win over #SBATCH), queue."""
        try:
            sbatch.check_script(request.script)
            options = sbatch.directives(request.script)
            limit = sbatch.parse_time_limit(options["time"]) if "time" in options else DEFAULT_LIMIT
            partition = request.partition or options.get("partition") or self._partition
            if partition != self._partition:
                raise sbatch.SbatchError(
                    f"sbatch: error: invalid partition specified: {partition}\n"
                    "sbatch: error: Batch job submission failed: Invalid partition name specified\n"
                )
        except sbatch.SbatchError as error:
            raise slurm_error(str(error)) from None
        home = self.home(system)
        # sbatch runs in the user's home over SSH: a relative --chdir is relative to it.
        workdir = os.path.normpath(os.path.join(home, request.working_directory))
        with self._lock:
            job_id = str(self._next_id)
            self._next_id += 1
            name = request.name or options.get("job-name") or "sbatch"

            def place(pattern: str) -> str:
                expanded = sbatch.expand_pattern(pattern, job_id, name, self._user)
                return os.path.normpath(os.path.join(workdir, expanded))

            stdout = place(request.standard_output or options.get("output") or "slurm-%j.out")
            error_pattern = request.standard_error or options.get("error")
            stderr = place(error_pattern) if error_pattern else stdout
            stdin_pattern = request.standard_input or options.get("input")
            now = time.time()
            job = Job(
                job_id=job_id,
                system=system,
                name=name,
                script=request.script,
                working_dir=workdir,
                stdin=place(stdin_pattern) if stdin_pattern else "/dev/null",
                stdout=stdout,
                stderr=stderr,
                env=dict(DEFAULT_JOB_ENV if request.env is None else request.env),
                account=request.account or options.get("account") or self._account,
                partition=partition,
                time_limit=limit,
                submitted_at=now,
                start_after=now + max(pending_seconds, 0.0),
                visible_after=now + max(invisible_seconds, 0.0),
            )
            self._jobs[job_id] = job
        return job

    # -- queries -------------------------------------------------------------------

    def get(self, system: str, job_id: str) -> Job | None:
        """The job as `sacct`/`squeue` see it: None if unknown or not visible yet."""
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None or job.system != system or time.time() < job.visible_after:
            return None
        return job

    def all(self) -> list[Job]:
        with self._lock:
            return list(self._jobs.values())

    def listed(
        self,
        system: str,
        name: str | None,
        account: str | None,
        window: float,
        placeholder_seconds: float = 0.0,
    ) -> list[Job]:
        """The user's jobs: pending and running ones, and those that ended within `window` seconds.

        The name filter is sacct's: it sees the placeholder's name, not the job's.
        """
        now = time.time()
        return [
            job
            for job in self.all()
            if job.system == system
            and now >= job.visible_after
            and (job.end is None or job.end >= now - window)
            and (name is None or self.shown_name(job, placeholder_seconds) == name)
            and (account is None or job.account == account)
        ]

    @staticmethod
    def placeholder(job: Job, placeholder_seconds: float) -> bool:
        """Does sacct show Slurm's placeholder record for this job right now?"""
        if not job.launched or job.start is None or job.end is None:
            return False
        return job.end - job.start < PLACEHOLDER_MAX_RUN and time.time() - job.end < placeholder_seconds

    def shown_name(self, job: Job, placeholder_seconds: float) -> str:
        return PLACEHOLDER_NAME if self.placeholder(job, placeholder_seconds) else job.name

    # -- cancel --------------------------------------------------------------------

    def cancel(self, system: str, job_id: str) -> None:
        """scancel: CANCELLED by <uid> at once; a running job's processes get SIGTERM, then SIGKILL."""
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None or job.system != system:
                raise slurm_error(self._scancel_text(job_id, "Invalid job id specified"), 0)
            if job.ended:
                raise slurm_error(self._scancel_text(job_id, "Job/step already completing or completed"), 0)
            now = time.time()
            job.state = f"CANCELLED by {self._uid}"
            job.end = now
            job.exit_code, job.signal = 0, 0
            if not job.launched:
                job.start = now
                return
            job.task_state, job.task_signal = "CANCELLED", int(signal.SIGTERM)
            self._terminate(job, now)

    @staticmethod
    def _scancel_text(job_id: str, reason: str) -> str:
        return (
            f"scancel: Terminating job {job_id}\n"
            f"scancel: error: Kill job error on job id {job_id}: {reason}\n"
        )

    def _terminate(self, job: Job, now: float) -> None:
        if job.process is not None and job.process.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(job.process.pid, signal.SIGTERM)
            job.kill_at = now + KILL_GRACE

    # -- the monitor ---------------------------------------------------------------

    def _inside(self, system: str, path: str) -> bool:
        root = self._roots[system]
        real = Path(os.path.realpath(path))
        return real == root or root in real.parents

    def _launch_failed(self, job: Job, now: float) -> None:
        """slurmstepd could not set the job up (working directory, output file): FAILED, exit 1."""
        job.launched = True
        job.start = job.end = now
        job.state, job.exit_code, job.signal = "FAILED", 1, 0
        job.task_state, job.task_signal = "FAILED", 0

    def _start(self, job: Job, now: float) -> None:
        workdir, stdout, stderr = job.working_dir, job.stdout, job.stderr
        usable = (
            self._inside(job.system, workdir)
            and os.path.isdir(workdir)
            and all(
                self._inside(job.system, p) and os.path.isdir(os.path.dirname(p)) for p in (stdout, stderr)
            )
            and (
                job.stdin == "/dev/null"
                or (self._inside(job.system, job.stdin) and os.path.isfile(job.stdin))
            )
        )
        if not usable:
            self._launch_failed(job, now)
            return
        spool = self._spool / f"job{int(job.job_id):05d}"
        spool.mkdir(parents=True, exist_ok=True)
        script_path = spool / "slurm_script"
        script_path.write_text(job.script)
        env = {k: v for k, v in os.environ.items() if not k.startswith(PRIVATE_PREFIXES)}
        home = str(self.home(job.system))
        env.update({"HOME": home, "USER": self._user, "LOGNAME": self._user})
        env.update(job.env)
        env.update(
            {
                "SLURM_JOB_ID": job.job_id,
                "SLURM_JOBID": job.job_id,
                "SLURM_JOB_NAME": job.name,
                "SLURM_JOB_USER": self._user,
                "SLURM_JOB_UID": self._uid,
                "SLURM_JOB_ACCOUNT": job.account,
                "SLURM_JOB_PARTITION": job.partition,
                "SLURM_CLUSTER_NAME": job.system,
                "SLURM_SUBMIT_DIR": home,
                "SLURM_SUBMIT_HOST": "localhost",
                "SLURM_JOB_NODELIST": "localhost",
                "SLURM_NODELIST": "localhost",
                "SLURMD_NODENAME": "localhost",
                "SLURM_JOB_NUM_NODES": "1",
                "SLURM_NNODES": "1",
            }
        )
        try:
            with contextlib.ExitStack() as files:
                out = files.enter_context(open(stdout, "ab"))  # the child keeps its own copy
                err = out if stderr == stdout else files.enter_context(open(stderr, "ab"))
                stdin = files.enter_context(open(job.stdin, "rb"))
                job.process = subprocess.Popen(
                    [*sbatch.interpreter(job.script), str(script_path)],
                    cwd=workdir,
                    stdin=stdin,
                    stdout=out,
                    stderr=err,
                    env=env,
                    start_new_session=True,
                )
        except OSError as error:
            self._launch_failed(job, now)
            with contextlib.suppress(OSError), open(stdout, "a") as out_text:
                out_text.write(f"slurmstepd: error: execve(): {error}\n")
            return
        job.launched = True
        job.start = now
        job.state = "RUNNING"
        job.task_state = "RUNNING"

    def _reaped(self, job: Job, returncode: int, now: float) -> None:
        assert job.process is not None
        # Like Slurm's process tracking, nothing the job left behind outlives it.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(job.process.pid, signal.SIGKILL)
        job.kill_at = None
        if job.ended:  # cancelled or timed out: the state was decided then
            return
        job.end = now
        if returncode == 0:
            job.state, job.exit_code, job.signal = "COMPLETED", 0, 0
        elif returncode > 0:
            job.state, job.exit_code, job.signal = "FAILED", returncode, 0
        else:
            job.state, job.exit_code, job.signal = "FAILED", 0, -returncode
        job.task_state, job.task_signal = job.state, job.signal

    def _tick(self) -> None:
        now = time.time()
        with self._lock:
            for job in self._jobs.values():
                if not job.launched:
                    if not job.ended and now >= job.start_after:
                        self._start(job, now)
                    continue
                process = job.process
                if process is None or process.returncode is not None:
                    continue
                returncode = process.poll()
                if returncode is not None:
                    self._reaped(job, returncode, now)
                    continue
                limit = job.time_limit
                if not job.ended and limit is not None and job.start is not None and now - job.start >= limit:
                    job.end = now
                    job.state, job.exit_code, job.signal = "TIMEOUT", 0, 0
                    job.task_state, job.task_signal = "CANCELLED", int(signal.SIGTERM)
                    self._terminate(job, now)
                if job.kill_at is not None and now >= job.kill_at:
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(process.pid, signal.SIGKILL)
                    job.kill_at = None

    def _monitor(self) -> None:
        while not self._stop.wait(TICK):
            self._tick()

    def shutdown(self) -> None:
        """Stop the monitor and kill every job still running (the server is going away)."""
        self._stop.set()
        self._thread.join(timeout=5)
        now = time.time()
        with self._lock:
            for job in self._jobs.values():
                process = job.process
                if process is not None and process.returncode is None:
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(process.pid, signal.SIGKILL)
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        process.wait(timeout=5)
                    if not job.ended:
                        job.state, job.exit_code, job.signal = "NODE_FAIL", 0, 0
                        job.end = now
                        job.task_state, job.task_signal = "CANCELLED", int(signal.SIGKILL)
                elif not job.ended:
                    job.state, job.exit_code, job.signal = f"CANCELLED by {self._uid}", 0, 0
                    job.start = job.start or now
                    job.end = now

    # -- the real server's JSON ----------------------------------------------------

    def info_json(self, job: Job, placeholder_seconds: float = 0.0) -> dict[str, Any]:
        """One entry of `{"jobs": [...]}`, shaped like the recorded `info_*` responses."""
        with self._lock:
            stand_in = self.placeholder(job, placeholder_seconds)
            now = time.time()
            pending = not job.launched and not job.ended
            elapsed = int((job.end or now) - job.start) if job.start is not None else 0
            start = int(job.start) if job.start is not None else None
            end = int(job.end) if job.end is not None else None
            tasks: list[dict[str, Any]] = []
            if job.launched:
                task_done = job.task_state not in (None, "RUNNING")
                tasks.append(
                    {
                        "id": f"{job.job_id}.batch",
                        "name": "batch",
                        "status": {
                            "state": job.task_state or "RUNNING",
                            "stateReason": None,
                            "exitCode": (job.exit_code or 0) if task_done else 0,
                            "interruptSignal": job.task_signal if task_done else 0,
                        },
                        "time": {
                            "elapsed": elapsed,
                            "start": start,
                            "end": end,
                            "suspended": 0,
                            "limit": None,
                        },
                    }
                )
            cancelled_pending = job.ended and not job.launched
            return {
                "jobId": job.job_id,
                "name": PLACEHOLDER_NAME if stand_in else job.name,
                "status": {
                    "state": job.state,
                    "stateReason": "None",
                    "exitCode": None if pending else (job.exit_code if job.ended else 0),
                    "interruptSignal": None if pending else (job.signal if job.ended else 0),
                },
                "tasks": tasks,
                "time": {
                    "elapsed": elapsed,
                    "start": start,
                    "end": end,
                    "suspended": None if pending else 0,
                    "limit": None if stand_in else job.time_limit,
                },
                "account": job.account,
                "allocationNodes": 0 if cancelled_pending else 1,
                "cluster": job.system,
                "group": self._group,
                "nodes": "None assigned" if cancelled_pending else ("" if pending else "localhost"),
                "partition": "" if stand_in else job.partition,
                "killRequestUser": None,
                "user": self._user,
                "workingDirectory": "" if stand_in else job.working_dir,
                "priority": PRIORITY_BASE - int(job.job_id),
            }

    def metadata_json(self, job: Job) -> dict[str, Any]:
        """One entry of the metadata answer, shaped like the recorded `metadata_*` responses."""
        return {
            "jobId": job.job_id,
            "script": job.script,
            "standardInput": job.stdin,
            "standardOutput": job.stdout,
            "standardError": job.stderr,
        }
