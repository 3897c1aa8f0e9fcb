"""The CI/CD Ext loop, end to end on the embedded default (no Redis, no root).

Local stand-ins play GitHub, the managed GitLab and the HPC centre's FirecREST;
the middleware runs as it would in production (gunicorn and a Celery worker,
here on SQLite and Celery's SQLAlchemy transport). A sample repository is
served read-only over HTTP as the "public" source; a push is delivered as a
signed webhook, and the commit status that comes back links the GitLab
pipeline whose job ran on the (sandbox) HPC system.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import gitlab
import httpx

from middleware.sources.github.signature import sign
from sandbox.firecrest.config import SandboxConfig
from sandbox.firecrest.server import run_sandbox
from sandbox.github.server import run_github
from sandbox.gitlab.server import run_gitlab

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
ADMIN = "demo-admin-token"
GH_TOKEN = "ghp_demo_notification_token"  # noqa: S105 - the stand-in's throwaway token
ENTRYPOINT = """stages: [test]
include:
  - component: $CI_SERVER_FQDN/firecrest-ci/templates/firecrest-job@main
    inputs:
      script: ci/hpc-job.sh
      time: 5m
"""


def say(text: str) -> None:
    print(f"\033[1m>> {text}\033[0m", flush=True)


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=demo", "-c", "user.email=demo@example.org", *args],
        cwd=cwd, check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class QuietFiles(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        return


class Source:
    """A sample repository, served read-only over plain HTTP (git's dumb protocol)."""

    def __init__(self, root: Path) -> None:
        self.work = root / "sample-code"
        self.work.mkdir()
        git(self.work, "init", "-q", "-b", "main")
        self.served = root / "served"
        self.served.mkdir()
        self.bare = self.served / "hpc-code.git"
        git(root, "init", "-q", "--bare", str(self.bare))
        handler = functools.partial(QuietFiles, directory=str(self.served))
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/hpc-code.git"

    def commit(self, script: str, message: str) -> str:
        (self.work / "ci").mkdir(exist_ok=True)
        (self.work / "ci" / "cpu.yml").write_text(ENTRYPOINT)
        (self.work / "ci" / "hpc-job.sh").write_text(script)
        git(self.work, "add", ".")
        git(self.work, "commit", "-q", "-m", message)
        git(self.work, "push", "-q", "--force", str(self.bare), "HEAD:main")
        git(self.bare, "update-server-info")
        return git(self.work, "rev-parse", "HEAD")


def start_middleware(tmp: Path, env: dict[str, str]) -> list[subprocess.Popen[bytes]]:
    logs = tmp / "middleware.log"
    print(f"   (middleware logs: {logs})")
    web = subprocess.Popen(
        [str(BIN / "gunicorn"), "-c", str(ROOT / "middleware" / "gunicorn.conf.py"), "middleware.wsgi:app"],
        cwd=ROOT, env=env, stdout=open(logs, "a"), stderr=subprocess.STDOUT,  # noqa: SIM115
    )  # fmt: skip
    worker = subprocess.Popen(
        [str(BIN / "celery"), "-A", "middleware.worker:celery", "worker", "--pool=solo", "-Q", "firecrest-ci",
         "--loglevel=ERROR"],
        cwd=ROOT, env=env, stdout=open(logs, "a"), stderr=subprocess.STDOUT,  # noqa: SIM115
    )  # fmt: skip
    return [web, worker]


def middleware_env(tmp: Path, port: int, firecrest: Any, gl: Any, gh: Any, **extra: str) -> dict[str, str]:
    """The middleware's settings for the stand-ins (embedded default unless `extra` says otherwise)."""
    url = f"http://127.0.0.1:{port}"
    return {
        **os.environ,
        "DATA_DIR": str(tmp / "middleware"),
        "ADMIN_TOKEN": ADMIN,
        "MIDDLEWARE_SECRET_KEY": "demo-middleware-secret-key-0123456789",
        "PUBLIC_URL": url,
        "BIND": f"127.0.0.1:{port}",
        "WEB_CONCURRENCY": "2",
        "GITHUB_API_URL": gh.url,
        "GITHUB_WRITE_INTERVAL": "0",
        "GITLAB_URL": gl.url,
        "GITLAB_TOKEN": gl.token,
        "GITLAB_GROUP": "firecrest-ci",
        "GITLAB_WEBHOOK_TOKEN": "demo-gitlab-hook-token",
        "FIRECREST_URL": firecrest.url,
        "FIRECREST_TOKEN_URL": firecrest.token_url,
        "INSECURE_SANDBOX": "1",
        **extra,
    }


def wait_healthy(url: str, log: Path) -> None:
    for _ in range(150):
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.2)
    print(log.read_text()[-3000:])
    raise SystemExit("the middleware did not start")


