"""A real Celery worker (prefork, as deployed) writes every log line to stderr as one JSON
object: the middleware's lines from the pool's processes without Celery's `[...: WARNING/...]`
prefix, and Celery's own lines too. Its run step here fails because the worker is given another
key than the one the credentials were stored with: an ERROR line, never a secret."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from middleware.services import EXTENSION
from middleware.settings import Settings
from tests.middleware.conftest import (
    ADMIN,
    GOOD_TOKEN,
    SECRET_KEY,
    admin,
    deliver,
    load_payload,
    make_app,
    repository_body,
    retarget,
)

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
OTHER_KEY = "worker-log-lines-other-key-0123456789abcdef"
FAILED = "run step failed; will retry"


def queued_run(tmp_path: Path, database_url: str) -> None:
    """A registration and a run due now, stored under SECRET_KEY."""
    app = make_app(tmp_path / "web", database_url)
    try:
        client = app.test_client()
        repo = client.post("/api/repositories", json=repository_body(), headers=admin()).get_json()
        made = client.post(
            f"/api/repositories/{repo['id']}/pipelines",
            json={"name": "cpu", "entrypoint": "ci/cpu.yml", "system": "c"},
            headers=admin(),
        )
        assert made.status_code == 201, made.get_data(as_text=True)
        payload = retarget(load_payload("push"))
        payload.update(ref="refs/heads/main", after="b" * 40, deleted=False)
        assert deliver(client, "push", payload, repo["webhook_secret"]).status_code == 202
    finally:
        app.extensions[EXTENSION].db.dispose()


def read_lines(path: Path) -> list[str]:
    return path.read_text(errors="replace").splitlines() if path.exists() else []


def test_every_worker_log_line_is_a_json_object(tmp_path):
    database_url = f"sqlite:///{tmp_path / 'mw.db'}"
    queued_run(tmp_path, database_url)
    keep = {k: v for k, v in os.environ.items() if k.lower() not in Settings.model_fields}
    env = {
        **{k: v for k, v in keep.items() if not k.upper().endswith("_FILE")},
        "DATA_DIR": str(tmp_path / "worker"),
        "DATABASE_URL": database_url,
        "MIDDLEWARE_SECRET_KEY": OTHER_KEY,
        "ADMIN_TOKEN": ADMIN,
        "GITLAB_URL": "http://127.0.0.1:9",
        "LOG_LEVEL": "INFO",
        "PYTHONWARNINGS": "ignore",  # Celery warns when run as root (as in CI containers): not a log line
    }
    err = tmp_path / "worker.err"
    with open(tmp_path / "worker.out", "w") as out, open(err, "w") as errors:
        worker = subprocess.Popen(
            [
                str(BIN / "celery"),
                *("-A", "middleware.worker:celery", "worker", "--concurrency=1", "-Q", "firecrest-ci"),
                "--loglevel=INFO",
            ],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=errors,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and worker.poll() is None:
                if any(FAILED in line for line in read_lines(err)):
                    break
                time.sleep(0.2)
        finally:
            worker.terminate()
            try:
                worker.wait(timeout=20)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
    lines = read_lines(err)
    assert lines, (tmp_path / "worker.out").read_text()
    records: list[dict[str, Any]] = []
    for line in lines:
        assert line.startswith("{"), f"not a JSON object: {line!r}"
        records.append(json.loads(line))
    failed = [r for r in records if r["message"] == FAILED]
    assert failed, lines
    assert failed[0]["level"] == "ERROR" and failed[0]["error"].startswith("KeyRingMismatch: ")
    assert "exc_info" not in failed[0]  # the operator's to fix, not a bug: no traceback
    celery_lines = [r for r in records if r["name"].startswith("celery")]
    assert celery_lines, lines  # Celery's own lines too, without a task's arguments
    assert all("data" not in r for r in celery_lines)
    text = err.read_text()
    for secret in (SECRET_KEY, OTHER_KEY, ADMIN, GOOD_TOKEN, "firecrest-secret-value-xyz"):
        assert secret not in text
