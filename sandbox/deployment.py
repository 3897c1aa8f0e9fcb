"""The middleware as deployed, on servers a fault scenario owns, and the count of what it lost.

gunicorn and a Celery worker as subprocesses, on a redis-server and a PostgreSQL
cluster of their own (see sandbox.servers) that a scenario may stop, crash or
restart, with the GitLab and GitHub stand-ins in this process so a scenario can
inject faults and watch markers (a worker inside a push, inside a create). A
burst sends one signed push delivery per commit, as GitHub sends them, and
sends again, with the same delivery id, whatever was not answered 2xx (as a
person pressing "Redeliver" would). The tally then checks the delivery
guarantee: every trigger of an accepted delivery reached one final outcome,
reported to the GitHub stand-in, with at most one pipeline per run and one
final status per commit and context. The scenario tests and the benchmark
(`benchmarks/delivery_guarantee.py`) share it. Scaled out (`webs`, `workers`, `front`),
it is the documented shape past one machine: several gunicorn instances behind the
nginx front of deploy/nginx and several named Celery workers, on one Redis and one
PostgreSQL (tests/deploy/test_scale_out.py).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gitlab
import httpx
import psycopg
import redis
from psycopg import sql

from middleware.sources.github.signature import sign
from sandbox.bitbucket.app import BitbucketState
from sandbox.bitbucket.server import BitbucketHandle, run_bitbucket
from sandbox.demo_loop import GH_TOKEN, free_port
from sandbox.front import Front
from sandbox.github.server import GitHubHandle, run_github
from sandbox.gitlab.server import GitLabHandle, run_gitlab
from sandbox.servers import PostgresCluster, RedisServer

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
ADMIN = "deployment-admin-token-0123456789"
REPOSITORY = "octo-org/hpc-code"
CONTEXT = "firecrest-ci/cpu"
PUSH_PAYLOAD = ROOT / "data" / "webhooks" / "github" / "push" / "payload.json"
GITLAB_PUSH = ROOT / "data" / "webhooks" / "gitlab" / "push-event.json"
BITBUCKET_PUSH = ROOT / "data" / "webhooks" / "bitbucket" / "repo-push.json"
BITBUCKET_TOKEN = "deployment-bitbucket-token-0123456789"  # noqa: S105 - a stand-in's
#: A pipeline that finishes at once: the scenarios count outcomes, not jobs.
ENTRYPOINT = "stages: [test]\ncheck:\n  stage: test\n  script:\n    - echo tested $CI_COMMIT_SHA\n"
FINAL = ("success", "failed", "canceled", "error")
RUN_COLUMNS = ("id", "sha", "state", "error", "status_seq", "posted_seq", "unreported", "gitlab_pipeline_id")

#: Short leases and backoffs, so that a scenario drains in seconds, not minutes.
FAST: dict[str, str] = {
    "DISPATCH_LEASE": "3",
    "RECONCILE_INTERVAL": "2",
    "RETRY_BACKOFF_MAX": "2",
    "BROKER_VISIBILITY_TIMEOUT": "6",
    "MIRROR_LOCK_TIMEOUT": "6",
    "GITHUB_WRITE_INTERVAL": "0",
    "GITHUB_TIMEOUT": "2",
}


def _git(cwd: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True)
    return done.stdout.strip()


@dataclass
class Deployment:
    root: Path
    redis: RedisServer
    postgres: PostgresCluster
    gitlab: GitLabHandle
    github: GitHubHandle
    env: dict[str, str]
    url: str
    web: subprocess.Popen[bytes] | None = None
    worker: subprocess.Popen[bytes] | None = None
    repository: dict[str, Any] = field(default_factory=dict)
    source_url: str = ""
    clone_url: str = ""
    work: Path = Path()
    #: The source provider the repository is registered from, and its stand-in when not GitHub
    #: (a GitLab source is a second GitLab stand-in: the managed one cannot be a source).
    provider: str = "github"
    source_gitlab: GitLabHandle | None = None
    bitbucket: BitbucketHandle | None = None
    #: Scaled out: the BIND of every gunicorn instance, the gunicorn instances after the first,
    #: the named workers (node name -> process; logs worker-<name>.log) and the nginx front.
    binds: list[str] = field(default_factory=list)
    more_webs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    named_workers: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    front: Front | None = None

    # -- processes ---------------------------------------------------------------------

    def start_web(self, instance: int = 0) -> None:
        """gunicorn on BIND; instance n > 0 is one more, on a port of its own (log web-<n>.log)."""
        bind = self.env["BIND"] if instance == 0 else f"127.0.0.1:{free_port()}"
        name = "web" if instance == 0 else f"web-{instance}"
        log = open(self.root / f"{name}.log", "a")  # noqa: SIM115 - the process owns it
        process = subprocess.Popen(
            [str(BIN / "gunicorn"), "-c", str(ROOT / "middleware" / "gunicorn.conf.py"),
             "middleware.wsgi:app"],
            cwd=ROOT, env={**self.env, "BIND": bind}, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        if instance == 0:
            self.web = process
        else:
            self.more_webs.append(process)
        if bind not in self.binds:
            self.binds.append(bind)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://{bind}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.2)
        raise RuntimeError(f"gunicorn did not start: {self.log(name)[-2000:]}")

    def start_worker(self, name: str | None = None) -> None:
        """The worker; a named one is one more, node <name>@<host>, logging each task (INFO) to
        worker-<name>.log, so that what each worker did can be told apart."""
        log = open(self.root / ("worker.log" if name is None else f"worker-{name}.log"), "a")  # noqa: SIM115
        process = subprocess.Popen(
            [str(BIN / "celery"), "-A", "middleware.worker:celery", "worker", "--pool=solo",
             "-Q", "firecrest-ci", "--without-heartbeat", "--without-gossip", "--without-mingle",
             *(["--loglevel=WARNING"] if name is None else ["--loglevel=INFO", "-n", f"{name}@%h"])],
            cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        if name is None:
            self.worker = process
        else:
            self.named_workers[name] = process

    def kill_worker(self) -> None:
        """SIGKILL: the worker dies wherever it is, holding whatever it held."""
        if self.worker is not None and self.worker.poll() is None:
            self.worker.send_signal(signal.SIGKILL)
            self.worker.wait()

    def stop(self) -> None:
        if self.front is not None:
            self.front.stop()
        for process in (self.worker, *self.named_workers.values(), self.web, *self.more_webs):
            if process is not None and process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()

    def log(self, name: str) -> str:
        path = self.root / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def warm_up(self, timeout: float = 60) -> None:
        """One push through the whole loop: the worker is up and the mirror project exists."""
        ((branch, sha),) = self.commits(1, ["b-warm-up"])
        with httpx.Client(timeout=10) as client:
            status = self.deliver(branch, sha, f"warm-up-{uuid.uuid4()}", client)
        if status != 202:
            raise RuntimeError(f"the warm-up delivery got {status}")
        if self.wait_drained({sha}, timeout) >= timeout:
            logs = "".join(self.log(n) for n in ("worker", *(f"worker-{w}" for w in self.named_workers)))
            raise RuntimeError(f"the warm-up push did not finish: {logs[-3000:]}")
        self.github.state.statuses.clear()
        self.gitlab.pipelines.clear()

    def queued(self) -> int:
        """Messages waiting in the broker or held unacknowledged by a worker."""
        client = redis.Redis.from_url(self.redis.url(0), socket_timeout=2)
        try:
            return int(client.llen("firecrest-ci")) + int(client.hlen("unacked"))
        finally:
            client.close()

    # -- the source repository and its deliveries ------------------------------------------

    def commits(self, count: int, branches: list[str]) -> list[tuple[str, str]]:
        """`count` new commits, round-robin over `branches`, pushed to the source at once."""
        made: list[tuple[str, str]] = []
        for index in range(count):
            branch = branches[index % len(branches)]
            _git(
                self.work,
                "checkout",
                "-q",
                "-B",
                branch,
                f"refs/heads/{branch}" if self._has(branch) else "HEAD",
            )
            _git(self.work, "commit", "-q", "--allow-empty", "-m", f"change {index} on {branch}")
            made.append((branch, _git(self.work, "rev-parse", "HEAD")))
        _git(
            self.work,
            "push",
            "-q",
            "--force",
            self.source_url,
            *[f"refs/heads/{b}:refs/heads/{b}" for b in branches],
        )
        return made

    def _has(self, branch: str) -> bool:
        done = subprocess.run(
            ["git", "rev-parse", "--verify", "--quiet", f"refs/heads/{branch}"],
            cwd=self.work,
            capture_output=True,
        )
        return done.returncode == 0

    def deliver(self, branch: str, sha: str, delivery: str, client: httpx.Client) -> int:
        """One push delivery as the source provider sends it; the HTTP status, or 0 when nothing
        answered."""
        secret = self.repository["webhook_secret"]
        if self.provider == "gitlab":
            payload = json.loads(GITLAB_PUSH.read_text())
            payload["project"]["path_with_namespace"] = REPOSITORY
            payload.update(ref=f"refs/heads/{branch}", after=sha, checkout_sha=sha)
            body = json.dumps(payload).encode()
            headers = {
                "X-Gitlab-Event": "Push Hook",
                "X-Gitlab-Event-UUID": delivery,
                "X-Gitlab-Token": secret,
            }
            path = "/webhooks/source/gitlab"
        elif self.provider == "bitbucket":
            payload = json.loads(BITBUCKET_PUSH.read_text())
            payload["repository"]["full_name"] = REPOSITORY
            change = payload["push"]["changes"][0]
            change["new"].update(type="branch", name=branch)
            change["new"]["target"]["hash"] = sha
            payload["push"]["changes"] = [change]
            body = json.dumps(payload).encode()
            signature = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
            headers = {"X-Event-Key": "repo:push", "X-Request-UUID": delivery, "X-Hub-Signature": signature}
            path = "/webhooks/source/bitbucket"
        else:
            payload = json.loads(PUSH_PAYLOAD.read_text())
            payload["repository"]["full_name"] = REPOSITORY
            payload["repository"]["name"] = REPOSITORY.split("/")[1]
            payload.update(ref=f"refs/heads/{branch}", after=sha, deleted=False)
            body = json.dumps(payload).encode()
            headers = {
                "X-GitHub-Event": "push",
                "X-GitHub-Delivery": delivery,
                "X-Hub-Signature-256": sign(secret, body),
            }
            path = "/webhooks/github"
        headers["Content-Type"] = "application/json"
        try:
            return client.post(f"{self.url}{path}", content=body, headers=headers).status_code
        except httpx.HTTPError:
            return 0

    def statuses(self) -> list[tuple[str, bool]]:
        """(sha, final?) of every status of the pipeline's context on the source's stand-in."""
        if self.source_gitlab is not None:
            found = [
                (s["sha"], s["status"]) for s in self.source_gitlab.state.statuses if s["name"] == CONTEXT
            ]
            return [(sha, state not in ("pending", "running")) for sha, state in found]
        if self.bitbucket is not None:
            with self.bitbucket.state.lock:
                stored = list(self.bitbucket.state.statuses.items())
            return [(sha, st["state"] != "INPROGRESS") for (_, sha, _), st in stored if st["name"] == CONTEXT]
        return [
            (s["sha"], s["state"] != "pending") for s in self.github.state.statuses if s["context"] == CONTEXT
        ]

    # -- what happened -------------------------------------------------------------------

    def runs(self) -> list[dict[str, Any]]:
        with psycopg.connect(self.env["DATABASE_URL"].replace("+psycopg", ""), autocommit=True) as connection:
            query = sql.SQL("SELECT {} FROM runs").format(
                sql.SQL(", ").join(map(sql.Identifier, RUN_COLUMNS))
            )
            rows = connection.execute(query).fetchall()
        return [dict(zip(RUN_COLUMNS, row, strict=True)) for row in rows]

    def wait_drained(self, shas: set[str], timeout: float) -> float:
        """Wait until every run of these commits is final with its status posted; seconds waited."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            try:
                done = {
                    r["sha"]
                    for r in self.runs()
                    if r["state"] in FINAL and r["posted_seq"] >= r["status_seq"]
                }
            except psycopg.Error:
                done = set()
            if shas <= done:
                break
            time.sleep(0.5)
        return time.monotonic() - started


