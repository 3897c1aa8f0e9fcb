"""GitLab and Bitbucket Cloud as sources, end to end as deployed: a webhook from each source's
stand-in shape (data/webhooks/gitlab, data/webhooks/bitbucket) to gunicorn, the run through a
Celery worker on real Redis and PostgreSQL, the mirror and pipeline in the managed GitLab's
stand-in, the job on the FirecREST sandbox, and the status back on the source's stand-in.

For each provider: a push ends with a success status on the source; an untrusted fork's pull
(merge) request runs nothing; a trusted `firecrest-ci run` comment runs the pinned head; a bad
or missing token or signature gets 401 and stores nothing.
"""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
import hmac
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gitlab
import httpx
import psycopg
import pytest

from sandbox.bitbucket.app import BitbucketState
from sandbox.bitbucket.server import run_bitbucket
from sandbox.firecrest.config import SandboxConfig
from sandbox.firecrest.server import run_sandbox
from sandbox.github.server import run_github
from sandbox.gitlab.server import run_gitlab
from tests.conftest import service_url
from tests.gitops import ENTRYPOINT, git
from tests.middleware.conftest import postgres_database
from tests.middleware.test_service_e2e import Service, start_service

DATA = Path(__file__).resolve().parents[2] / "data" / "webhooks"
BB_TOKEN = "bitbucket-repository-token-0123456789"


def payload(provider: str, name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((DATA / provider / name).read_text())
    return copy.deepcopy(loaded)


def now_iso(offset: float = 0.0) -> str:
    moment = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=offset)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class World:
    """One source provider's side of the tests: how to make commits and deliver its webhooks."""

    provider: str
    service: Service
    repo: dict[str, Any]
    database_url: str
    commit: Callable[[str, str], str]
    push: Callable[[str], httpx.Response]
    fork_request: Callable[[int, str], httpx.Response]
    comment: Callable[[int, str], httpx.Response]
    statuses: Callable[[str], list[tuple[str, str]]]
    forged: Callable[[str], list[httpx.Response]]

    def final_status(self, sha: str, timeout: float = 90) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            done = [
                state for state, _ in self.statuses(sha) if state not in ("pending", "running", "INPROGRESS")
            ]
            if done:
                return done[-1]
            time.sleep(0.3)
        raise AssertionError(f"no final status for {sha}: {self.statuses(sha)}")

    def deliveries(self) -> int:
        with psycopg.connect(self.database_url.replace("postgresql+psycopg://", "postgresql://")) as db:
            row = db.execute("SELECT count(*) FROM deliveries").fetchone()
        assert row is not None
        return int(row[0])

    def runs_of(self, sha: str) -> list[dict[str, Any]]:
        return [r for r in self.service.runs(self.repo["id"]) if r["sha"] == sha]


def register(service: Service, body: dict[str, Any], firecrest: Any) -> dict[str, Any]:
    answer = service.api(
        "POST",
        "/api/repositories",
        json={
            **body,
            "firecrest_client_id": firecrest.client_id,
            "firecrest_client_secret": firecrest.client_secret,
            "branches": ["main"],
        },
    )
    assert answer.status_code == 201, answer.text
    repo: dict[str, Any] = answer.json()
    made = service.api(
        "POST",
        f"/api/repositories/{repo['id']}/pipelines",
        json={"name": "cpu", "entrypoint": "ci/cpu.yml", "system": "cluster"},
    )
    assert made.status_code == 201, made.text
    return repo


def write_commit(work: Path, script: str) -> None:
    (work / "ci").mkdir(exist_ok=True)
    (work / "ci" / "cpu.yml").write_text(ENTRYPOINT)
    (work / "ci" / "hpc-job.sh").write_text(f"#!/bin/bash\n{script}\n")
    git(work, "add", ".")
    git(work, "commit", "-q", "--allow-empty", "-m", script[:40])


