"""POST /api/trigger: refs resolved with the real git binary against a served repository."""

from __future__ import annotations

import functools
import http.server
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from middleware.app import create_app
from middleware.models import Run
from middleware.services import EXTENSION
from tests.middleware.conftest import (
    admin,
    fake_resolve_users,
    fake_token_check,
    make_settings,
    repository_body,
)


def git(*args: str, cwd: Path) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


@contextmanager
def serve_repository(tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """A bare repository served read-only over plain HTTP (git's dumb protocol) on loopback."""
    work = tmp_path / "work"
    work.mkdir()
    git("init", "-q", "-b", "main", cwd=work)
    (work / "a.txt").write_text("1\n")
    git("add", ".", cwd=work)
    git("commit", "-qm", "one", cwd=work)
    git("tag", "-a", "v1", "-m", "v1", cwd=work)
    git("checkout", "-qb", "feature", cwd=work)
    (work / "a.txt").write_text("2\n")
    git("commit", "-qam", "two", cwd=work)
    shas = {"main": git("rev-parse", "main", cwd=work), "feature": git("rev-parse", "feature", cwd=work)}
    shas["v1"] = git("rev-parse", "v1^{commit}", cwd=work)
    root = tmp_path / "served"
    root.mkdir()
    git("clone", "-q", "--bare", str(work), str(root / "repo.git"), cwd=tmp_path)
    git("update-ref", "refs/pull/5/head", shas["feature"], cwd=root / "repo.git")
    git("update-server-info", cwd=root / "repo.git")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a, **k: None  # type: ignore[attr-defined]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/repo.git", shas
    finally:
        server.shutdown()


@pytest.fixture
def served_repository(tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    with serve_repository(tmp_path) as served:
        yield served


@pytest.fixture
def sandbox_app(tmp_path: Path):
    application = create_app(
        make_settings(tmp_path, insecure_sandbox=True),
        check_github_token=fake_token_check,
        resolve_github_users=fake_resolve_users,
    )
    yield application
    application.extensions[EXTENSION].db.dispose()


def registered(client, clone_url: str) -> dict:
    repo = client.post(
        "/api/repositories", json=repository_body(clone_url=clone_url), headers=admin()
    ).get_json()
    client.post(
        f"/api/repositories/{repo['id']}/pipelines",
        json={"name": "cpu", "entrypoint": "ci.yml", "system": "cluster"},
        headers=admin(),
    )
    return repo


@pytest.mark.parametrize(
    ("ref", "expected_ref", "sha_key"),
    [("main", "main", "main"), ("pr:5", "pr-5", "feature"), ("tag:v1", "refs/tags/v1", "v1")],
)
def test_refs_are_resolved_with_git_ls_remote(sandbox_app, served_repository, ref, expected_ref, sha_key):
    url, shas = served_repository
    client = sandbox_app.test_client()
    repo = registered(client, url)
    answer = client.post(
        "/api/trigger",
        data=f"ref: {ref}\nvariables: {{N: '4'}}\n",
        headers={"Content-Type": "application/yaml"},
        auth=(str(repo["id"]), repo["webhook_secret"]),
    )
    assert answer.status_code == 202, answer.get_data(as_text=True)
    assert answer.get_json()["queued"] == {"pipeline": "cpu", "ref": expected_ref, "sha": shas[sha_key]}
    svc = sandbox_app.extensions[EXTENSION]
    with svc.db.session() as session:
        (run,) = session.query(Run).all()
        assert (run.trigger_kind, run.sha, run.state) == ("api", shas[sha_key], "queued")
        assert run.variables == {"N": "4"}


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        ("ref: nope", 422, "does not exist"),
        ("ref: --upload-pack=touch", 422, "not a branch name"),
        ("ref: sha:abc", 422, "40-character"),
        ("ref: pr:x", 422, "pull request number"),
        ("ref: main\npipeline: gpu", 422, "unknown pipeline"),
        ("ref: main\nvariables: {CI_JOB_TOKEN: x}", 422, "reserved"),
        ("ref: main\nextra: 1", 400, "unknown fields"),
        ("[1, 2]", 400, "mapping"),
        ("{", 400, "neither valid YAML nor JSON"),
    ],
)
def test_bad_trigger_requests_are_refused_clearly(sandbox_app, served_repository, body, status, needle):
    url, _ = served_repository
    client = sandbox_app.test_client()
    repo = registered(client, url)
    answer = client.post("/api/trigger", data=body, auth=(str(repo["id"]), repo["webhook_secret"]))
    assert answer.status_code == status, answer.get_data(as_text=True)
    assert needle in answer.get_json()["error"]