@dataclass
class Burst:
    """Deliveries sent, and the answers each got (the last one counts)."""

    answers: dict[str, int] = field(default_factory=dict)
    sha_of: dict[str, str] = field(default_factory=dict)
    branch_of: dict[str, str] = field(default_factory=dict)
    redelivered: int = 0

    @property
    def accepted(self) -> set[str]:
        return {d for d, status in self.answers.items() if 200 <= status < 300}

    def codes(self) -> Counter[int]:
        return Counter(self.answers.values())


def send_burst(
    deployment: Deployment,
    commits: list[tuple[str, str]],
    *,
    rate: float,
    threads: int = 8,
    during: Callable[[int], None] | None = None,
) -> Burst:
    """One delivery per commit at about `rate` per second; `during(i)` runs before the i-th."""
    burst = Burst()
    lock = threading.Lock()

    def send(commit: tuple[str, str], client: httpx.Client) -> None:
        branch, sha = commit
        delivery = str(uuid.uuid4())
        status = deployment.deliver(branch, sha, delivery, client)
        with lock:
            burst.answers[delivery], burst.sha_of[delivery], burst.branch_of[delivery] = status, sha, branch

    with httpx.Client(timeout=10) as client, ThreadPoolExecutor(threads) as pool:
        started = time.monotonic()
        futures = []
        for index, commit in enumerate(commits):
            if during is not None:
                during(index)
            wait = started + index / rate - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            futures.append(pool.submit(send, commit, client))
        for future in futures:
            future.result()
    return burst


