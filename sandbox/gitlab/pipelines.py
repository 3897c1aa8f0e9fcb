"""Pipelines in the GitLab stand-in: jobs from the mirrored entrypoint YAML run for real.

Enough of GitLab CI for the project's templates: `stages`, jobs with `script`
(and `before_script`), `needs`, `variables`, `include: component` resolved
from a templates project with `spec: inputs` and `$[[ inputs.x ]]`. Each job
runs its script lines with bash in a fresh checkout of the pipeline's commit,
with the project's CI variables, the pipeline's variables and the predefined
CI_* ones. `image:` is ignored: jobs run on this machine, as a shell runner.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

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
        jobs.append(
            Job(next(ids), str(name), stage, script, list(needs) if needs is not None else None, variables)
        )
    if not jobs:
        raise PipelineConfigError("jobs config should contain at least one visible job")
    return [str(s) for s in stages], jobs


class PipelineRunner:
    """Runs pipelines one job at a time, each in its own checkout; cancellable."""

    def __init__(self, on_change: Any) -> None:
        self._on_change = on_change
        self._lock = threading.RLock()

    def start(self, pipeline: Pipeline, stages: list[str], repo: Path, env: dict[str, str]) -> None:
        thread = threading.Thread(target=self._run, args=(pipeline, stages, repo, env), daemon=True)
        thread.start()

    def cancel(self, pipeline: Pipeline) -> None:
        with self._lock:
            pipeline.cancel_requested = True
            for job in pipeline.jobs:
                if job.process is not None and job.process.poll() is None:
                    os.killpg(job.process.pid, signal.SIGTERM)
                elif job.status in ("created", "pending"):
                    job.status = "canceled"

    def _set(self, pipeline: Pipeline, status: str) -> None:
        pipeline.status = status
        pipeline.updated_at = _now()
        self._on_change(pipeline)

    def _run(self, pipeline: Pipeline, stages: list[str], repo: Path, env: dict[str, str]) -> None:
        self._set(pipeline, "pending")
        workdir = Path(tempfile.mkdtemp(prefix=f"gitlab-pipeline-{pipeline.id}-"))
        try:
            archive = subprocess.run(
                ["git", "-C", str(repo), "archive", pipeline.sha], capture_output=True, check=True
            ).stdout
            subprocess.run(["tar", "-x", "-C", str(workdir)], input=archive, check=True)
            self._set(pipeline, "running")
            failed = False
            for stage in stages:
                for job in [j for j in pipeline.jobs if j.stage == stage]:
                    if pipeline.cancel_requested or job.status == "canceled":
                        job.status = "canceled"
                        continue
                    if failed:
                        job.status = "skipped"
                        continue
                    self._run_job(pipeline, job, workdir, env)
                    failed = failed or job.status == "failed"
            statuses = {j.status for j in pipeline.jobs}
            final = (
                "canceled" if pipeline.cancel_requested else "failed" if "failed" in statuses else "success"
            )
            self._set(pipeline, final)
        except (subprocess.CalledProcessError, OSError) as error:
            for job in pipeline.jobs:
                job.trace += f"ERROR: {error}\n"
            self._set(pipeline, "failed")
        finally:
            shutil.rmtree(workdir, ignore_errors=True)

    def _run_job(self, pipeline: Pipeline, job: Job, workdir: Path, env: dict[str, str]) -> None:
        job.status, job.started_at = "running", _now()
        self._on_change(pipeline)
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
            if pipeline.cancel_requested:
                job.status = "canceled"
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
        job.finished_at = _now()
        if pipeline.cancel_requested:
            job.status = "canceled"
        else:
            job.status = "success" if code == 0 else "failed"
            if code != 0:
                job.trace += f"ERROR: Job failed: exit code {code}\n"
        self._on_change(pipeline)


def _quote(line: str) -> str:
    return "'" + line.replace("'", "'\\''") + "'"