def test_refs_shas_and_variable_names_are_checked_in_full(sandbox_app, served_repository):
    url, _ = served_repository
    client = sandbox_app.test_client()
    repo = registered(client, url)
    auth = (str(repo["id"]), repo["webhook_secret"])
    for body, needle in [
        ("ref: release/.x", "not a branch name (the component '.x' starts with '.')"),
        ("ref: '@'", "not a branch name"),
        ("ref: a.lock", "not a branch name"),
        ("ref: tag:v1.lock", "not a tag name"),
        ("ref: pr:²", "pull request number"),
        ('{"ref": "main", "variables": {"N\\n": "1"}}', "is not a variable name"),
        ('{"ref": "main", "variables": {"n": "1"}}', "is not a variable name"),
        ("ref: main\nvariables: {GIT_CONFIG_COUNT: '1'}", "reserved (git and ssh"),
        ("ref: main\nvariables: {HTTPS_PROXY: 'http://evil'}", "reserved (proxies)"),
        ("ref: main\nvariables: {PYTHONWARNINGS: x}", "reserved (Python"),
    ]:
        answer = client.post("/api/trigger", data=body, auth=auth)
        assert answer.status_code == 422, (body, answer.get_data(as_text=True))
        assert needle in answer.get_json()["error"], body


def test_a_pipeline_may_narrow_the_variables_a_trigger_sets(sandbox_app, served_repository):
    url, _ = served_repository
    client = sandbox_app.test_client()
    repo = registered(client, url)
    auth = (str(repo["id"]), repo["webhook_secret"])
    narrowed = client.patch(
        f"/api/repositories/{repo['id']}/pipelines/cpu",
        json={"allowed_variables": ["N", "DEBUG"]},
        headers=admin(),
    )
    assert narrowed.get_json()["allowed_variables"] == ["DEBUG", "N"]
    refused = client.post("/api/trigger", data="ref: main\nvariables: {N: 4, LEVEL: 3}", auth=auth)
    assert refused.status_code == 422
    assert (
        refused.get_json()["error"]
        == "pipeline cpu does not allow the variable(s) LEVEL; it allows only DEBUG, N"
    )
    sha = "d" * 40
    accepted = client.post("/api/trigger", data=f"ref: sha:{sha}\nvariables: {{N: 4}}", auth=auth)
    assert accepted.status_code == 202, accepted.get_data(as_text=True)


def test_trigger_needs_the_repository_secret(sandbox_app, served_repository):
    url, _ = served_repository
    client = sandbox_app.test_client()
    repo = registered(client, url)
    for auth in ((str(repo["id"]), "wrong"), ("999", repo["webhook_secret"]), ("x", "y")):
        assert client.post("/api/trigger", data="ref: main", auth=auth).status_code == 401
    assert client.post("/api/trigger", data="ref: main").status_code == 401


def test_a_gitlab_merge_request_is_resolved_where_gitlab_keeps_its_head(sandbox_app, tmp_path):
    """pr:N of a GitLab registration is refs/merge-requests/N/head (GitHub's refs/pull/N/head is
    not there), read over git from the registered project."""
    import gitlab

    from sandbox.gitlab.server import run_gitlab

    with run_gitlab(tmp_path / "source-gitlab") as source:
        gl = gitlab.Gitlab(source.url, private_token=source.token)
        group = gl.groups.create({"name": "science", "path": "science"})
        project = gl.projects.create(
            {"name": "hpc-code", "path": "hpc-code", "namespace_id": group.id, "visibility": "public"}
        )
        work = tmp_path / "work"
        work.mkdir()
        git("init", "-q", "-b", "main", cwd=work)
        git("commit", "-q", "--allow-empty", "-m", "base", cwd=work)
        authed = project.http_url_to_repo.replace("http://", f"http://oauth2:{source.token}@")
        git("push", "-q", authed, "HEAD:main", cwd=work)
        git("commit", "-q", "--allow-empty", "-m", "feature", cwd=work)
        git("push", "-q", authed, "HEAD:feature", cwd=work)
        head = git("rev-parse", "HEAD", cwd=work)
        merge_request = source.state.open_merge_request("science/hpc-code", "feature", "main")
        client = sandbox_app.test_client()
        body = repository_body(full_name="science/hpc-code", clone_url=project.http_url_to_repo)
        body.update(provider="gitlab", trusted_users=[])
        repo = client.post("/api/repositories", json=body, headers=admin()).get_json()
        client.post(
            f"/api/repositories/{repo['id']}/pipelines",
            json={"name": "cpu", "entrypoint": "ci.yml", "system": "cluster"},
            headers=admin(),
        )
        auth = (str(repo["id"]), repo["webhook_secret"])
        answer = client.post("/api/trigger", json={"ref": f"pr:{merge_request['iid']}"}, auth=auth)
        assert answer.status_code == 202, answer.get_data(as_text=True)
        assert answer.get_json()["queued"] == {"pipeline": "cpu", "ref": "pr-1", "sha": head}
        missing = client.post("/api/trigger", json={"ref": "pr:9"}, auth=auth)
        assert missing.status_code == 422, missing.get_data(as_text=True)