def redeliver(deployment: Deployment, burst: Burst, *, rounds: int = 20, pause: float = 1.0) -> None:
    """Send again, with the same delivery id, what was not answered 2xx."""
    with httpx.Client(timeout=10) as client:
        for _ in range(rounds):
            failed = [d for d, status in burst.answers.items() if not 200 <= status < 300]
            if not failed:
                return
            for delivery in failed:
                burst.answers[delivery] = deployment.deliver(
                    burst.branch_of[delivery], burst.sha_of[delivery], delivery, client
                )
                burst.redelivered += 1
            time.sleep(pause)


@dataclass(frozen=True)
class Tally:
    accepted: int
    final: int
    superseded: int
    errors: int
    pipelines: int
    statuses: int
    lost: int
    duplicated: int
    unreported: int
    answers: dict[int, int]

    def row(self) -> str:
        return (
            f"accepted {self.accepted}, final outcomes {self.final} (superseded {self.superseded}, "
            f"error {self.errors}), pipelines {self.pipelines}, statuses posted {self.statuses}, "
            f"lost {self.lost}, duplicated {self.duplicated}, unreported {self.unreported}; "
            f"answers {dict(sorted(self.answers.items()))}"
        )


def tally(deployment: Deployment, burst: Burst) -> Tally:
    """Count outcomes for the accepted deliveries (one trigger each: one pipeline, one commit)."""
    accepted_shas = {burst.sha_of[d] for d in burst.accepted}
    runs = {r["sha"]: r for r in deployment.runs()}
    statuses = deployment.statuses()
    final_statuses = Counter(sha for sha, final in statuses if final)
    reported = {
        sha
        for sha in accepted_shas
        if sha in runs
        and runs[sha]["state"] in FINAL
        and (runs[sha]["posted_seq"] >= runs[sha]["status_seq"] or runs[sha]["unreported"])
        and (final_statuses[sha] == 1 or runs[sha]["unreported"])
    }
    per_run = Counter(p.variables.get("FIRECREST_CI_RUN_ID") for p in deployment.gitlab.pipelines.values())
    duplicated = sum(1 for n in per_run.values() if n > 1) + sum(1 for n in final_statuses.values() if n > 1)
    chosen = [runs[sha] for sha in accepted_shas if sha in runs]
    return Tally(
        accepted=len(burst.accepted),
        final=len(reported),
        superseded=sum(1 for r in chosen if (r["error"] or "").startswith("superseded")),
        errors=sum(1 for r in chosen if r["state"] == "error"),
        pipelines=len(deployment.gitlab.pipelines),
        statuses=len(statuses),
        lost=len(accepted_shas - reported),
        duplicated=duplicated,
        unreported=sum(1 for r in chosen if r["unreported"]),
        answers=dict(burst.codes()),
    )


