"""The middleware as it is deployed: gunicorn and a Celery worker as subprocesses,
real Redis as the broker, real PostgreSQL, and the GitHub stand-in for token
checks and PR lookups; also the embedded default (SQLite and Celery's
SQLAlchemy transport, no servers)."""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from middleware.sources.github.signature import sign
from sandbox.github.server import GitHubHandle, run_github
from tests.conftest import service_url
from tests.middleware.conftest import load_payload, postgres_database, retarget

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
ADMIN = "e2e-admin-token-0123456789"
GH_TOKEN = "ghp_e2e_notification_token_0123"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Service:
    url: str
    github: GitHubHandle
    env: dict[str, str]
    logs: Path
    worker: subprocess.Popen[bytes] | None = None

    def start_worker(self) -> None:
        self.worker = subprocess.Popen(
            [
                str(BIN / "celery"),
                *("-A", "middleware.worker:celery", "worker", "--pool=solo", "-Q", "firecrest-ci"),
                "--loglevel=WARNING",
            ],
            cwd=ROOT,
            env=self.env,
            stdout=open(self.logs / "worker.out", "a"),  # noqa: SIM115
            stderr=subprocess.STDOUT,
        )  # fmt: skip

    def stop_worker(self) -> None:
        if self.worker is not None and self.worker.poll() is None:
            self.worker.terminate()
            try:
                self.worker.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.worker.kill()

    def api(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {ADMIN}", **kwargs.pop("headers", {})}
        return httpx.request(method, f"{self.url}{path}", headers=headers, timeout=10, **kwargs)

    def deliver(
        self, event: str, payload: dict[str, Any], secret: str, delivery: str | None = None
    ) -> httpx.Response:
        body = json.dumps(payload).encode()
        headers = {
            "X-GitHub-Event": event,
            "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
            "X-Hub-Signature-256": sign(secret, body),
            "Content-Type": "application/json",
        }
        return httpx.post(f"{self.url}/webhooks/github", content=body, headers=headers, timeout=10)

    def runs(self, repo_id: int) -> list[dict[str, Any]]:
        answer = self.api("GET", f"/api/repositories/{repo_id}/runs")
        answer.raise_for_status()
        return list(answer.json()["runs"])

    def wait_runs(self, repo_id: int, count: int, timeout: float = 20) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            runs = self.runs(repo_id)
            if len(runs) >= count:
                return runs
            time.sleep(0.1)
        return self.runs(repo_id)


def start_service(
    tmp: Path,
    database_url: str,
    broker: dict[str, str],
    github: GitHubHandle,
    extra: dict[str, str] | None = None,
) -> Iterator[Service]:
    port = free_port()
    logs = tmp / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "DATABASE_", "BROKER_"))},
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "DATABASE_URL": database_url,
        "MIDDLEWARE_SECRET_KEY": "e2e-secret-key-0123456789abcdefghijklmnop",
        "ADMIN_TOKEN": ADMIN,
        "PUBLIC_URL": f"http://127.0.0.1:{port}",
        "GITHUB_API_URL": github.url,
        # Configured but away: runs wait (a transient fault) instead of ending `error` at once.
        "GITLAB_URL": "http://127.0.0.1:9",
        "BIND": f"127.0.0.1:{port}",
        "WEB_CONCURRENCY": "2",
        "DATA_DIR": str(tmp / "state"),
        "LOG_LEVEL": "DEBUG",  # the most the logs say: no secret in it either
        **broker,
        **(extra or {}),
    }
    if extra and "PUBLIC_URL" in extra:
        env["PUBLIC_URL"] = extra["PUBLIC_URL"].replace("{port}", str(port))
    web = subprocess.Popen(
        [str(BIN / "gunicorn"), "-c", str(ROOT / "middleware" / "gunicorn.conf.py"), "middleware.wsgi:app"],
        cwd=ROOT,
        env=env,
        stdout=open(logs / "gunicorn.out", "w"),  # noqa: SIM115
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.2)
    else:
        web.kill()
        pytest.fail(f"gunicorn did not start: {(logs / 'gunicorn.out').read_text()[-2000:]}")
    service = Service(url, github, env, logs)
    service.start_worker()
    try:
        yield service
    finally:
        service.stop_worker()
        web.terminate()
        try:
            web.wait(timeout=15)
        except subprocess.TimeoutExpired:
            web.kill()


