"""A Slurm-like job manager: batch scripts run for real as local processes.

Follows what a real FirecREST v2 server on Slurm reports: `#SBATCH` options in
the leading comment block (`--job-name`, `--output`, `--error`, `--time`),
output in `slurm-<id>.out` with stderr merged by default, states PENDING ->
RUNNING -> COMPLETED | FAILED | TIMEOUT, `CANCELLED by <uid>`, exit code null
while pending and 0 after a TIMEOUT. Time limits accept seconds (`0:05`) so
tests stay fast; real Slurm counts whole minutes.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

DEFAULT_LIMIT = 1800
KILL_GRACE = 1.0
_DIRECTIVE = re.compile(r"^#SBATCH\s+(.*)$")


class JobError(Exception):
    """An error the API returns with the real server's status and text."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def parse_time_limit(text: str) -> int:
    """Slurm's --time formats, in seconds: M, M:S, H:M:S, D-H, D-H:M, D-H:M:S."""
    text = text.strip()
    days = 0
    if "-" in text:
        day_part, text = text.split("-", 1)
        days = int(day_part)
        parts = [int(p) for p in text.split(":")]
        while len(parts) < 3:
            parts.append(0)
        hours, minutes, seconds = parts
        return days * 86400 + hours * 3600 + minutes * 60 + seconds
    parts = [int(p) for p in text.split(":")]
    if len(parts) == 1:
        return parts[0] * 60
    if len(parts) == 2:
        return parts[0] * 60 + parts[1]
    return parts[0] * 3600 + parts[1] * 60 + parts[2]


def sbatch_options(script: str) -> dict[str, str]:
    """Options from `#SBATCH` lines before the first command, as sbatch reads them."""
    options: dict[str, str] = {}
    aliases = {
        "-J": "job-name",
        "-o": "output",
        "-e": "error",
        "-t": "time",
        "-A": "account",
        "-p": "partition",
    }
    for line in script.splitlines()[1:] if script.startswith("#!") else script.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            break
        match = _DIRECTIVE.match(stripped)
        if not match:
            continue
        words = match.group(1).split()
        index = 0
        while index < len(words):
            word = words[index]
            if word.startswith("--"):
                name, sep, value = word[2:].partition("=")
                if not sep and index + 1 < len(words) and not words[index + 1].startswith("-"):
                    index += 1
                    value = words[index]
                options[name] = value
            elif word[:2] in aliases:
                value = word[2:]
                if not value and index + 1 < len(words):
                    index += 1
                    value = words[index]
                options[aliases[word[:2]]] = value
            index += 1
    return options


def expand_pattern(pattern: str, job_id: str, name: str, user: str) -> str:
    table = {"j": job_id, "x": name, "u": user, "A": job_id, "%": "%"}
    return re.sub(r"%([a-zA-Z%])", lambda m: table.get(m.group(1), m.group(0)), pattern)


@dataclass
class Job:
    job_id: str
    system: str
    name: str
    script: str
    working_dir: Path
    stdout: Path
    stderr: Path
    env: dict[str, str]
    account: str
    partition: str
    time_limit: int
    submitted_at: float
    start_after: float
    visible_after: float
    state: str = "PENDING"
    exit_code: int | None = None
    signal: int | None = None
    start: float | None = None
    end: float | None = None
    cancelled_by: str | None = None
    timed_out: bool = False
    kill_at: float | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    handles: list[IO[bytes]] = field(default_factory=list, repr=False)

    @property
    def finished(self) -> bool:
        return self.end is not None