@contextmanager
def deployed(
    root: Path,
    *,
    persistence: bool = False,
    provider: str = "github",
    webs: int = 1,
    workers: int = 1,
    front: bool = False,
    **settings: str,
) -> Iterator[Deployment]:
    """Everything up: own Redis (AOF only if asked) and PostgreSQL, stand-ins, gunicorn, one worker,
    and the repository registered from `provider` with one pipeline `cpu` on branches `b*`.
    Scaled out: `webs` gunicorn instances, `workers` named workers (w1@host, w2@host, ...) rather
    than the one unnamed, and with `front` every request through nginx (deploy/nginx, one
    upstream server per gunicorn instance)."""
    os.environ["PATH"] = f"{BIN}{os.pathsep}{os.environ['PATH']}"
    with ExitStack() as stack:
        broker = stack.enter_context(RedisServer(root / "redis", persistence=persistence))
        # Under /tmp, not the caller's root: the cluster runs as `postgres`, which must reach it even
        # when another pytest session makes its own temporary root private again.
        pg_root = Path(tempfile.mkdtemp(prefix="firecrest-ci-pg-"))
        stack.callback(shutil.rmtree, pg_root, ignore_errors=True)
        postgres = stack.enter_context(PostgresCluster(pg_root))
        gl = stack.enter_context(run_gitlab(root / "gitlab"))
        gh = stack.enter_context(run_github())
        gh.state.add_user("octo-bot", GH_TOKEN)
        gh.state.add_repo(REPOSITORY)
        port = free_port()
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "DATABASE_", "BROKER_"))},
            "DATABASE_URL": postgres.create_database("middleware"),
            "REDIS_URL": broker.url(0),
            "DATA_DIR": str(root / "state"),
            "MIDDLEWARE_SECRET_KEY": "deployment-secret-key-0123456789abcdefgh",
            "ADMIN_TOKEN": ADMIN,
            "PUBLIC_URL": f"http://127.0.0.1:{port}",
            "BIND": f"127.0.0.1:{port}",
            "WEB_CONCURRENCY": "2",
            "GITHUB_API_URL": gh.url,
            "GITLAB_URL": gl.url,
            "GITLAB_TOKEN": gl.token,
            "GITLAB_GROUP": "firecrest-ci",
            "GITLAB_WEBHOOK_TOKEN": "deployment-hook-token-0123456789",
            "INSECURE_SANDBOX": "1",
            "LOG_JSON": "1",
            **FAST,
            **settings,
        }
        deployment = Deployment(root, broker, postgres, gl, gh, env, f"http://127.0.0.1:{port}")
        deployment.provider = provider
        if provider == "gitlab":
            deployment.source_gitlab = stack.enter_context(run_gitlab(root / "source-gitlab"))
        elif provider == "bitbucket":
            deployment.bitbucket = stack.enter_context(run_bitbucket(BitbucketState(root=root / "bitbucket")))
            env.update(BITBUCKET_API_URL=deployment.bitbucket.api_url, BITBUCKET_URL=deployment.bitbucket.url)
        stack.callback(deployment.stop)
        _source(deployment)
        for instance in range(webs):
            deployment.start_web(instance)
        if front:
            deployment.front = Front(deployment.binds)
            deployment.front.start()
            deployment.url = deployment.front.url
        if workers == 1:
            deployment.start_worker()
        else:
            for number in range(1, workers + 1):
                deployment.start_worker(f"w{number}")
        _register(deployment)
        deployment.warm_up()
        yield deployment