@pytest.fixture(scope="module")
def github() -> Iterator[GitHubHandle]:
    with run_github() as handle:
        handle.state.add_user("octo-admin", GH_TOKEN)
        handle.state.add_user("octocat")
        handle.state.add_user("mallory")
        handle.state.add_repo("octo-org/hpc-code")
        yield handle


@pytest.fixture(scope="module")
def production(tmp_path_factory: pytest.TempPathFactory, github: GitHubHandle) -> Iterator[Service]:
    """PostgreSQL + real Redis + gunicorn + Celery worker."""
    redis_url = service_url("TEST_REDIS_URL").rsplit("/", 1)[0] + "/3"
    subprocess.run(["redis-cli", "-u", redis_url, "FLUSHDB"], check=True, capture_output=True)
    with postgres_database() as database_url:
        yield from start_service(
            tmp_path_factory.mktemp("prod"), database_url, {"REDIS_URL": redis_url}, github
        )


@pytest.fixture(scope="module")
def embedded(tmp_path_factory: pytest.TempPathFactory, github: GitHubHandle) -> Iterator[Service]:
    """The embedded default: SQLite and Celery's SQLAlchemy transport; no servers."""
    tmp = tmp_path_factory.mktemp("embedded")
    yield from start_service(tmp, f"sqlite:///{tmp / 'mw.db'}", {}, github)


def register(service: Service, name: str = "octo-org/hpc-code") -> dict[str, Any]:
    answer = service.api(
        "POST",
        "/api/repositories",
        json={
            "full_name": name,
            "clone_url": f"https://github.com/{name}.git",
            "notification_token": GH_TOKEN,
            "firecrest_client_id": "client",
            "firecrest_client_secret": "firecrest-e2e-secret",
            "trusted_users": ["octocat"],
            "branches": ["main"],
        },
    )
    assert answer.status_code == 201, answer.text
    repo: dict[str, Any] = answer.json()
    for pipeline in ("cpu", "gpu"):
        made = service.api(
            "POST",
            f"/api/repositories/{repo['id']}/pipelines",
            json={"name": pipeline, "entrypoint": f"ci/{pipeline}.yml", "system": "cluster"},
        )
        assert made.status_code == 201, made.text
    return repo


def push(sha: str) -> dict[str, Any]:
    payload = retarget(load_payload("push"))
    payload.update(ref="refs/heads/main", after=sha, deleted=False)
    return payload


@pytest.mark.parametrize("flavour", ["production", "embedded"])
def test_push_becomes_runs_through_the_queue_and_redelivery_adds_none(flavour, request):
    service: Service = request.getfixturevalue(flavour)
    repo = register(service)
    sha = uuid.uuid4().hex + "abcdef01"
    answer = service.deliver("push", push(sha), repo["webhook_secret"], delivery=f"push-{flavour}")
    assert answer.status_code == 202, answer.text
    runs = service.wait_runs(repo["id"], 2)
    assert sorted(r["pipeline"] for r in runs) == ["cpu", "gpu"]
    assert {r["state"] for r in runs} == {"queued"}
    assert {r["sha"] for r in runs} == {sha}
    again = service.deliver("push", push(sha), repo["webhook_secret"], delivery=f"push-{flavour}")
    assert again.status_code == 200
    assert "duplicate" in again.text
    time.sleep(1.0)
    assert len(service.runs(repo["id"])) == 2
    ready = httpx.get(f"{service.url}/readyz", timeout=5)
    assert ready.status_code == 200, ready.text
    assert service.api("DELETE", f"/api/repositories/{repo['id']}").status_code == 204


def test_token_is_checked_live_with_pygithub(production):
    answer = production.api(
        "POST",
        "/api/repositories",
        json={
            "full_name": "octo-org/hpc-code",
            "clone_url": "https://github.com/octo-org/hpc-code.git",
            "notification_token": "ghp_revoked_token_xyz",
            "firecrest_client_id": "c",
            "firecrest_client_secret": "s",
        },
    )
    assert answer.status_code == 422
    assert "refused the notification token" in answer.json()["error"]
    assert "ghp_revoked_token_xyz" not in answer.text


