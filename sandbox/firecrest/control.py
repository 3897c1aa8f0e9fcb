"""Test and benchmark controls under `/_sandbox/` (no FirecREST counterpart).

No authentication, loopback clients only. They let tests see every job
(to assert exactly one HPC job per run), count requests and faults, change
knobs while the sandbox runs, script exact faults for the next requests of
one route, and forget all tokens.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, Response, abort, jsonify, request

from sandbox.firecrest.config import RUNTIME_KNOBS
from sandbox.firecrest.state import Sandbox

LOOPBACK = ("127.0.0.1", "::1", "::ffff:127.0.0.1")


def register(app: Flask, box: Sandbox) -> None:
    @app.before_request
    def _loopback_only() -> None:
        if request.path.startswith("/_sandbox/") and request.remote_addr not in LOOPBACK:
            abort(403)

    @app.get("/_sandbox/jobs")
    def control_jobs() -> Response:
        listed: list[dict[str, Any]] = []
        for job in box.jobs.all():
            info = box.jobs.info_json(job)
            listed.append(
                {
                    "jobId": job.job_id,
                    "system": job.system,
                    "name": job.name,
                    "state": info["status"]["state"],
                    "exitCode": info["status"]["exitCode"],
                    "workingDirectory": job.working_dir,
                    "standardOutput": job.stdout,
                    "standardError": job.stderr,
                    "account": job.account,
                    "partition": job.partition,
                    "timeLimit": job.time_limit,
                    "submitted": job.submitted_at,
                    "start": job.start,
                    "end": job.end,
                    "pid": job.process.pid if job.process is not None else None,
                }
            )
        return jsonify({"jobs": listed})

    @app.get("/_sandbox/stats")
    def control_stats() -> Response:
        return jsonify(box.stats())

    @app.post("/_sandbox/stats/reset")
    def control_stats_reset() -> tuple[str, int]:
        box.reset_stats()
        return "", 204

    @app.get("/_sandbox/config")
    def control_config_read() -> Response:
        config = box.config
        return jsonify({name: getattr(config, name) for name in RUNTIME_KNOBS})

    @app.patch("/_sandbox/config")
    def control_config() -> Response | tuple[Response, int]:
        changes = request.get_json(silent=True)
        if not isinstance(changes, dict):
            return jsonify({"error": "send a JSON object of knobs"}), 400
        try:
            config = box.update(changes)
        except (ValueError, TypeError) as error:
            return jsonify({"error": str(error)}), 400
        return jsonify({name: getattr(config, name) for name in RUNTIME_KNOBS})

    @app.post("/_sandbox/faults")
    def control_faults() -> tuple[Response, int]:
        """`{"request": "POST /compute/{system}/jobs", "faults": ["502", "502-after-commit"]}`."""
        body = request.get_json(silent=True)
        if not isinstance(body, dict) or not isinstance(body.get("request"), str):
            return jsonify({"error": 'send {"request": "METHOD /route/{template}", "faults": [...]}'}), 400
        labels = body.get("faults")
        if not isinstance(labels, list) or not all(isinstance(label, str) for label in labels):
            return jsonify({"error": "faults must be a list of labels"}), 400
        try:
            box.faults.script(body["request"], labels)
        except ValueError as error:
            return jsonify({"error": str(error)}), 400
        return jsonify({"queued": labels}), 200

    @app.get("/_sandbox/tokens")
    def control_tokens() -> Response:
        return jsonify({"tokens": box.tokens.known_tokens(), "issued": box.tokens.issued})

    @app.post("/_sandbox/tokens/revoke")
    def control_revoke() -> tuple[str, int]:
        box.tokens.revoke_all()
        return "", 204
