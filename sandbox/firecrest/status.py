"""`GET /status/systems` and `GET /status/{system}/userinfo`, shaped like the real ones.

The systems entry copies the recorded response's structure (servicesHealth
for scheduler, ssh and filesystem; fileSystems with defaultWorkDir; probing;
dataOperation.max_ops_file_size). The file system path is the real absolute
local directory jobs run in. Unhealthy services (a knob) say `healthy: false`
with their message, and the operations that need them answer 503 as the real
dependency checks do.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask import Flask, Response, jsonify

from sandbox.firecrest.config import SandboxConfig
from sandbox.firecrest.state import Sandbox

_LATENCY = {"scheduler": 0.1, "ssh": 0.09, "filesystem": 0.1}


def system_entry(config: SandboxConfig, name: str, now: str) -> dict[str, Any]:
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
            "data_transfer": None,
        },
    }


def register(app: Flask, box: Sandbox) -> None:
    @app.get("/status/systems")
    def systems() -> Response:
        config = box.config
        now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        return jsonify({"systems": [system_entry(config, name, now) for name in config.systems]})

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