class JobManager:
    """Owns every job of every system; a monitor thread starts, times out and reaps them."""

    def __init__(self, spool: Path, uid: str, username: str, group: str) -> None:
        self._spool = spool
        self._spool.mkdir(parents=True, exist_ok=True)
        self._uid = uid
        self._user = username
        self._group = group
        self._jobs: dict[str, Job] = {}
        self._lock = threading.RLock()
        self._next_id = 1
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._monitor, name="sandbox-jobs", daemon=True)
        self._thread.start()

    # -- submission ------------------------------------------------------------

    def submit(
        self,
        system: str,
        working_dir: Path,
        script: str,
        env: dict[str, str],
        account: str | None,
        partition: str | None,
        name: str | None,
        pending_seconds: float,
        invisible_seconds: float,
    ) -> Job:
        options = sbatch_options(script)
        if not working_dir.is_dir():
            raise JobError(
                400,
                "Unexpected Slurm command response. exit_status:1 std_err:sbatch: error: "
                f"chdir({working_dir}) failed: No such file or directory",
            )
        try:
            limit = parse_time_limit(options["time"]) if "time" in options else DEFAULT_LIMIT
        except ValueError:
            raise JobError(
                400,
                "Unexpected Slurm command response. exit_status:1 std_err:sbatch: error: "
                "Invalid time limit specification",
            ) from None
        with self._lock:
            job_id = str(self._next_id)
            self._next_id += 1
            job_name = options.get("job-name") or name or "sbatch"
            stdout = Path(expand_pattern(options.get("output", "slurm-%j.out"), job_id, job_name, self._user))
            stdout = stdout if stdout.is_absolute() else working_dir / stdout
            error_pattern = options.get("error")
            stderr = stdout
            if error_pattern:
                stderr = Path(expand_pattern(error_pattern, job_id, job_name, self._user))
                stderr = stderr if stderr.is_absolute() else working_dir / stderr
            now = time.time()
            job = Job(
                job_id=job_id,
                system=system,
                name=job_name,
                script=script,
                working_dir=working_dir,
                stdout=stdout,
                stderr=stderr,
                env=env,
                account=account or options.get("account") or "f7tacct",
                partition=partition or options.get("partition") or "debug",
                time_limit=limit,
                submitted_at=now,
                start_after=now + max(pending_seconds, 0.0),
                visible_after=now + max(invisible_seconds, 0.0),
            )
            self._jobs[job_id] = job
        return job

    # -- queries ----------------------------------------------------------------

    def get(self, system: str, job_id: str, *, visible_only: bool = True) -> Job | None:
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None or job.system != system:
            return None
        if visible_only and time.time() < job.visible_after:
            return None
        return job

    def all(self) -> list[Job]:
        with self._lock:
            return list(self._jobs.values())

    def listed(self, system: str, name: str | None, account: str | None) -> list[Job]:
        now = time.time()
        return [
            j
            for j in self.all()
            if j.system == system
            and now >= j.visible_after
            and (name is None or j.name == name)
            and (account is None or j.account == account)
        ]

    # -- cancel -----------------------------------------------------------------

    def cancel(self, system: str, job_id: str) -> None:
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None or job.system != system:
                raise JobError(
                    500,
                    "Unexpected Slurm command response. exit_status:0 std_err:scancel: Terminating job "
                    f"{job_id}\nscancel: error: Kill job error on job id {job_id}: "
                    "Invalid job id specified\n",
                )
            if job.finished or job.cancelled_by is not None:
                raise JobError(
                    500,
                    "Unexpected Slurm command response. exit_status:0 std_err:scancel: Terminating job "
                    f"{job_id}\nscancel: error: Kill job error on job id {job_id}: "
                    "Job/step already completing or completed\n",
                )
            job.cancelled_by = self._uid
            if job.process is None:
                job.state = f"CANCELLED by {self._uid}"
                job.exit_code = 0
                job.signal = 0
                job.start = job.end = time.time()
            else:
                self._terminate(job)

    def _terminate(self, job: Job) -> None:
        if job.process is not None and job.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(job.process.pid, signal.SIGTERM)
            job.kill_at = time.time() + KILL_GRACE

    # -- the monitor ------------------------------------------------------------

    def _start(self, job: Job) -> None:
        script_path = self._spool / f"job-{job.job_id}.sh"
        script_path.write_text(job.script)
        job.stdout.parent.mkdir(parents=True, exist_ok=True)
        out = open(job.stdout, "ab")  # noqa: SIM115 - closed when the job ends
        job.handles.append(out)
        err: IO[bytes] | int = subprocess.STDOUT
        if job.stderr != job.stdout:
            job.stderr.parent.mkdir(parents=True, exist_ok=True)
            err_handle = open(job.stderr, "ab")  # noqa: SIM115
            job.handles.append(err_handle)
            err = err_handle
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LANG": os.environ.get("LANG", "C.UTF-8"),
            "HOME": str(job.working_dir),
            "USER": self._user,
            **job.env,
            "SLURM_JOB_ID": job.job_id,
            "SLURM_JOBID": job.job_id,
            "SLURM_JOB_NAME": job.name,
            "SLURM_SUBMIT_DIR": str(job.working_dir),
            "SLURM_JOB_ACCOUNT": job.account,
            "SLURM_JOB_PARTITION": job.partition,
            "SLURM_CLUSTER_NAME": "sandbox",
        }
        job.process = subprocess.Popen(
            ["bash", str(script_path)],
            cwd=job.working_dir,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            env=env,
            start_new_session=True,
        )
        job.start = time.time()
        job.state = "RUNNING"

    def _finish(self, job: Job, returncode: int) -> None:
        for handle in job.handles:
            handle.close()
        job.handles.clear()
        job.end = time.time()
        if job.cancelled_by is not None:
            job.state, job.exit_code, job.signal = f"CANCELLED by {job.cancelled_by}", 0, 0
        elif job.timed_out:
            job.state, job.exit_code, job.signal = "TIMEOUT", 0, 0
        elif returncode == 0:
            job.state, job.exit_code, job.signal = "COMPLETED", 0, 0
        elif returncode > 0:
            job.state, job.exit_code, job.signal = "FAILED", returncode, 0
        else:
            job.state, job.exit_code, job.signal = "FAILED", 0, -returncode

    def _tick(self) -> None:
        now = time.time()
        with self._lock:
            for job in self._jobs.values():
                if job.finished:
                    continue
                if job.process is None:
                    if job.cancelled_by is None and now >= job.start_after:
                        try:
                            self._start(job)
                        except OSError as error:
                            job.end = now
                            job.state, job.exit_code, job.signal = "FAILED", 1, 0
                            job.stdout.parent.mkdir(parents=True, exist_ok=True)
                            job.stdout.write_text(f"slurmstepd: error: {error}\n")
                    continue
                returncode = job.process.poll()
                if returncode is not None:
                    self._finish(job, returncode)
                    continue
                if job.start is not None and not job.timed_out and now - job.start > job.time_limit:
                    job.timed_out = True
                    self._terminate(job)
                if job.kill_at is not None and now >= job.kill_at:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(job.process.pid, signal.SIGKILL)
                    job.kill_at = None

    def _monitor(self) -> None:
        while not self._stop.wait(0.02):
            self._tick()

    def shutdown(self) -> None:
        """Kill every job still running; used on server stop."""
        self._stop.set()
        self._thread.join(timeout=2)
        with self._lock:
            for job in self._jobs.values():
                if job.process is not None and job.process.poll() is None:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(job.process.pid, signal.SIGKILL)
                    job.process.wait(timeout=5)
                    job.cancelled_by = job.cancelled_by or self._uid
                    self._finish(job, -9)

    # -- the real server's JSON --------------------------------------------------

    def info_json(self, job: Job, cluster: str = "f7tcluster") -> dict[str, Any]:
        pending = job.process is None and not job.finished
        status: dict[str, Any] = {
            "state": job.state,
            "stateReason": "None",
            "exitCode": None if pending else (job.exit_code if job.finished else 0),
            "interruptSignal": None if pending else (job.signal if job.finished else 0),
        }
        elapsed = int((job.end or time.time()) - job.start) if job.start else 0
        time_block = {
            "elapsed": elapsed,
            "start": int(job.start) if job.start else None,
            "end": int(job.end) if job.end else None,
            "suspended": None if pending else 0,
            "limit": job.time_limit,
        }
        tasks = []
        if job.process is not None:
            task_state = job.state
            task_signal = job.signal if job.finished else 0
            if job.timed_out and job.finished:
                task_state, task_signal = "CANCELLED", 15
            elif task_state.startswith("CANCELLED"):
                task_state = "CANCELLED"
            tasks.append(
                {
                    "id": f"{job.job_id}.batch",
                    "name": "batch",
                    "status": {
                        "state": task_state,
                        "stateReason": None,
                        "exitCode": job.exit_code if job.finished else 0,
                        "interruptSignal": task_signal,
                    },
                    "time": {**time_block, "limit": None},
                }
            )
        never_ran = job.process is None
        return {
            "jobId": job.job_id,
            "name": job.name,
            "status": status,
            "tasks": tasks,
            "time": time_block,
            "account": job.account,
            "allocationNodes": 0 if never_ran and job.finished else 1,
            "cluster": cluster,
            "group": self._group,
            "nodes": ("None assigned" if job.finished else "") if never_ran else "localhost",
            "partition": job.partition,
            "killRequestUser": None,
            "user": self._user,
            "workingDirectory": str(job.working_dir),
            "priority": 4294901760 - int(job.job_id),
        }

    def metadata_json(self, job: Job) -> dict[str, Any]:
        return {
            "jobId": job.job_id,
            "script": job.script,
            "standardInput": "/dev/null",
            "standardOutput": str(job.stdout),
            "standardError": str(job.stderr),
        }
