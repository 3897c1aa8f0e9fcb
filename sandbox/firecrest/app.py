"""Flask app factory for the sandbox FirecREST v2 target (a stand-in, see package docs).

Routes follow pyfirecrest's v2 client and the real server's routers: status,
compute and filesystem ops, plus `/auth/token` and test controls under
`/_sandbox/`. Errors have the real shape:
`{"errorType": "error", "message": ..., "causedBy": null, "data": null, "user": ...}`.
"""

from __future__ import annotations

import datetime as dt
import os
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from flask import Flask, Response, g, jsonify, request
from werkzeug.exceptions import HTTPException

from sandbox.firecrest import files
from sandbox.firecrest.auth import TokenStore, client_credentials
from sandbox.firecrest.config import Knobs, SandboxConfig
from sandbox.firecrest.jobs import JobError, JobManager

API_PREFIXES = ("/status/", "/compute/", "/filesystem/")


def error_body(message: str, user: str | None) -> dict[str, Any]:
    return {"errorType": "error", "message": message, "causedBy": None, "data": None, "user": user}


class Sandbox:
    """Everything one app instance owns: knobs, tokens, jobs, counters."""

    def __init__(self, config: SandboxConfig) -> None:
        self.knobs = Knobs(config)
        self.tokens = TokenStore(config.client_id, config.client_secret)
        self.uid = str(os.getuid())
        self.gid = str(os.getgid())
        self.jobs = JobManager(config.root / ".spool", self.uid, config.username, config.group)
        self.stats: Counter[str] = Counter()
        self.faults: Counter[str] = Counter()
        self.token_requests = 0
        self._lock = threading.Lock()
        for system in config.systems:
            (config.user_root(system) / config.username).mkdir(parents=True, exist_ok=True)

    def count(self, key: str) -> None:
        with self._lock:
            self.stats[key] += 1

    def fault(self, kind: str) -> None:
        with self._lock:
            self.faults[kind] += 1


def _health(service: str, now: str, broken: dict[str, str], latency: float) -> dict[str, Any]:
    return {
        "serviceType": service,
        "lastChecked": now,
        "latency": latency,
        "healthy": service not in broken,
        "message": broken.get(service),
    }


