"""Pipelines in the GitLab stand-in: jobs from the mirrored entrypoint YAML run for real.

Enough of GitLab CI for the project's templates: `stages`, jobs with `script`
(and `before_script`), `needs`, `variables`, `include: component` resolved
from a templates project with `spec: inputs` and `$[[ inputs.x ]]`. Each job
runs its script lines with bash in a fresh checkout of the pipeline's commit,
with the project's CI variables, the pipeline's variables and the predefined
CI_* ones. `image:` is ignored: jobs run on this machine, as a shell runner.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from sandbox.gitlab.reports import JobReport, parse_junit

RESERVED_KEYS = frozenset(
    {
        "stages",
        "variables",
        "include",
        "default",
        "workflow",
        "image",
        "services",
        "before_script",
        "after_script",
        "cache",
        "spec",
    }
)
DEFAULT_STAGES = [".pre", "build", "test", "deploy", ".post"]
_INPUT = re.compile(r"\$\[\[\s*inputs\.([A-Za-z0-9_-]+)\s*\]\]")


class PipelineConfigError(ValueError):
    """The entrypoint cannot be turned into jobs; the message is GitLab's kind of message."""


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def git_show(repo: Path, sha: str, path: str) -> str | None:
    done = subprocess.run(
        ["git", "-C", str(repo), "show", f"{sha}:{path}"], capture_output=True, text=True, check=False
    )
    return done.stdout if done.returncode == 0 else None