def gitlab_world(service: Service, source_gl: Any, firecrest: Any, tmp: Path, database_url: str) -> World:
    client = gitlab.Gitlab(source_gl.url, private_token=source_gl.token)
    group = client.groups.create({"name": "science", "path": "science"})
    project = client.projects.create(
        {"name": "hpc-code", "path": "hpc-code", "namespace_id": group.id, "visibility": "public"}
    )
    state = source_gl.state
    alice = state.add_user("alice")
    mallory = state.add_user("mallory")
    fork_group = client.groups.create({"name": "mallory", "path": "mallory"})
    fork = client.projects.create(
        {"name": "hpc-code", "path": "hpc-code", "namespace_id": fork_group.id, "visibility": "public"}
    )
    repo = register(
        service,
        {
            "provider": "gitlab",
            "full_name": "science/hpc-code",
            "clone_url": project.http_url_to_repo,
            "notification_token": source_gl.token,
            "trusted_users": ["alice"],
        },
        firecrest,
    )
    assert repo["webhook_url"].endswith("/webhooks/source/gitlab")
    work = tmp / "gitlab-work"
    work.mkdir()
    git(work, "init", "-q", "-b", "main")
    secret = repo["webhook_secret"]

    def authed(url: str) -> str:
        return url.replace("http://", f"http://oauth2:{source_gl.token}@")

    def commit(script: str, ref: str = "main") -> str:
        write_commit(work, script)
        git(work, "push", "-q", "--force", authed(project.http_url_to_repo), f"HEAD:{ref}")
        return git(work, "rev-parse", "HEAD")

    def deliver(event: str, body: dict[str, Any], token: str | None = secret) -> httpx.Response:
        headers = {"X-Gitlab-Event": event, "X-Gitlab-Event-UUID": str(uuid.uuid4())}
        if token is not None:
            headers["X-Gitlab-Token"] = token
        return httpx.post(f"{service.url}/webhooks/source/gitlab", json=body, headers=headers, timeout=20)

    def push_body(sha: str) -> dict[str, Any]:
        body = payload("gitlab", "push-event.json")
        body["project"]["path_with_namespace"] = "science/hpc-code"
        body.update(ref="refs/heads/main", after=sha, checkout_sha=sha, before="0" * 39 + "1")
        return body

    def push(sha: str) -> httpx.Response:
        return deliver("Push Hook", push_body(sha))

    def merge_request_body(iid: int, sha: str, author: dict[str, Any], source: str) -> dict[str, Any]:
        body = payload("gitlab", "merge-request-event.json")
        body["project"]["path_with_namespace"] = "science/hpc-code"
        attributes = body["object_attributes"]
        attributes.update(iid=iid, action="open", source_branch="feature", target_branch="main")
        attributes.update(author_id=author["id"], last_commit={**attributes["last_commit"], "id": sha})
        attributes["source"]["path_with_namespace"] = source
        attributes["target"]["path_with_namespace"] = "science/hpc-code"
        return body

    def fork_request(iid: int, sha: str) -> httpx.Response:
        return deliver("Merge Request Hook", merge_request_body(iid, sha, mallory, "mallory/hpc-code"))

    def comment(iid: int, text: str) -> httpx.Response:
        body = payload("gitlab", "comment-merge-request-event.json")
        body["project"]["path_with_namespace"] = "science/hpc-code"
        body["user"].update(id=alice["id"], username="alice")
        body["object_attributes"].update(
            note=text, noteable_type="MergeRequest", author_id=alice["id"], created_at=now_iso(1)
        )
        body["object_attributes"].pop("action", None)
        body["merge_request"]["iid"] = iid
        return deliver("Note Hook", body)

    def statuses(sha: str) -> list[tuple[str, str]]:
        return [(s["status"], s["name"]) for s in state.statuses if s["sha"] == sha]

    def forged(sha: str) -> list[httpx.Response]:
        return [
            deliver("Push Hook", push_body(sha), "wrong-token"),
            deliver("Push Hook", push_body(sha), None),
        ]

    def fork_commit(script: str) -> str:
        commit("echo base for the merge request")  # the fork branches off the target's main
        git(work, "checkout", "-q", "-B", "feature")
        write_commit(work, script)
        git(work, "push", "-q", "--force", authed(fork.http_url_to_repo), "HEAD:feature")
        sha = git(work, "rev-parse", "HEAD")
        git(work, "checkout", "-q", "main")
        return sha

    def open_fork_request(iid_wanted: int, sha: str) -> httpx.Response:
        made = state.open_merge_request(
            "science/hpc-code", "feature", "main", author=mallory, source_project="mallory/hpc-code"
        )
        assert made["sha"] == sha
        return fork_request(made["iid"], sha)

    world = World(
        "gitlab", service, repo, database_url, commit, push, open_fork_request, comment, statuses, forged
    )
    world.fork_commit = fork_commit  # type: ignore[attr-defined]
    return world