def _source(deployment: Deployment) -> None:
    """The source repository with the entrypoint on main: a project in the managed GitLab's
    stand-in for GitHub (git only), in a second GitLab for GitLab, a bare repository for Bitbucket."""
    clone_url = ""
    if deployment.bitbucket is not None:
        state = deployment.bitbucket.state
        state.add_token(BITBUCKET_TOKEN, REPOSITORY)
        repo = state.add_repo(REPOSITORY, private=False)
        deployment.source_url = str(state.git_dir(repo))
        clone_url = deployment.bitbucket.clone_url(REPOSITORY)
    else:
        handle = deployment.source_gitlab or deployment.gitlab
        client = gitlab.Gitlab(handle.url, private_token=handle.token)
        owner, name = (
            REPOSITORY.split("/") if deployment.source_gitlab is not None else ("sources", "hpc-code")
        )
        group = client.groups.create({"name": owner, "path": owner})
        project = client.projects.create(
            {"name": name, "path": name, "namespace_id": group.id, "visibility": "public"}
        )
        clone_url = project.http_url_to_repo
        deployment.source_url = clone_url.replace("http://", f"http://oauth2:{handle.token}@")
    deployment.clone_url = clone_url
    deployment.work = deployment.root / "work"
    deployment.work.mkdir()
    _git(deployment.work, "init", "-q", "-b", "main")
    _git(deployment.work, "config", "user.email", "ci@example.org")
    _git(deployment.work, "config", "user.name", "CI")
    (deployment.work / "ci").mkdir()
    (deployment.work / "ci" / "cpu.yml").write_text(ENTRYPOINT)
    _git(deployment.work, "add", ".")
    _git(deployment.work, "commit", "-q", "-m", "entrypoint")
    _git(deployment.work, "push", "-q", deployment.source_url, "main")


def _register(deployment: Deployment) -> None:
    admin = {"Authorization": f"Bearer {ADMIN}"}
    token = {
        "gitlab": deployment.source_gitlab.token if deployment.source_gitlab else "",
        "bitbucket": BITBUCKET_TOKEN,
    }.get(deployment.provider, GH_TOKEN)
    answer = httpx.post(
        f"{deployment.url}/api/repositories",
        headers=admin,
        json={
            "provider": deployment.provider,
            "full_name": REPOSITORY,
            "clone_url": deployment.clone_url,
            "notification_token": token,
            "firecrest_client_id": "client",
            "firecrest_client_secret": "firecrest-secret-0123456789",
            "branches": ["b*"],
        },
        timeout=30,
    )
    answer.raise_for_status()
    deployment.repository = answer.json()
    httpx.post(
        f"{deployment.url}/api/repositories/{deployment.repository['id']}/pipelines",
        headers=admin,
        json={"name": "cpu", "entrypoint": "ci/cpu.yml", "system": "cluster"},
        timeout=30,
    ).raise_for_status()


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.02)
    raise TimeoutError(f"timed out waiting for {what}")