def split_documents(text: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(spec header, body): a component's `spec:` is a separate YAML document."""
    documents = [d for d in yaml.safe_load_all(text) if d is not None]
    if len(documents) == 2 and isinstance(documents[0], dict) and "spec" in documents[0]:
        return documents[0]["spec"] or {}, documents[1]
    if len(documents) == 1 and isinstance(documents[0], dict):
        return {}, documents[0]
    raise PipelineConfigError("Invalid configuration format")


def interpolate(text: str, spec: dict[str, Any], given: dict[str, Any]) -> str:
    declared = (spec.get("inputs") or {}) if isinstance(spec, dict) else {}
    values: dict[str, Any] = {}
    for name, options in declared.items():
        if name in given:
            values[name] = given[name]
        elif isinstance(options, dict) and "default" in options:
            values[name] = options["default"]
        else:
            raise PipelineConfigError(f"`{name}` input: required value has not been provided")
    unknown = set(given) - set(declared)
    if unknown:
        raise PipelineConfigError(f"unknown input arguments: {', '.join(sorted(unknown))}")
    return _INPUT.sub(lambda m: str(values.get(m.group(1), m.group(0))), text)


#: Statuses of a finished job (GitLab's COMPLETED_STATUSES).
COMPLETED = frozenset({"success", "failed", "canceled", "skipped"})
#: Statuses a job or pipeline cancel moves to `canceled`.
CANCELABLE = frozenset(
    {"created", "waiting_for_resource", "preparing", "pending", "running", "scheduled", "manual"}
)
#: Statuses a job retry accepts (`Ci::Processable#retryable?`).
RETRYABLE = frozenset({"success", "failed", "canceled"})
#: Every status GitLab knows (`scope[]` of the jobs lists takes these).
AVAILABLE_STATUSES = (
    "created", "waiting_for_resource", "preparing", "waiting_for_callback", "pending", "running",
    "success", "failed", "canceling", "canceled", "skipped", "manual", "scheduled",
)  # fmt: skip


def _parse(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


def _seconds(start: str | None, end: str | None) -> float | None:
    """Seconds from `start` to `end` (or to now, as GitLab counts a running job), None before start."""
    if start is None:
        return None
    until = _parse(end) if end is not None else dt.datetime.now(dt.UTC)
    return max(0.0, round((until - _parse(start)).total_seconds(), 3))


@dataclass
class Job:
    id: int
    name: str
    stage: str
    script: list[str]
    needs: list[str] | None
    variables: dict[str, str]
    status: str = "created"
    trace: str = ""
    started_at: str | None = None
    finished_at: str | None = None
    process: subprocess.Popen[bytes] | None = None
    created_at: str = field(default_factory=_now)
    #: When the job became pending (GitLab's `queued_at`), for `queued_duration`.
    queued_at: str | None = None
    allow_failure: bool = False
    #: A newer job of the same name replaced this one (it is no longer in the pipeline's latest jobs).
    retried: bool = False
    failure_reason: str | None = None
    #: The JUnit report the job uploaded (`artifacts:reports:junit`), if any.
    report: JobReport | None = None
    #: `artifacts:reports:junit` globs (relative to the checkout) and `artifacts:when`.
    junit: list[str] = field(default_factory=list)
    artifacts_when: str = "on_success"

    @property
    def duration(self) -> float | None:
        return _seconds(self.started_at, self.finished_at)

    @property
    def queued_duration(self) -> float | None:
        return _seconds(self.queued_at, self.started_at)

    def enqueue(self) -> None:
        self.status, self.queued_at = "pending", _now()

    def begin(self) -> None:
        self.status, self.started_at = "running", _now()
        self.queued_at = self.queued_at or self.started_at

    def finish(self, status: str, failure_reason: str | None = None) -> None:
        self.status, self.finished_at = status, _now()
        self.failure_reason = (failure_reason or "script_failure") if status == "failed" else None


@dataclass
class Workspace:
    """What a pipeline whose jobs run for real needs: its repository and its environment."""

    repo: Path
    env: dict[str, str]


@dataclass
class Pipeline:
    id: int
    project_id: int
    ref: str
    sha: str
    variables: dict[str, str]
    jobs: list[Job] = field(default_factory=list)
    status: str = "created"
    created_at: str = field(default_factory=_now)
    updated_at: str = field(default_factory=_now)
    cancel_requested: bool = False
    stages: list[str] = field(default_factory=list)
    started_at: str | None = None
    finished_at: str | None = None
    #: Set when the jobs run for real (see `PipelineRunner`); None when tests drive them.
    workspace: Workspace | None = None

    def latest_jobs(self) -> list[Job]:
        """The jobs not replaced by a retry, in stage order (then in creation order)."""
        order = {stage: n for n, stage in enumerate(self.stage_order())}
        return sorted((j for j in self.jobs if not j.retried), key=lambda j: order[j.stage])

    def stage_order(self) -> list[str]:
        extra = [j.stage for j in self.jobs if j.stage not in self.stages]
        return [*self.stages, *dict.fromkeys(extra)]

    def job(self, job_id: int) -> Job | None:
        return next((j for j in self.jobs if j.id == job_id), None)

    @property
    def duration(self) -> int | None:
        """Seconds some job was running (the union of the jobs' running periods), as GitLab counts it."""
        periods = sorted(
            (_parse(j.started_at), _parse(j.finished_at) if j.finished_at else dt.datetime.now(dt.UTC))
            for j in self.jobs
            if j.started_at is not None
        )
        total, end = 0.0, None
        for start, stop in periods:
            if end is None or start > end:
                total += (stop - start).total_seconds()
                end = stop
            elif stop > end:
                total += (stop - end).total_seconds()
                end = stop
        return int(total) if periods else None

    @property
    def queued_duration(self) -> int | None:
        waited = _seconds(self.created_at, self.started_at) if self.started_at else None
        return int(waited) if waited is not None else None


def _status_key(job: Job) -> str:
    if job.allow_failure and job.status == "failed":
        return "success_with_warnings"
    if job.allow_failure and job.status in ("canceled", "manual"):
        return "ignored"
    return job.status


def composite_status(jobs: Iterable[Job]) -> str | None:
    """GitLab's `Gitlab::Ci::Status::Composite` of a stage-scheduled set of jobs (None if empty)."""
    found = {_status_key(j) for j in jobs}

    def only(*names: str) -> bool:
        return found <= set(names)

    if not found:
        return None
    quiet = ("success_with_warnings", "ignored")
    exact = [
        (("skipped", "ignored"), "skipped"),
        (("success", "skipped", *quiet), "success"),
        (("created", *quiet), "created"),
        (("preparing", *quiet), "preparing"),
        (("canceled", "success", "skipped", *quiet), "canceled"),
        (("pending", "created", "skipped", *quiet), "pending"),
    ]
    for names, status in exact:
        if only(*names):
            return status
    present = [
        (("running", "pending"), "running"),
        (("waiting_for_resource",), "waiting_for_resource"),
        (("waiting_for_callback",), "waiting_for_callback"),
        (("manual",), "manual"),
        (("scheduled",), "scheduled"),
        (("preparing",), "preparing"),
        (("created",), "running"),
        (("canceling",), "canceling"),
    ]
    return next((status for names, status in present if found & set(names)), "failed")


def process(pipeline: Pipeline) -> None:
    """GitLab's pipeline processing, by stages: a created job is enqueued once every earlier stage
    is complete and passed (success or skipped), and skipped if one failed or was canceled; then
    the pipeline's status follows its latest jobs."""
    earlier: list[Job] = []
    latest = pipeline.latest_jobs()
    for stage in pipeline.stage_order():
        jobs = [j for j in latest if j.stage == stage]
        before = composite_status(earlier) or "success"
        if before in COMPLETED:
            for job in jobs:
                if job.status == "created":
                    if before in ("success", "skipped"):
                        job.enqueue()
                    else:
                        job.status = "skipped"
        earlier += jobs
    refresh(pipeline)


def refresh(pipeline: Pipeline) -> None:
    """The pipeline's status (and times) from its latest jobs."""
    status = composite_status(pipeline.latest_jobs())
    if status is None or status == pipeline.status:
        return
    pipeline.status, pipeline.updated_at = status, _now()
    if status == "running" and pipeline.started_at is None:
        pipeline.started_at = pipeline.updated_at
    pipeline.finished_at = pipeline.updated_at if status in COMPLETED else None


def cancel_job(job: Job) -> bool:
    """`build.cancel`: a cancelable job is canceled (its process, if any, is stopped); False otherwise."""
    if job.retried or job.status not in CANCELABLE:
        return False
    if job.process is not None and job.process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(job.process.pid, signal.SIGTERM)
    job.finish("canceled")
    return True


def retry_job(pipeline: Pipeline, job: Job, new_id: int) -> Job:
    """`Ci::RetryJobService`: a new job in the old one's place, the skipped jobs after it reset
    to created; the caller checked `retryable`."""
    clone = Job(
        new_id, job.name, job.stage, list(job.script), job.needs, dict(job.variables),
        allow_failure=job.allow_failure,
    )  # fmt: skip
    job.retried = True
    pipeline.jobs.append(clone)
    order = pipeline.stage_order()
    for later in pipeline.latest_jobs():
        if later.status == "skipped" and order.index(later.stage) > order.index(job.stage):
            later.status, later.finished_at = "created", None
    pipeline.cancel_requested = False
    return clone


def retryable(job: Job) -> bool:
    return not job.retried and job.status in RETRYABLE


def load_jobs(text: str, resolve_component: Any, ids: Any) -> tuple[list[str], list[Job]]:
    """Parse an entrypoint (components included) into stages and jobs."""
    try:
        _spec, body = split_documents(text)
    except yaml.YAMLError as error:
        raise PipelineConfigError(f"Invalid configuration format: {str(error).splitlines()[0]}") from None
    merged: dict[str, Any] = {}
    includes = body.get("include") or []
    for include in includes if isinstance(includes, list) else [includes]:
        if not isinstance(include, dict) or "component" not in include:
            raise PipelineConfigError(
                "Included file: only `component` includes are supported by this stand-in"
            )
        component_text = resolve_component(str(include["component"]))
        spec, _ = split_documents(component_text)
        rendered = interpolate(component_text, spec, include.get("inputs") or {})
        _, component_body = split_documents(rendered)
        merged.update(component_body)
    merged.update({k: v for k, v in body.items() if k != "include"})
    stages = merged.get("stages") or DEFAULT_STAGES[1:4]
    if not isinstance(stages, list):
        raise PipelineConfigError("stages config should be an array of strings")
    globals_ = {str(k): str(v) for k, v in (merged.get("variables") or {}).items()}
    jobs = []
    for name, definition in merged.items():
        if name in RESERVED_KEYS or str(name).startswith("."):
            continue
        if not isinstance(definition, dict) or "script" not in definition:
            raise PipelineConfigError(f"jobs:{name} config should implement the script: keyword")
        stage = str(definition.get("stage", "test"))
        if stage not in stages:
            raise PipelineConfigError(
                f"jobs:{name} chosen stage {stage} does not exist; available stages are {', '.join(stages)}"
            )
        script = definition.get("before_script", []) + definition["script"]
        script = [script] if isinstance(script, str) else [str(line) for line in script]
        needs = definition.get("needs")
        variables = {**globals_, **{str(k): str(v) for k, v in (definition.get("variables") or {}).items()}}
        job = Job(next(ids), str(name), stage, script, list(needs) if needs is not None else None, variables)
        job.allow_failure = definition.get("allow_failure") is True
        artifacts = definition.get("artifacts") if isinstance(definition.get("artifacts"), dict) else {}
        junit = (artifacts.get("reports") or {}).get("junit") if isinstance(artifacts, dict) else None
        job.junit = [junit] if isinstance(junit, str) else [str(g) for g in junit or []]
        job.artifacts_when = str((artifacts or {}).get("when", "on_success"))
        jobs.append(job)
    if not jobs:
        raise PipelineConfigError("jobs config should contain at least one visible job")
    return [str(s) for s in stages], jobs


class PipelineRunner:
    """Runs a pipeline's pending jobs one at a time, in a fresh checkout of its commit, as a shell
    runner would; a job retried later runs in a new checkout. Cancellable."""

    def __init__(self, on_change: Callable[[Pipeline], None], lock: threading.RLock | None = None) -> None:
        self._on_change = on_change
        self._lock = lock if lock is not None else threading.RLock()
        self._active: set[int] = set()

    def start(self, pipeline: Pipeline, stages: list[str], repo: Path, env: dict[str, str]) -> None:
        with self._lock:
            pipeline.stages = pipeline.stages or list(stages)
            pipeline.workspace = Workspace(repo, env)
            process(pipeline)
        self._on_change(pipeline)
        self.kick(pipeline)

    def kick(self, pipeline: Pipeline) -> None:
        """Run the pipeline's pending jobs, unless its jobs do not run for real or already run."""
        with self._lock:
            if pipeline.workspace is None or pipeline.id in self._active:
                return
            self._active.add(pipeline.id)
        threading.Thread(target=self._run, args=(pipeline, pipeline.workspace), daemon=True).start()

    def cancel(self, pipeline: Pipeline) -> None:
        """`Ci::CancelPipelineService`: every cancelable job canceled (running ones stopped)."""
        with self._lock:
            pipeline.cancel_requested = True
            for job in pipeline.latest_jobs():
                cancel_job(job)
            process(pipeline)
        self._on_change(pipeline)

    def _next(self, pipeline: Pipeline) -> Job | None:
        """The next pending job, taken; None (and the pipeline left) when there is none."""
        with self._lock:
            process(pipeline)
            job = next((j for j in pipeline.latest_jobs() if j.status == "pending"), None)
            if job is None:
                self._active.discard(pipeline.id)
            else:
                job.begin()
                refresh(pipeline)
        return job

    def _run(self, pipeline: Pipeline, workspace: Workspace) -> None:
        workdir = Path(tempfile.mkdtemp(prefix=f"gitlab-pipeline-{pipeline.id}-"))
        try:
            archive = subprocess.run(
                ["git", "-C", str(workspace.repo), "archive", pipeline.sha], capture_output=True, check=True
            ).stdout
            subprocess.run(["tar", "-x", "-C", str(workdir)], input=archive, check=True)
        except (subprocess.CalledProcessError, OSError) as error:
            with self._lock:
                for job in pipeline.latest_jobs():
                    if job.status not in COMPLETED:
                        job.trace += f"ERROR: {error}\n"
                        job.finish("failed", "runner_system_failure")
                self._active.discard(pipeline.id)
                process(pipeline)
            self._on_change(pipeline)
            shutil.rmtree(workdir, ignore_errors=True)
            return
        try:
            while (taken := self._next(pipeline)) is not None:
                self._on_change(pipeline)
                self._run_job(pipeline, taken, workdir, workspace.env)
                with self._lock:
                    process(pipeline)
                self._on_change(pipeline)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)

    def _run_job(self, pipeline: Pipeline, job: Job, workdir: Path, env: dict[str, str]) -> None:
        script = "set -eo pipefail\n" + "\n".join(f"echo '$ '{_quote(line)}\n{line}" for line in job.script)
        job_env = {
            **env,
            **job.variables,
            "CI_JOB_ID": str(job.id),
            "CI_JOB_NAME": job.name,
            "CI_JOB_STAGE": job.stage,
            "CI_PROJECT_DIR": str(workdir),
        }
        with self._lock:
            if job.status != "running":  # canceled before it started
                return
            job.process = subprocess.Popen(
                ["bash", "-c", script],
                cwd=workdir,
                env=job_env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        output = job.process.stdout
        assert output is not None
        for line in iter(output.readline, b""):
            job.trace += line.decode("utf-8", errors="replace")
        code = job.process.wait()
        with self._lock:
            if job.status != "running":  # canceled meanwhile
                return
            if code != 0:
                job.trace += f"ERROR: Job failed: exit code {code}\n"
            job.finish("success" if code == 0 else "failed")
            wanted = {"always": True, "on_success": code == 0, "on_failure": code != 0}
            if job.junit and wanted.get(job.artifacts_when, False):
                job.report = collect_junit(workdir, job.junit)


def collect_junit(workdir: Path, globs: list[str]) -> JobReport | None:
    """The job's `artifacts:reports:junit` files, parsed and merged into one report (GitLab's suite
    for the job); None when no file matched."""
    files = sorted({f for g in globs for f in workdir.glob(g) if f.is_file()})
    if not files:
        return None
    merged = JobReport()
    for path in files:
        report = parse_junit(path)
        merged.cases.extend(report.cases)
        merged.suite_error = merged.suite_error or report.suite_error
    return merged


def _quote(line: str) -> str:
    return "'" + line.replace("'", "'\\''") + "'"
