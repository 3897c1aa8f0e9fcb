"""`/compute/{system}/jobs` routes, following src/firecrest/compute/router.py.

Job ids must match `^[a-zA-Z0-9]+$` (else a validation 400); info and
metadata answer 404 "Job not found." when the scheduler does not know the job
(not yet visible, or metadata past Slurm's MinJobAge); cancel answers
scancel's text with 500, as the real server does. A submit with neither a
script nor a script path answers 408: the real server starts sbatch without
closing its stdin, and sbatch waits until the SSH command times out (the
sandbox answers at once).
"""

from __future__ import annotations

import os
import re
import time
from typing import Any

from flask import Flask, Response, jsonify, request

from sandbox.firecrest import params
from sandbox.firecrest.errors import ApiError, slurm_error, validation_error
from sandbox.firecrest.jobs import JobRequest
from sandbox.firecrest.state import Sandbox

_JOB_ID = re.compile(r"^[a-zA-Z0-9]+$")
#: What the real server answers when the SSH command outlives its execution timeout.
COMMAND_TIMEOUT = ApiError(408, "Command execution timeout limit exceeded.")
#: `time_window` values of the real router (JobsTimeWindow) in seconds.
TIME_WINDOWS = {"1h": 3600, "8h": 8 * 3600, "24h": 86400, "3d": 3 * 86400, "7d": 7 * 86400}


def _field(job: dict[str, Any], *names: str) -> Any:
    """A field by any of its accepted spellings (camelCase alias or snake_case name)."""
    for name in names:
        if job.get(name) is not None:
            return job[name]
    return None


def _string(job: dict[str, Any], *names: str) -> str | None:
    value = _field(job, *names)
    if value is not None and not isinstance(value, str):
        raise validation_error("body", names[0], "Input should be a valid string")
    return value


def parse_submission(body: Any) -> tuple[JobRequest | None, str | None]:
    """The request body as the real JobDescriptionModel reads it; a script path is returned apart."""
    if not isinstance(body, dict) or not isinstance(body.get("job"), dict):
        raise validation_error("body", "job", "Field required")
    job: dict[str, Any] = body["job"]
    workdir = _string(job, "workingDirectory", "working_directory", "current_working_directory")
    if workdir is None:
        raise validation_error("body", "workingDirectory", "Field required")
    env = job.get("env", job.get("environment"))
    if env is not None and (
        not isinstance(env, dict)
        or not all(isinstance(k, str) and isinstance(v, str) for k, v in env.items())
    ):
        raise validation_error("body", "env", "Input should be a valid dictionary of strings")
    request_ = JobRequest(
        working_directory=workdir,
        script=_string(job, "script") or "",
        env=env,
        name=_string(job, "name"),
        account=_string(job, "account"),
        partition=_string(job, "partition"),
        reservation=_string(job, "reservation"),
        standard_input=_string(job, "standardInput", "standard_input"),
        standard_output=_string(job, "standardOutput", "standard_output"),
        standard_error=_string(job, "standardError", "standard_error"),
    )
    return request_, _string(job, "scriptPath", "script_path")


def _job_id(job_id: str) -> str:
    if not _JOB_ID.match(job_id):
        raise validation_error("path", "job_id", "String should match pattern '^[a-zA-Z0-9]+$'")
    return job_id


def register(app: Flask, box: Sandbox) -> None:
    jobs = box.jobs

    @app.post("/compute/<system>/jobs")
    def submit(system: str) -> tuple[Response, int]:
        config = box.require(system, "scheduler", "ssh")
        job_request, script_path = parse_submission(request.get_json(silent=True))
        assert job_request is not None
        if script_path is not None:
            # `sbatch -- <path>` reads the file on the login node, which only has the sandbox file system.
            root = config.user_root(system)
            real = os.path.realpath(os.path.join(jobs.home(system), script_path))
            inside = real.startswith(f"{root}{os.sep}")
            if not inside or not os.path.isfile(real):
                raise slurm_error(f"sbatch: error: Unable to open file {script_path}\n")
            with open(real, encoding="utf-8", errors="replace") as handle:
                job_request.script = handle.read()
        elif not job_request.script:
            raise COMMAND_TIMEOUT
        created = jobs.submit(system, job_request, config.pending_seconds, config.job_invisible_seconds)
        return jsonify({"jobId": created.job_id}), 201

    @app.get("/compute/<system>/jobs")
    def list_jobs(system: str) -> Response:
        box.require(system, "scheduler", "ssh")
        params.flag("allusers")
        window = request.args.get("time_window", "24h")
        if window not in TIME_WINDOWS:
            raise validation_error("query", "time_window", "Input should be '1h', '8h', '24h', '3d' or '7d'")
        name = request.args.get("name")
        if name is not None and len(name) > 235:
            raise validation_error("query", "name", "String should have at most 235 characters")
        stand_in = box.config.placeholder_seconds
        found = jobs.listed(system, name, request.args.get("account"), TIME_WINDOWS[window], stand_in)
        return jsonify({"jobs": [jobs.info_json(job, stand_in) for job in found]})

    @app.get("/compute/<system>/jobs/<job_id>")
    def job_info(system: str, job_id: str) -> Response:
        box.require(system, "scheduler", "ssh")
        job = jobs.get(system, _job_id(job_id))
        if job is None:
            raise ApiError(404, "Job not found.")
        return jsonify({"jobs": [jobs.info_json(job, box.config.placeholder_seconds)]})

    @app.get("/compute/<system>/jobs/<job_id>/metadata")
    def job_metadata(system: str, job_id: str) -> Response:
        config = box.require(system, "scheduler", "ssh")
        job = jobs.get(system, _job_id(job_id))
        if job is None or (job.end is not None and time.time() - job.end > config.metadata_ttl):
            raise ApiError(404, "Job not found.")
        return jsonify({"jobs": [jobs.metadata_json(job)]})

    @app.delete("/compute/<system>/jobs/<job_id>")
    def cancel(system: str, job_id: str) -> tuple[str, int]:
        box.require(system, "scheduler", "ssh")
        jobs.cancel(system, _job_id(job_id))
        return "", 204
