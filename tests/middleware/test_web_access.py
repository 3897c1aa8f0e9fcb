"""Who signs in and what they see: GitHub OAuth through the stand-in, managers, trusted users,
outsiders (403 on every page and action of a repository not theirs)."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from flask import Flask
from flask.testing import FlaskClient

from middleware.models import Repository
from middleware.services import EXTENSION
from middleware.web import access
from sandbox.github.server import GitHubHandle, run_github
from tests.middleware.conftest import admin
from tests.middleware.web_helpers import (
    csrf_token,
    pages_app,
    post_form,
    register_api,
    sign_in_as_github,
)

CLIENT_ID = "Iv1.pagesclient"
CLIENT_SECRET = "pages-oauth-client-secret-xyz"
PUBLIC = "https://ci.example.org"


@pytest.fixture
def github() -> Iterator[GitHubHandle]:
    with run_github() as handle:
        state = handle.state
        for login in ("mona", "alice", "eve"):
            state.add_user(login)
        state.add_repo("octo-org/hpc-code", collaborators={"mona": "maintain", "alice": "write"})
        state.add_repo("other-org/private-code", collaborators={"eve": "admin"})
        state.register_oauth_app(CLIENT_ID, CLIENT_SECRET, name="FirecREST CI", callback_url=PUBLIC)
        yield handle


@pytest.fixture
def app(tmp_path: Path, github: GitHubHandle) -> Iterator[Flask]:
    application = pages_app(
        tmp_path,
        github_url=github.url,
        github_api_url=github.url,
        github_oauth_client_id=CLIENT_ID,
        github_oauth_client_secret=CLIENT_SECRET,
        public_url=PUBLIC,
    )
    yield application
    application.extensions[EXTENSION].db.dispose()


@pytest.fixture
def repos(app: Flask) -> dict[str, dict[str, Any]]:
    client = app.test_client()
    mine = register_api(client)  # octo-org/hpc-code, trusted: alice (1001), Bob
    theirs = register_api(
        client,
        full_name="other-org/private-code",
        clone_url="https://github.com/other-org/private-code.git",
        trusted_users=["carol"],
    )
    return {"mine": mine, "theirs": theirs}


def github_sign_in(client: FlaskClient, github: GitHubHandle, login: str) -> httpx.Response:
    """What the browser does: press "Sign in with GitHub", authorize on GitHub, come back."""
    start = post_form(client, "/sign-in/github", {})
    assert start.status_code == 302
    authorize = start.headers["Location"]
    assert authorize.startswith(f"{github.url}/login/oauth/authorize?")
    with httpx.Client() as browser:
        page = browser.get(authorize)
        assert page.status_code == 200
        form = dict(re.findall(r'type="hidden" name="([^"]+)" value="([^"]*)"', page.text))
        sent = browser.post(f"{github.url}/login/oauth/authorize", data={**form, "login": login})
    assert sent.status_code == 302
    back = urlsplit(sent.headers["Location"])
    assert f"{back.scheme}://{back.netloc}" == PUBLIC
    return client.get(f"{back.path}?{back.query}")


def test_a_manager_signs_in_with_github_and_sees_only_their_repository(app, github, repos):
    client = app.test_client()
    done = github_sign_in(client, github, "mona")
    assert done.status_code == 302 and done.headers["Location"] == "/"
    listing = client.get("/repositories").get_data(as_text=True)
    assert "octo-org/hpc-code" in listing and "other-org/private-code" not in listing
    assert "Signed in as <strong>mona</strong>" in listing
    assert client.get(f"/repositories/{repos['mine']['id']}").status_code == 200
    assert client.get(f"/repositories/{repos['theirs']['id']}").status_code == 403
    assert client.get("/audit").status_code == 403


def test_the_users_token_is_kept_sealed_never_plain_in_the_cookie_or_logs(app, github, repos, caplog, capsys):
    client = app.test_client()
    caplog.set_level("DEBUG")
    github_sign_in(client, github, "mona")
    client.get("/repositories")
    logged = caplog.text + "".join(capsys.readouterr())
    assert "mona" in logged
    tokens = [t for t in github.state.user_tokens] + [CLIENT_SECRET]
    assert tokens
    cookie = client.get_cookie("firecrest_ci_session")
    assert cookie is not None
    decoded = json.dumps(app.session_interface.get_signing_serializer(app).loads(cookie.value))  # type: ignore[attr-defined]
    for token in tokens:
        assert token not in decoded and token not in cookie.value and token not in logged


def test_a_write_collaborator_is_no_manager_but_sees_the_runs_they_are_trusted_for(app, github, repos):
    with app.app_context():
        svc = app.extensions[EXTENSION]
        with svc.db.session() as session:  # alice is trusted by login; give her the stand-in's id
            repo = session.get(Repository, repos["mine"]["id"])
            alice = github.state.users["alice"]["id"]
            repo.trusted_users = [{"id": alice, "login": "alice"}]
    client = app.test_client()
    github_sign_in(client, github, "alice")
    listing = client.get("/repositories").get_data(as_text=True)
    assert "octo-org/hpc-code" in listing and "other-org/private-code" not in listing
    assert ">runs<" in listing and "Setup" not in listing
    assert client.get(f"/repositories/{repos['mine']['id']}").status_code == 403


def test_the_oauth_state_must_match_the_session(app, github, repos):
    client = app.test_client()
    post_form(client, "/sign-in/github", {})
    answer = client.get("/sign-in/github/callback?code=abc&state=forged")
    assert answer.status_code == 400
    assert "expired or was not started here" in answer.get_data(as_text=True)
    assert client.get("/repositories").status_code == 302
    other = app.test_client()  # a code without any sign-in started
    assert other.get("/sign-in/github/callback?code=abc&state=").status_code == 400


def test_a_refused_code_is_a_readable_failure_without_secrets(app, github, repos):
    client = app.test_client()
    start = post_form(client, "/sign-in/github", {})
    state = dict(p.split("=") for p in urlsplit(start.headers["Location"]).query.split("&"))["state"]
    answer = client.get(f"/sign-in/github/callback?code=not-a-code&state={state}")
    assert answer.status_code == 502
    html = answer.get_data(as_text=True)
    assert "GitHub did not complete the sign-in" in html and CLIENT_SECRET not in html


def outsider_requests(repo_id: int, pipeline_id: int) -> list[tuple[str, str, dict[str, str]]]:
    base = f"/repositories/{repo_id}"
    pipeline = f"{base}/pipelines/{pipeline_id}"
    return [
        ("get", base, {}),
        ("post", f"{base}/settings", {"default_account": "x", "firecrest_client_id": "y"}),
        ("post", f"{base}/settings", {"action": "check", "notification_token": "t"}),
        ("post", f"{base}/webhook-secret", {}),
        ("post", f"{base}/pipelines", {"name": "n", "entrypoint": "e.yml", "system": "s"}),
        ("post", pipeline, {"entrypoint": "evil.yml", "system": "s"}),
        ("post", f"{pipeline}/delete", {}),
        ("post", f"{pipeline}/variables", {"variable_name": "X", "variable_value": "v"}),
        ("post", f"{pipeline}/variables/delete", {"variable_name": "TOKEN"}),
    ]


def test_an_outsider_gets_403_on_every_page_and_action_of_the_repository(app, repos):
    svc = app.extensions[EXTENSION]
    repo_id = repos["theirs"]["id"]
    pipeline_id = repos["theirs"]["pipelines"][0]["id"] if repos["theirs"].get("pipelines") else None
    if pipeline_id is None:
        pipeline_id = (
            app.test_client()
            .get(f"/api/repositories/{repo_id}", headers=admin())
            .get_json()["pipelines"][0]["id"]
        )
    client = app.test_client()
    sign_in_as_github(client, "mallory", 666, managed=[repos["mine"]["id"]])  # manages another one
    before = client.get(f"/api/repositories/{repo_id}", headers=admin()).get_json()
    for method, path, data in outsider_requests(repo_id, pipeline_id):
        if method == "get":
            answer = client.get(path)
        else:
            answer = client.post(path, data={**data, "csrf_token": csrf_token(client, "/repositories")})
        assert answer.status_code == 403, (method, path)
        assert "other-org/private-code" not in answer.get_data(as_text=True)
    for missing in (outsider_requests(987654, 1)[0], outsider_requests(987654, 1)[3]):
        method, path, data = missing
        token = csrf_token(client, "/repositories")
        answer = (
            client.get(path) if method == "get" else client.post(path, data={**data, "csrf_token": token})
        )
        assert answer.status_code == 403, path  # nothing tells which ids exist
    after = client.get(f"/api/repositories/{repo_id}", headers=admin()).get_json()
    assert before == after
    with svc.db.session() as session:
        assert session.get(Repository, repo_id).webhook_secret_enc  # untouched


def test_repositories_of_other_providers_are_managed_by_operators_only(app):
    repo = Repository(provider="gitlab", full_name="g/p", id=4242, trusted_users=[{"id": 7, "login": "mona"}])
    repo.pipelines = []
    with app.test_request_context():
        from flask import session

        session["managed"] = [4242]  # even a stale id in the session grants nothing there
        session["rights_at"] = time.time()
        viewer = access.Viewer("github", "mona", 7)
        assert not access.may_manage(viewer, repo)
        assert not access.may_operate_runs(viewer, repo)
        assert access.may_manage(access.Viewer("operator", "operator", None), repo)


def test_trusted_users_by_numeric_id_per_repository_and_pipeline(app):
    from middleware.models import Pipeline

    repo = Repository(provider="github", full_name="o/r", id=5, trusted_users=[{"id": 1, "login": "a"}])
    repo.pipelines = [
        Pipeline(name="gpu", trusted_users=[{"id": 2, "login": "b"}]),
        Pipeline(name="cpu", trusted_users=None),
    ]
    a, b, c = (access.Viewer("github", name, uid) for name, uid in (("a", 1), ("b", 2), ("c", 3)))
    renamed = access.Viewer("github", "a", 99)  # the login alone trusts no one
    with app.test_request_context():
        from flask import session

        session["managed"] = []
        session["rights_at"] = time.time()
        assert access.may_operate_runs(a, repo) and access.may_operate_runs(b, repo)
        assert not access.may_operate_runs(c, repo) and not access.may_operate_runs(renamed, repo)
        assert access.may_operate_runs(a, repo, "cpu") and not access.may_operate_runs(a, repo, "gpu")
        assert access.may_operate_runs(b, repo, "gpu") and not access.may_operate_runs(b, repo, "cpu")
        unknown = Repository(
            provider="github", full_name="o/s", id=6, trusted_users=[{"id": 3, "login": "c", "unknown": True}]
        )
        unknown.pipelines = []
        assert not access.may_operate_runs(c, unknown)


def test_rights_are_read_again_after_their_ttl_and_none_when_github_fails(app, repos):
    calls: list[str] = []

    def reader(sealed: str) -> list[int]:
        calls.append(sealed)
        raise OSError("GitHub down")

    app.extensions["firecrest_ci_rights"] = reader
    client = app.test_client()
    sign_in_as_github(client, "mona", 7, managed=[repos["mine"]["id"]])
    assert client.get(f"/repositories/{repos['mine']['id']}").status_code == 200
    with client.session_transaction() as session:
        session["rights_at"] = time.time() - access.RIGHTS_TTL - 1
        session["github_token"] = "sealed-token"
    assert client.get(f"/repositories/{repos['mine']['id']}").status_code == 403  # stale rights unused
    assert calls
    app.extensions["firecrest_ci_rights"] = lambda sealed: [repos["mine"]["id"]]
    assert client.get(f"/repositories/{repos['mine']['id']}").status_code == 200