def create_app(config: SandboxConfig) -> Flask:
    app = Flask("sandbox.firecrest")
    box = Sandbox(config)
    app.extensions["sandbox"] = box

    def cfg() -> SandboxConfig:
        return box.knobs.current

    def fail(status: int, message: str) -> Response:
        response = jsonify(error_body(message, None if status == 401 else cfg().username))
        response.status_code = status
        return response

    # -- cross-cutting: version header, auth, faults, stats -------------------------

    @app.after_request
    def _version(response: Response) -> Response:
        response.headers["f7t-appversion"] = cfg().api_version
        fault = g.get("after_commit_fault")
        if fault:
            return fail(fault, "Injected fault: the request was processed but the answer was lost")
        return response

    @app.before_request
    def _guard() -> Response | None:
        path = request.path
        if not path.startswith(API_PREFIXES):
            return None
        rule = request.url_rule.rule if request.url_rule else path
        box.count(f"{request.method} {rule}")
        refusal = box.tokens.check(request.headers.get("Authorization"))
        if refusal:
            return fail(refusal.status, refusal.message)
        current = cfg()
        rates = (current.fault_timeout_rate, current.fault_429_rate, current.fault_5xx_rate)
        if any(rates):
            draw = box.knobs.draw()
            if draw < rates[0]:
                box.fault("timeout")
                time.sleep(current.fault_timeout_seconds)
            elif draw < rates[0] + rates[1]:
                box.fault("429")
                response = fail(429, "Too many requests")
                response.headers["Retry-After"] = "1" if box.knobs.draw() < 0.3 else "0"
                return response
            elif draw < sum(rates):
                status = (500, 502, 503)[int(box.knobs.draw() * 3)]
                if request.method in ("POST", "DELETE", "PUT") and box.knobs.draw() < 0.5:
                    box.fault(f"{status}-after-commit")
                    g.after_commit_fault = status
                    return None
                box.fault(str(status))
                return fail(status, "Injected fault")
        return None

    @app.errorhandler(JobError)
    def _job_error(error: JobError) -> Response:
        return fail(error.status, error.message)

    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException) -> Response:
        return fail(error.code or 500, error.description or error.name)

    def system_or_404(system: str) -> None:
        if system not in cfg().systems:
            raise JobError(404, "System not found")

    def require(system: str, *services: str) -> None:
        system_or_404(system)
        broken = cfg().unhealthy.get(system, {})
        root = cfg().user_root(system)
        for service in services:
            if service in broken:
                if service == "filesystem":
                    raise JobError(503, f"The requested filesystem ({root} on {system}) is unhealthy.")
                raise JobError(
                    503, f"The {service} service for the requested system ({system}) is unhealthy."
                )

    # -- auth -----------------------------------------------------------------------

    @app.post("/auth/token")
    def token() -> Response | tuple[Response, int]:
        box.token_requests += 1
        form = {k: v for k, v in request.form.items()}
        if form.get("grant_type") != "client_credentials":
            return jsonify({"error": "unsupported_grant_type"}), 400
        client_id, client_secret = client_credentials(form, request.headers.get("Authorization"))
        if not box.tokens.client_ok(client_id, client_secret):
            return jsonify(
                {"error": "invalid_client", "error_description": "Invalid client credentials"}
            ), 401
        lifetime = cfg().token_lifetime
        return jsonify(
            {
                "access_token": box.tokens.issue(lifetime),
                "token_type": "Bearer",
                "expires_in": int(lifetime),
                "scope": "firecrest-v2",
            }
        )

    # -- status -----------------------------------------------------------------------

    @app.get("/status/systems")
    def systems() -> Response:
        now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        current = cfg()
        entries = []
        for name in current.systems:
            broken = current.unhealthy.get(name, {})
            root = str(current.user_root(name))

            entries.append(
                {
                    "name": name,
                    "ssh": {
                        "host": "127.0.0.1",
                        "port": 22,
                        "proxyHost": None,
                        "proxyPort": None,
                        "maxClients": 50,
                        "timeout": {
                            "connection": 5,
                            "login": 5,
                            "commandExecution": 10,
                            "idleTimeout": 60,
                            "keepAlive": 5,
                        },
                    },
                    "scheduler": {
                        "type": "slurm",
                        "connectionMode": "ssh",
                        "version": "22.05.8",
                        "apiUrl": None,
                        "apiVersion": None,
                        "timeout": 10,
                    },
                    "servicesHealth": [
                        _health("scheduler", now, broken, 0.1),
                        _health("ssh", now, broken, 0.09),
                        {**_health("filesystem", now, broken, 0.1), "path": root},
                    ],
                    "probing": {
                        "services": {
                            "ssh": {"timeout": 5},
                            "filesystem": {"timeout": 5},
                            "scheduler": {"timeout": 10},
                        },
                        "intervalCheck": 60,
                    },
                    "lastHealthCheck": now,
                    "fileSystems": [{"path": root, "dataType": "users", "defaultWorkDir": True}],
                    "dataOperation": {
                        "datatransfer_jobs_directives": [],
                        "max_ops_file_size": current.max_ops_file_size,
                        "data_transfer": None,
                    },
                }
            )
        return jsonify({"systems": entries})

    @app.get("/status/<system>/userinfo")
    def userinfo(system: str) -> Response:
        require(system, "ssh")
        current = cfg()
        group = {"id": box.gid, "name": current.group}
        return jsonify({"user": {"id": box.uid, "name": current.username}, "group": group, "groups": [group]})

    # -- compute ----------------------------------------------------------------------

    @app.post("/compute/<system>/jobs")
    def submit(system: str) -> tuple[Response, int]:
        require(system, "scheduler", "ssh")
        body = request.get_json(silent=True)
        job = body.get("job") if isinstance(body, dict) else None
        if not isinstance(job, dict):
            raise JobError(422, "Field required: job")
        script = job.get("script")
        if job.get("scriptPath") or job.get("script_path"):
            remote = files.confine(
                cfg().user_root(system), system, job.get("scriptPath") or job.get("script_path")
            )
            if not remote.is_file():
                raise JobError(
                    400,
                    "Unexpected Slurm command response. exit_status:1 std_err:sbatch: error: "
                    f"Unable to open file {remote}",
                )
            script = remote.read_text()
        if not isinstance(script, str) or not script.strip():
            raise JobError(422, "Either script or scriptPath is required")
        workdir_raw = job.get("workingDirectory") or job.get("working_directory")
        workdir = files.confine(cfg().user_root(system), system, workdir_raw)
        env = job.get("env") or {}
        if not isinstance(env, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in env.items()
        ):
            raise JobError(422, "env must map names to strings")
        created = box.jobs.submit(
            system,
            workdir,
            script,
            env,
            job.get("account"),
            job.get("partition"),
            job.get("name"),
            cfg().pending_seconds,
            cfg().job_invisible_seconds,
        )
        return jsonify({"jobId": created.job_id}), 201

    @app.get("/compute/<system>/jobs")
    def list_jobs(system: str) -> Response:
        require(system, "scheduler", "ssh")
        found = box.jobs.listed(system, request.args.get("name"), request.args.get("account"))
        return jsonify({"jobs": [box.jobs.info_json(j) for j in found]})

    @app.get("/compute/<system>/jobs/<job_id>")
    def job_info(system: str, job_id: str) -> Response:
        require(system, "scheduler", "ssh")
        job = box.jobs.get(system, job_id)
        if job is None:
            raise JobError(404, "Job not found.")
        return jsonify({"jobs": [box.jobs.info_json(job)]})

    @app.get("/compute/<system>/jobs/<job_id>/metadata")
    def job_metadata(system: str, job_id: str) -> Response:
        require(system, "scheduler", "ssh")
        job = box.jobs.get(system, job_id)
        if job is None or (job.end is not None and time.time() - job.end > cfg().metadata_ttl):
            raise JobError(404, "Job not found.")
        return jsonify({"jobs": [box.jobs.metadata_json(job)]})

    @app.delete("/compute/<system>/jobs/<job_id>")
    def cancel(system: str, job_id: str) -> tuple[str, int]:
        require(system, "scheduler", "ssh")
        box.jobs.cancel(system, job_id)
        return "", 204

    # -- filesystem ---------------------------------------------------------------------

    def fs_path(system: str, raw: str | None = None) -> Path:
        require(system, "filesystem", "ssh")
        return files.confine(
            cfg().user_root(system), system, raw if raw is not None else request.args.get("path")
        )

    def flag(name: str) -> bool:
        return request.args.get(name, "false").lower() in ("true", "1", "yes")

    @app.get("/filesystem/<system>/ops/ls")
    def ls(system: str) -> Response:
        found = files.ls(
            fs_path(system),
            hidden=flag("showHidden"),
            recursive=flag("recursive"),
            user=cfg().username,
            group=cfg().group,
        )
        return jsonify({"output": found})

    @app.get("/filesystem/<system>/ops/head")
    def head(system: str) -> Response:
        path = fs_path(system)
        return jsonify(
            {
                "output": files.head(
                    path, request.args.get("bytes"), request.args.get("lines"), flag("skipTrailing")
                )
            }
        )

    @app.get("/filesystem/<system>/ops/tail")
    def tail(system: str) -> Response:
        path = fs_path(system)
        return jsonify(
            {
                "output": files.tail(
                    path, request.args.get("bytes"), request.args.get("lines"), flag("skipHeading")
                )
            }
        )

    @app.get("/filesystem/<system>/ops/view")
    def view(system: str) -> Response:
        path = fs_path(system)
        text = files.view(path, request.args.get("size"), request.args.get("offset"), cfg().max_ops_file_size)
        return jsonify({"output": text})

    @app.get("/filesystem/<system>/ops/stat")
    def stat(system: str) -> Response:
        return jsonify({"output": files.file_stat(fs_path(system), flag("dereference"))})

    @app.get("/filesystem/<system>/ops/checksum")
    def checksum(system: str) -> Response:
        return jsonify({"output": files.checksum(fs_path(system))})

    @app.post("/filesystem/<system>/ops/mkdir")
    def mkdir(system: str) -> tuple[Response, int]:
        body = request.get_json(silent=True) or {}
        raw = body.get("sourcePath") or body.get("path") if isinstance(body, dict) else None
        path = fs_path(system, str(raw) if raw else "")
        files.mkdir(path, bool(body.get("parent")))
        return jsonify({"output": files.entry(path, str(path), cfg().username, cfg().group)}), 201

    @app.delete("/filesystem/<system>/ops/rm")
    def rm(system: str) -> tuple[str, int]:
        files.rm(fs_path(system), cfg().user_root(system))
        return "", 204

    @app.post("/filesystem/<system>/ops/upload")
    def upload(system: str) -> tuple[str, int]:
        directory = fs_path(system)
        sent = request.files.get("file")
        if sent is None:
            raise JobError(422, "Field required: file")
        files.upload(directory, sent.filename or "", sent.read(), cfg().max_ops_file_size)
        return "", 204

    @app.get("/filesystem/<system>/ops/download")
    def download(system: str) -> Response:
        data = files.download(fs_path(system), cfg().max_ops_file_size)
        return Response(data, mimetype="application/octet-stream")

    # -- controls for tests, the demo and benchmarks (loopback, no auth) -------------------

    @app.get("/_sandbox/jobs")
    def control_jobs() -> Response:
        listed = []
        for job in box.jobs.all():
            info = box.jobs.info_json(job)
            listed.append(
                {
                    "jobId": job.job_id,
                    "system": job.system,
                    "name": job.name,
                    "state": job.state,
                    "exitCode": info["status"]["exitCode"],
                    "workingDirectory": str(job.working_dir),
                    "standardOutput": str(job.stdout),
                    "submitted": job.submitted_at,
                    "start": job.start,
                    "end": job.end,
                }
            )
        return jsonify({"jobs": listed})

    @app.get("/_sandbox/stats")
    def control_stats() -> Response:
        return jsonify(
            {
                "requests": dict(box.stats),
                "total": sum(box.stats.values()),
                "token_requests": box.token_requests,
                "faults": dict(box.faults),
            }
        )

    @app.post("/_sandbox/stats/reset")
    def control_stats_reset() -> tuple[str, int]:
        box.stats.clear()
        box.faults.clear()
        box.token_requests = 0
        return "", 204

    @app.patch("/_sandbox/config")
    def control_config() -> Response | tuple[Response, int]:
        changes = request.get_json(silent=True)
        if not isinstance(changes, dict):
            return jsonify({"error": "send a JSON object of knobs"}), 400
        try:
            box.knobs.update(changes)
        except (ValueError, TypeError) as error:
            return jsonify({"error": str(error)}), 400
        return jsonify({"ok": True})

    @app.get("/_sandbox/tokens")
    def control_tokens() -> Response:
        return jsonify({"tokens": box.tokens.known_tokens(), "issued": box.tokens.issued})

    @app.post("/_sandbox/tokens/revoke")
    def control_revoke() -> tuple[str, int]:
        box.tokens.revoke_all()
        return "", 204

    return app