def bitbucket_world(service: Service, bb: Any, firecrest: Any, tmp: Path, database_url: str) -> World:
    state: BitbucketState = bb.state
    state.add_token(BB_TOKEN, "science/hpc-code")
    state.add_repo("science/hpc-code", private=False)
    state.add_repo("mallory/hpc-code", private=False, fork_of="science/hpc-code")
    alice = state.add_user("Alice", "alice")
    state.add_user("Mallory", "mallory")
    repo = register(
        service,
        {
            "provider": "bitbucket",
            "full_name": "science/hpc-code",
            "clone_url": bb.clone_url("science/hpc-code"),
            "notification_token": BB_TOKEN,
            "trusted_users": [alice],
        },
        firecrest,
    )
    assert repo["webhook_url"].endswith("/webhooks/source/bitbucket")
    work = tmp / "bitbucket-work"
    work.mkdir()
    git(work, "init", "-q", "-b", "main")
    secret = repo["webhook_secret"]

    def commit(script: str, ref: str = "main", full_name: str = "science/hpc-code") -> str:
        write_commit(work, script)
        bare = state.git_dir(state.repo(full_name))
        git(work, "push", "-q", "--force", str(bare), f"HEAD:{ref}")
        sha = git(work, "rev-parse", "HEAD")
        with state.lock:
            state.repo(full_name)["commits"].append(sha)
            state.repo(full_name)["branches"][ref] = sha
        return sha

    def deliver(event: str, body: dict[str, Any], signature: str | None = "good") -> httpx.Response:
        raw = json.dumps(body).encode()
        headers = {
            "X-Event-Key": event,
            "X-Request-UUID": str(uuid.uuid4()),
            "Content-Type": "application/json",
        }
        if signature == "good":
            headers["X-Hub-Signature"] = (
                "sha256=" + hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()
            )
        elif signature is not None:
            headers["X-Hub-Signature"] = signature
        return httpx.post(
            f"{service.url}/webhooks/source/bitbucket", content=raw, headers=headers, timeout=20
        )

    def push_body(sha: str) -> dict[str, Any]:
        body = payload("bitbucket", "repo-push.json")
        body["repository"]["full_name"] = "science/hpc-code"
        change = body["push"]["changes"][0]
        change["new"].update(type="branch", name="main")
        change["new"]["target"]["hash"] = sha
        body["push"]["changes"] = [change]
        return body

    def push(sha: str) -> httpx.Response:
        return deliver("repo:push", push_body(sha))

    def fork_request(pr_id: int, sha: str) -> httpx.Response:
        state.add_pull("science/hpc-code", pr_id, source_branch="feature", source_repo="mallory/hpc-code",
                       author="Mallory")  # fmt: skip
        body = payload("bitbucket", "pull-request-created.json")
        body["repository"]["full_name"] = "science/hpc-code"
        pull = body["pullrequest"]
        pull["id"] = pr_id
        pull["author"]["uuid"] = state.add_user("Mallory", "mallory")
        pull["source"]["commit"]["hash"] = sha[:12]  # Bitbucket sends short hashes
        pull["source"]["branch"]["name"] = "feature"
        pull["source"]["repository"]["full_name"] = "mallory/hpc-code"
        pull["destination"]["branch"]["name"] = "main"
        pull["destination"]["repository"]["full_name"] = "science/hpc-code"
        return deliver("pullrequest:created", body)

    def comment(pr_id: int, text: str) -> httpx.Response:
        body = payload("bitbucket", "pull-request-comment-created.json")
        body["repository"]["full_name"] = "science/hpc-code"
        body["pullrequest"]["id"] = pr_id
        body["actor"]["uuid"] = alice
        body["comment"]["content"]["raw"] = text
        body["comment"]["created_on"] = now_iso(1)
        body["comment"].pop("user", None)
        return deliver("pullrequest:comment_created", body)

    def statuses(sha: str) -> list[tuple[str, str]]:
        return [(s["state"], s["name"]) for (_, full, _), s in state.statuses.items() if full == sha]

    def forged(sha: str) -> list[httpx.Response]:
        return [
            deliver("repo:push", push_body(sha), "sha256=" + "0" * 64),
            deliver("repo:push", push_body(sha), None),
            deliver("repo:push", push_body(sha), "sha1=" + "0" * 40),
        ]

    def fork_commit(script: str) -> str:
        return commit(script, "feature", "mallory/hpc-code")

    world = World(
        "bitbucket", service, repo, database_url, commit, push, fork_request, comment, statuses, forged
    )
    world.fork_commit = fork_commit  # type: ignore[attr-defined]
    return world


