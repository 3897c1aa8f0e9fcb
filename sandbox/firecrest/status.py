"""`GET /status/systems`, `/status/{system}/userinfo` and `/status/liveness/`, shaped like the real ones.

The systems entry copies the recorded response's structure (servicesHealth
for scheduler, ssh and filesystem; fileSystems with defaultWorkDir; probing;
dataOperation with max_ops_file_size and the S3 backend, or null). The file system path is the real absolute
local directory jobs run in. Unhealthy services (a knob) say `healthy: false`
with their message, and the operations that need them answer 503 as the real
dependency checks do.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask import Flask, Response, jsonify, request

from sandbox.firecrest.config import SandboxConfig
from sandbox.firecrest.s3 import PREFIX as S3_PREFIX
from sandbox.firecrest.state import Sandbox

_LATENCY = {"scheduler": 0.1, "ssh": 0.09, "filesystem": 0.1}


def system_entry(config: SandboxConfig, name: str, now: str, public_url: str = "") -> dict[str, Any]:
    broken = config.unhealthy.get(name, {})
    root = str(config.user_root(name))

    def health(service: str, ok_message: str | None = None) -> dict[str, Any]:
        return {
            "serviceType": service,
            "lastChecked": now,
            "latency": _LATENCY[service],
            "healthy": service not in broken,
            "message": broken.get(service, ok_message),
        }

    return {
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
            health("scheduler", "[{'mode': 'primary', 'hostname': 'localhost', 'pinged': 'UP'}]"),
            health("ssh"),
            {**health("filesystem"), "path": root},
        ],
        "probing": {
            "services": {"ssh": {"timeout": 5}, "filesystem": {"timeout": 5}, "scheduler": {"timeout": 10}},
            "intervalCheck": 60,
        },
        "lastHealthCheck": now,
        "fileSystems": [{"path": root, "dataType": "users", "defaultWorkDir": True}],
        "dataOperation": {
            "datatransfer_jobs_directives": [],
            "max_ops_file_size": config.max_ops_file_size,
            "data_transfer": data_transfer(config, public_url),
        },
    }


def data_transfer(config: SandboxConfig, public_url: str) -> dict[str, Any] | None:
    """The backend as the real server serialises its S3DataTransfer: camelCase, secrets masked."""
    if config.data_transfer is None:
        return None
    hidden = "**********"
    return {
        "serviceType": config.data_transfer,
        "name": "sandbox-s3",
        "privateUrl": hidden,
        "publicUrl": public_url,
        "accessKeyId": hidden,
        "secretAccessKey": hidden,
        "region": "us-east-1",
        "ttl": config.s3_url_ttl,
        "tenant": None,
        "multipart": {
            "use_split": False,
            "max_part_size": config.s3_max_part_size,
            "parallel_runs": 1,
            "tmp_folder": "tmp",
        },
        "bucketLifecycleConfiguration": {"days": 10},
    }


def register(app: Flask, box: Sandbox) -> None:
    @app.get("/status/systems")
    def systems() -> Response:
        config = box.config
        now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        s3 = f"{request.host_url.rstrip('/')}{S3_PREFIX}"
        return jsonify({"systems": [system_entry(config, name, now, s3) for name in config.systems]})

    @app.get("/status/liveness/")
    def liveness() -> Response:
        """No token needed; the sandbox checks health on every request, so every run is "now"."""
        now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        return jsonify({"healthcheckRuns": {name: now for name in box.config.systems}, "lastUpdate": 0})

    @app.get("/status/<system>/userinfo")
    def userinfo(system: str) -> Response:
        config = box.require(system, "ssh")
        group = {"id": box.gid, "name": config.group}
        return jsonify(
            {
                "user": {"id": box.uid, "name": config.username},
                "group": group,
                "groups": [group],
                "accounts": [{"name": config.account, "default": True}],
            }
        )