def register(url: str, clone_url: str, firecrest: Any) -> dict[str, Any]:
    """Register demo-org/hpc-code with one pipeline `cpu` on system `cluster`."""
    admin = {"Authorization": f"Bearer {ADMIN}"}
    repo: dict[str, Any] = httpx.post(
        f"{url}/api/repositories",
        headers=admin,
        json={
            "full_name": "demo-org/hpc-code",
            "clone_url": clone_url,
            "notification_token": GH_TOKEN,
            "firecrest_client_id": firecrest.client_id,
            "firecrest_client_secret": firecrest.client_secret,
            "branches": ["main"],
        },
        timeout=30,
    ).json()
    httpx.post(
        f"{url}/api/repositories/{repo['id']}/pipelines",
        headers=admin,
        json={"name": "cpu", "entrypoint": "ci/cpu.yml", "system": "cluster"},
        timeout=30,
    ).raise_for_status()
    return repo


def wait_status(github: Any, sha: str, timeout: float = 180) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    shown: set[int] = set()
    while time.monotonic() < deadline:
        for status in github.state.statuses:
            if status["sha"] == sha and status["id"] not in shown:
                shown.add(status["id"])
                print(f"   GitHub status {status['context']}: {status['state']} — {status['description']}")
                print(f"     -> {status['target_url']}")
                if status["state"] != "pending":
                    return dict(status)
        time.sleep(0.3)
    raise TimeoutError(f"no final status for {sha}")


def show_pipeline(client: gitlab.Gitlab, url: str, repo_id: int, sha: str) -> None:
    """The run's GitLab pipeline and its job logs (the status links to the run's page instead)."""
    runs = httpx.get(
        f"{url}/api/repositories/{repo_id}/runs", headers={"Authorization": f"Bearer {ADMIN}"}, timeout=10
    ).json()
    (run,) = [r for r in runs["runs"] if r["sha"] == sha]
    project = client.projects.get(f"firecrest-ci/{repo_id}/cpu")
    pipeline = project.pipelines.get(int(run["gitlab_pipeline_id"]))
    print(f"   mirror project {project.path_with_namespace}, branch {pipeline.ref} at {pipeline.sha[:12]}")
    for job in pipeline.jobs.list():
        print(f"   pipeline {pipeline.id} job '{job.name}': {job.status}; its log:")
        trace = project.jobs.get(job.id, lazy=True).trace().decode()
        if not trace.strip():
            print(f"     (empty trace for job {job.id} of project {project.id})")
        for line in trace.splitlines():
            print(f"     | {line}")


def deliver(url: str, secret: str, sha: str) -> httpx.Response:
    payload = json.loads((ROOT / "data" / "webhooks" / "github" / "push" / "payload.json").read_text())
    payload["repository"]["full_name"] = "demo-org/hpc-code"
    payload.update(ref="refs/heads/main", after=sha, deleted=False)
    body = json.dumps(payload).encode()
    headers = {
        "X-GitHub-Event": "push",
        "X-GitHub-Delivery": str(uuid.uuid4()),
        "X-Hub-Signature-256": sign(secret, body),
        "Content-Type": "application/json",
    }
    return httpx.post(f"{url}/webhooks/github", content=body, headers=headers, timeout=10)


def main() -> int:
    os.environ["PATH"] = f"{BIN}{os.pathsep}{os.environ['PATH']}"  # the stand-in's jobs call ci-runner
    with tempfile.TemporaryDirectory(prefix="firecrest-ci-loop-") as tmp_name:
        tmp = Path(tmp_name)
        with (
            run_sandbox(SandboxConfig(root=tmp / "hpc", pending_seconds=0.2)) as firecrest,
            run_gitlab(tmp / "gitlab") as gl,
            run_github() as gh,
        ):
            say("stand-ins up: FirecREST (HPC centre), managed GitLab, GitHub — all local")
            gh.state.add_user("demo-bot", GH_TOKEN)
            gh.state.add_repo("demo-org/hpc-code")
            source = Source(tmp)
            port = free_port()
            url = f"http://127.0.0.1:{port}"
            env = middleware_env(tmp, port, firecrest, gl, gh, LOG_JSON="1")
            processes = start_middleware(tmp, env)
            try:
                wait_healthy(url, tmp / "middleware.log")
                say(f"middleware up at {url} (gunicorn + Celery worker, SQLite, no Redis)")
                repo = register(url, source.url, firecrest)
                say(f"registered demo-org/hpc-code (source {source.url}); webhook {repo['webhook_url']}")
                client = gitlab.Gitlab(gl.url, private_token=gl.token)
                results = []
                for script, message, expected in (
                    (
                        '#!/bin/bash\necho "solver converged on $SLURM_CLUSTER_NAME"\n',
                        "a passing commit",
                        "success",
                    ),
                    ("#!/bin/bash\necho 'solver diverged'\nexit 1\n", "a failing commit", "failure"),
                ):
                    sha = source.commit(script, message)
                    answer = deliver(url, repo["webhook_secret"], sha)
                    say(f"pushed {message} {sha[:12]}; webhook: {answer.status_code} {answer.text.strip()}")
                    status = wait_status(gh, sha)
                    show_pipeline(client, url, repo["id"], sha)
                    results.append(status["state"] == expected)
                    say(f"commit {sha[:12]} ended '{status['state']}' (expected '{expected}')")
            finally:
                for process in processes:
                    process.terminate()
                for process in processes:
                    process.wait(timeout=20)
            ok = all(results)
            say("loop demo passed" if ok else "loop demo FAILED")
            return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