@pytest.fixture(scope="module")
def worlds(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, World]]:
    tmp = tmp_path_factory.mktemp("sources")
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    redis_url = service_url("TEST_REDIS_URL").rsplit("/", 1)[0] + "/7"
    subprocess.run(["redis-cli", "-u", redis_url, "FLUSHDB"], check=True, capture_output=True)
    with (
        run_sandbox(SandboxConfig(root=tmp / "hpc", pending_seconds=0.1)) as firecrest,
        run_gitlab(tmp / "managed-gitlab") as managed,
        run_gitlab(tmp / "source-gitlab") as source_gl,
        run_bitbucket(BitbucketState(root=tmp / "bitbucket")) as bb,
        run_github() as gh,
        postgres_database() as database_url,
    ):
        extra = {
            "GITLAB_URL": managed.url,
            "GITLAB_TOKEN": managed.token,
            "GITLAB_GROUP": "firecrest-ci",
            "FIRECREST_URL": firecrest.url,
            "FIRECREST_TOKEN_URL": firecrest.token_url,
            "BITBUCKET_API_URL": bb.api_url,
            "BITBUCKET_URL": bb.url,
            "INSECURE_SANDBOX": "1",
            "DISPATCH_LEASE": "5",
            "RECONCILE_INTERVAL": "2",
            "RETRY_BACKOFF_MAX": "2",
        }
        service_iter = start_service(tmp, database_url, {"REDIS_URL": redis_url}, gh, extra)
        service = next(service_iter)
        try:
            yield {
                "gitlab": gitlab_world(service, source_gl, firecrest, tmp, database_url),
                "bitbucket": bitbucket_world(service, bb, firecrest, tmp, database_url),
            }
        finally:
            next(service_iter, None)


PROVIDERS = ["gitlab", "bitbucket"]


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_push_runs_the_pipeline_and_the_status_goes_back_to_the_source(worlds, provider):
    world = worlds[provider]
    sha = world.commit(f'echo "pushed to {provider}"', "main")
    answer = world.push(sha)
    assert answer.status_code == 202, answer.text
    assert answer.text.startswith("queued: cpu@"), answer.text
    assert world.final_status(sha) in ("success", "SUCCESSFUL")
    assert [r["state"] for r in world.runs_of(sha)] == ["success"]


@pytest.mark.parametrize("provider", PROVIDERS)
def test_an_untrusted_fork_runs_nothing_until_a_trusted_comment(worlds, provider):
    world = worlds[provider]
    sha = world.fork_commit(f"echo from a fork on {provider}")  # type: ignore[attr-defined]
    answer = world.fork_request(7, sha)
    assert answer.status_code == 202, answer.text
    assert "nothing to run" in answer.text and "fork" in answer.text, answer.text
    time.sleep(1)
    assert world.runs_of(sha) == []
    approved = world.comment(7 if provider == "bitbucket" else 1, "firecrest-ci run")
    assert approved.status_code == 202, approved.text
    assert approved.text.startswith("queued: cpu@" + sha[:12]), approved.text
    assert world.final_status(sha) in ("success", "SUCCESSFUL")


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_bad_or_missing_token_or_signature_gets_401_and_stores_nothing(worlds, provider):
    world = worlds[provider]
    sha = world.commit(f"echo forged on {provider}", "main")
    before = world.deliveries()
    for answer in world.forged(sha):
        assert answer.status_code == 401, answer.text
    assert world.deliveries() == before
    assert world.runs_of(sha) == []