def test_trusted_comment_pins_the_pr_head_and_carries_variables(production, github):
    repo = register(production)
    head = "c0ffee" + "1" * 34
    github.state.add_pull("octo-org/hpc-code", 2, head_sha=head, base_ref="main", author="mallory")
    opened = retarget(load_payload("pull_request", "opened.payload.json"))
    opened["pull_request"].update(number=2)
    opened["pull_request"]["head"].update(sha=head)
    opened["pull_request"]["base"]["ref"] = "main"
    opened["pull_request"]["head"]["repo"]["full_name"] = "mallory/hpc-code"
    opened["pull_request"]["user"].update(login="mallory", id=github.state.add_user("mallory"))
    seen = production.deliver("pull_request", opened, repo["webhook_secret"])  # the head, as seen here
    assert seen.status_code == 202 and "not trusted" in seen.text
    payload = retarget(load_payload("issue_comment", "created.payload.json"))
    payload["issue"]["number"] = 2
    payload["issue"]["pull_request"] = {"url": "https://api.github.com/repos/octo-org/hpc-code/pulls/2"}
    payload["comment"]["user"].update(login="octocat", id=github.state.add_user("octocat"))
    payload["comment"]["created_at"] = dt.datetime.now(dt.UTC).isoformat()
    payload["comment"]["body"] = "firecrest-ci run cpu;DEBUG=1\nthanks!"
    answer = production.deliver("issue_comment", payload, repo["webhook_secret"])
    assert answer.status_code == 202, answer.text
    runs = production.wait_runs(repo["id"], 1)
    assert [(r["pipeline"], r["sha"], r["trigger"], r["ref"], r["variables"]) for r in runs] == [
        ("cpu", head, "comment", "pr-2", ["DEBUG"])
    ]
    payload["comment"]["user"].update(login="mallory", id=github.state.add_user("mallory"))
    refused = production.deliver("issue_comment", payload, repo["webhook_secret"])
    assert refused.status_code == 202
    assert "untrusted user mallory" in refused.text
    assert production.api("DELETE", f"/api/repositories/{repo['id']}").status_code == 204


def test_api_trigger_with_basic_auth(production):
    repo = register(production)
    sha = "d" * 40
    answer = httpx.post(
        f"{production.url}/api/trigger",
        content=f"ref: sha:{sha}\npipeline: gpu\nvariables:\n  N: 4\n",
        auth=(str(repo["id"]), repo["webhook_secret"]),
        headers={"Content-Type": "application/yaml"},
        timeout=10,
    )
    assert answer.status_code == 202, answer.text
    runs = production.wait_runs(repo["id"], 1)
    assert [(r["pipeline"], r["sha"], r["trigger"]) for r in runs] == [("gpu", sha, "api")]
    wrong = httpx.post(
        f"{production.url}/api/trigger", json={"ref": "main"}, auth=(str(repo["id"]), "nope"), timeout=10
    )
    assert wrong.status_code == 401
    reserved = httpx.post(
        f"{production.url}/api/trigger",
        json={"ref": f"sha:{sha}", "pipeline": "gpu", "variables": {"FIRECREST_CLIENT_SECRET": "x"}},
        auth=(str(repo["id"]), repo["webhook_secret"]),
        timeout=10,
    )
    assert reserved.status_code == 422
    assert production.api("DELETE", f"/api/repositories/{repo['id']}").status_code == 204


def test_logs_have_no_secrets(production):
    text = "".join(path.read_text() for path in production.logs.iterdir())
    for secret in (ADMIN, GH_TOKEN, "firecrest-e2e-secret", production.env["MIDDLEWARE_SECRET_KEY"]):
        assert secret not in text
    assert '"outcome"' in text  # JSON delivery log lines were written


def test_refuses_to_start_without_secrets_with_one_clear_line(tmp_path):
    env = {
        k: v for k, v in os.environ.items() if k not in ("MIDDLEWARE_SECRET_KEY", "ADMIN_TOKEN", "DEMO_MODE")
    }
    env.update(DATA_DIR=str(tmp_path), BIND=f"127.0.0.1:{free_port()}")
    done = subprocess.run(
        [str(BIN / "gunicorn"), "-c", str(ROOT / "middleware" / "gunicorn.conf.py"), "middleware.wsgi:app"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "cannot start: MIDDLEWARE_SECRET_KEY and ADMIN_TOKEN must be set" in done.stderr
    assert "Traceback" not in done.stderr
