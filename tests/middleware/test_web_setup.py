"""The repository pages: registering, the setup page's forms, write-only secrets, errors next to
their fields with the input kept, the webhook details, and the App mode's installation check."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from middleware.models import AuditEntry, Repository
from middleware.services import EXTENSION
from tests.middleware.conftest import GOOD_TOKEN, admin
from tests.middleware.web_helpers import (
    csrf_token,
    pages_app,
    post_form,
    register_api,
    sign_in_as_github,
    sign_in_operator,
)

FIRECREST_SECRET = "firecrest-secret-value-xyz"
FORM = {
    "provider": "github",
    "full_name": "octo-org/hpc-code",
    "clone_url": "https://github.com/octo-org/hpc-code.git",
    "notification_token": GOOD_TOKEN,
    "firecrest_client_id": "client-1",
    "firecrest_client_secret": FIRECREST_SECRET,
    "default_account": "proj42",
    "trusted_users": "alice\nbob",
    "branches": "main\nrelease/*",
}


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Flask]:
    application = pages_app(tmp_path)
    yield application
    application.extensions[EXTENSION].db.dispose()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    client = app.test_client()
    sign_in_operator(client)
    return client


def error_of(html: str, form: str, field: str) -> str:
    found = re.search(rf'<p class="error" id="{form}-{field}-error">([^<]*)</p>', html)
    assert found, f"no error next to {form}-{field}"
    return found.group(1)


def value_of(html: str, form: str, field: str) -> str | None:
    found = re.search(rf'id="{form}-{field}" name="{field}" type="[a-z]+" value="([^"]*)"', html)
    return found.group(1) if found else None


def test_an_operator_registers_a_repository_and_sees_the_webhook_secret_once(client, app):
    answer = post_form(client, "/repositories/new", FORM, page="/repositories/new")
    assert answer.status_code == 201, answer.get_data(as_text=True)
    html = answer.get_data(as_text=True)
    secret = re.search(r'<code id="webhook-secret">([^<]+)</code>', html).group(1)  # type: ignore[union-attr]
    assert len(secret) >= 32
    assert "https://ci.example.org/webhooks/github" in html and "application/json" in html
    assert "Pushes, Pull requests, Issue comments" in html
    assert FIRECREST_SECRET not in html and GOOD_TOKEN not in html
    repo = client.get("/api/repositories", headers=admin()).get_json()["repositories"][0]
    assert repo["trusted_users"] == [{"id": 1001, "login": "alice"}, {"id": 1002, "login": "bob"}]
    assert repo["branches"] == ["main", "release/*"]
    setup = client.get(f"/repositories/{repo['id']}").get_data(as_text=True)
    for hidden in (secret, FIRECREST_SECRET, GOOD_TOKEN):
        assert hidden not in setup
    assert "Token check: valid" in setup


def test_registration_errors_are_next_to_their_fields_and_the_input_is_kept(client):
    bad = {
        **FORM,
        "full_name": "not a name",
        "clone_url": "https://github.com/o/r.git",
        "trusted_users": "ok\nbad login!",
    }
    answer = post_form(client, "/repositories/new", bad, page="/repositories/new")
    assert answer.status_code == 422
    html = answer.get_data(as_text=True)
    assert "owner/name" in error_of(html, "new", "full_name")
    assert value_of(html, "new", "clone_url") == "https://github.com/o/r.git"
    assert value_of(html, "new", "full_name") == "not a name"
    assert value_of(html, "new", "firecrest_client_id") == "client-1"
    assert "bad login!" in html  # the textarea keeps what was typed
    assert FIRECREST_SECRET not in html and GOOD_TOKEN not in html
    assert "Secret fields are never filled in again" in html
    assert client.get("/api/repositories", headers=admin()).get_json()["repositories"] == []


def test_an_invalid_notification_token_is_refused_at_its_field(client):
    answer = post_form(
        client, "/repositories/new", {**FORM, "notification_token": "ghp_bad_one"}, "/repositories/new"
    )
    assert answer.status_code == 422
    html = answer.get_data(as_text=True)
    assert "refused the notification token" in error_of(html, "new", "notification_token")
    assert "ghp_bad_one" not in html
    unsafe = post_form(
        client, "/repositories/new", {**FORM, "clone_url": "https://10.0.0.1/o/r.git"}, "/repositories/new"
    )
    assert "IP address" in error_of(unsafe.get_data(as_text=True), "new", "clone_url")


def test_settings_are_saved_and_an_empty_secret_keeps_the_stored_one(client, app):
    repo = register_api(client)
    path = f"/repositories/{repo['id']}"
    changed = {
        "firecrest_client_id": "client-2",
        "firecrest_client_secret": "",
        "default_account": "proj43",
        "notification_token": "",
        "trusted_users": "alice\ncarol",
        "branches": "main",
        "action": "save",
    }
    answer = post_form(client, f"{path}/settings", changed, page=path)
    assert answer.status_code == 302
    stored = client.get(f"/api/repositories/{repo['id']}", headers=admin()).get_json()
    assert stored["firecrest_client_id"] == "client-2" and stored["default_account"] == "proj43"
    assert [u["login"] for u in stored["trusted_users"]] == ["alice", "carol"]
    svc = app.extensions[EXTENSION]
    with svc.db.session() as session:
        row = session.get(Repository, repo["id"])
        assert svc.box.open(row.firecrest_client_secret_enc) == FIRECREST_SECRET
        assert svc.box.open(row.notification_token_enc) == GOOD_TOKEN
    page = client.get(path).get_data(as_text=True)
    assert "Saved: branches, default_account, firecrest_client_id, trusted_users." in page


def test_settings_errors_keep_the_input_and_change_nothing(client):
    repo = register_api(client)
    path = f"/repositories/{repo['id']}"
    data = {
        "firecrest_client_id": "",
        "default_account": "kept-account",
        "trusted_users": "alice\nnobody-known",
        "branches": "main",
        "firecrest_client_secret": "new-secret-typed",
    }
    answer = post_form(client, f"{path}/settings", data, page=path)
    assert answer.status_code == 422
    html = answer.get_data(as_text=True)
    assert error_of(html, "settings", "firecrest_client_id") == "must not be empty"
    assert value_of(html, "settings", "default_account") == "kept-account"
    assert "new-secret-typed" not in html
    unknown = post_form(client, f"{path}/settings", {**data, "firecrest_client_id": "c"}, page=path)
    assert "nobody-known" in error_of(unknown.get_data(as_text=True), "settings", "trusted_users")
    assert (
        client.get(f"/api/repositories/{repo['id']}", headers=admin()).get_json()["default_account"]
        == "proj42"
    )


def test_the_token_is_checked_live_and_nothing_is_saved_while_it_is_invalid(client, app):
    repo = register_api(client)
    path = f"/repositories/{repo['id']}"
    check = post_form(
        client,
        f"{path}/settings",
        {"action": "check", "notification_token": "ghp_wrong", "default_account": "typed"},
        page=path,
    )
    html = check.get_data(as_text=True)
    assert "Token check: GitHub refused the notification token" in html and "ghp_wrong" not in html
    assert value_of(html, "settings", "default_account") == "typed"
    good = post_form(
        client, f"{path}/settings", {"action": "check", "notification_token": GOOD_TOKEN}, page=path
    )
    assert "Token check: valid" in good.get_data(as_text=True)
    svc = app.extensions[EXTENSION]
    with svc.db.session() as session:  # the stored token was revoked meanwhile
        session.get(Repository, repo["id"]).notification_token_enc = svc.box.seal("ghp_revoked")
    page = client.get(path).get_data(as_text=True)
    assert 'class="check-bad">Token check: GitHub refused' in page
    form = {
        "firecrest_client_id": "client-1",
        "default_account": "other",
        "trusted_users": "alice\nBob",
        "branches": "main\nrelease/*",
        "action": "save",
    }
    refused = post_form(client, f"{path}/settings", form, page=path)
    assert refused.status_code == 422
    assert "enter a valid token to save" in error_of(
        refused.get_data(as_text=True), "settings", "notification_token"
    )
    assert (
        client.get(f"/api/repositories/{repo['id']}", headers=admin()).get_json()["default_account"]
        == "proj42"
    )
    fixed = post_form(client, f"{path}/settings", {**form, "notification_token": GOOD_TOKEN}, page=path)
    assert fixed.status_code == 302
    assert (
        client.get(f"/api/repositories/{repo['id']}", headers=admin()).get_json()["default_account"]
        == "other"
    )


def test_rotating_the_secret_shows_the_new_one_once(client, app):
    repo = register_api(client)
    path = f"/repositories/{repo['id']}"
    answer = post_form(client, f"{path}/webhook-secret", {}, page=path)
    html = answer.get_data(as_text=True)
    secret = re.search(r'<code id="webhook-secret">([^<]+)</code>', html).group(1)  # type: ignore[union-attr]
    assert secret != repo["webhook_secret"]
    svc = app.extensions[EXTENSION]
    with svc.db.session() as session:
        assert svc.box.open(session.get(Repository, repo["id"]).webhook_secret_enc) == secret
    assert secret not in client.get(path).get_data(as_text=True)


def test_a_registration_is_deleted_only_once_its_name_is_typed(client, app):
    repo = register_api(client)
    path = f"/repositories/{repo['id']}"
    refused = post_form(client, f"{path}/delete", {"confirm": "octo-org/other"}, page=path)
    assert refused.status_code == 422
    assert (
        error_of(refused.get_data(as_text=True), "delete", "confirm") == "type octo-org/hpc-code to confirm"
    )
    svc = app.extensions[EXTENSION]
    with svc.db.session() as session:
        assert session.get(Repository, repo["id"]) is not None
    done = post_form(client, f"{path}/delete", {"confirm": "octo-org/hpc-code"}, page=path)
    assert done.status_code == 303 and done.headers["Location"].endswith("/repositories")
    with svc.db.session() as session:
        assert session.get(Repository, repo["id"]) is None
        actions = [e.action for e in session.scalars(select(AuditEntry))]
    assert "repository.delete" in actions
    assert client.get(path).status_code == 404  # an operator is told it is gone


def test_a_manager_of_another_repository_cannot_delete_this_one(app):
    operator = app.test_client()
    sign_in_operator(operator)
    repo = register_api(operator)
    outsider = app.test_client()
    sign_in_as_github(outsider, "mallory", 666, managed=[])
    token = csrf_token(outsider, "/repositories")
    answer = outsider.post(
        f"/repositories/{repo['id']}/delete", data={"confirm": "octo-org/hpc-code", "csrf_token": token}
    )
    assert answer.status_code == 403
    with app.extensions[EXTENSION].db.session() as session:
        assert session.get(Repository, repo["id"]) is not None


def test_pipelines_are_added_edited_and_deleted(client):
    repo = register_api(client)
    path = f"/repositories/{repo['id']}"
    bad = post_form(
        client, f"{path}/pipelines", {"name": "gpu", "entrypoint": "ci/gpu one.yml", "system": "daint"}, path
    )
    assert bad.status_code == 422
    html = bad.get_data(as_text=True)
    assert "without spaces" in error_of(html, "new-pipeline", "entrypoint")
    assert value_of(html, "new-pipeline", "name") == "gpu"
    taken = post_form(
        client, f"{path}/pipelines", {"name": "cpu", "entrypoint": "a.yml", "system": "s"}, path
    )
    assert "already exists" in error_of(taken.get_data(as_text=True), "new-pipeline", "name")
    made = post_form(
        client,
        f"{path}/pipelines",
        {
            "name": "gpu",
            "entrypoint": "ci/gpu.yml",
            "system": "daint",
            "trusted_users": "carol",
            "branches": "",
        },
        path,
    )
    assert made.status_code == 302
    pipelines = client.get(f"/api/repositories/{repo['id']}", headers=admin()).get_json()["pipelines"]
    gpu = next(p for p in pipelines if p["name"] == "gpu")
    assert gpu["trusted_users"] == [{"id": 1003, "login": "carol"}] and gpu["branches"] is None
    edit = post_form(
        client,
        f"{path}/pipelines/{gpu['id']}",
        {"entrypoint": "ci/gpu2.yml", "system": "daint", "trusted_users": "", "branches": "dev"},
        path,
    )
    assert edit.status_code == 302
    gpu = client.get(f"/api/repositories/{repo['id']}/pipelines/gpu", headers=admin()).get_json()
    assert gpu["entrypoint"] == "ci/gpu2.yml" and gpu["trusted_users"] is None and gpu["branches"] == ["dev"]
    wrong = post_form(
        client, f"{path}/pipelines/{gpu['id']}", {"entrypoint": "", "system": "bad system"}, path
    )
    assert wrong.status_code == 422
    assert (
        error_of(wrong.get_data(as_text=True), f"pipeline-{gpu['id']}", "entrypoint") == "must not be empty"
    )
    gone = post_form(client, f"{path}/pipelines/{gpu['id']}/delete", {}, path)
    assert gone.status_code == 302
    assert client.get(f"/api/repositories/{repo['id']}/pipelines/gpu", headers=admin()).status_code == 404


def test_secret_variables_are_write_only(client):
    repo = register_api(client)
    path = f"/repositories/{repo['id']}"
    cpu = client.get(f"/api/repositories/{repo['id']}/pipelines/cpu", headers=admin()).get_json()
    url = f"{path}/pipelines/{cpu['id']}/variables"
    bad = post_form(client, url, {"variable_name": "1BAD", "variable_value": "value-secret-123"}, path)
    assert bad.status_code == 422
    html = bad.get_data(as_text=True)
    assert "not a variable name" in error_of(html, f"variables-{cpu['id']}", "variable_name")
    assert "value-secret-123" not in html
    assert (
        post_form(
            client, url, {"variable_name": "API_KEY", "variable_value": "value-secret-123"}, path
        ).status_code
        == 302
    )
    page = client.get(path).get_data(as_text=True)
    assert "API_KEY" in page and "TOKEN" in page
    assert "value-secret-123" not in page and "pipe-secret-1" not in page
    assert post_form(client, f"{url}/delete", {"variable_name": "TOKEN"}, path).status_code == 302
    names = client.get(f"/api/repositories/{repo['id']}/pipelines/cpu", headers=admin()).get_json()[
        "variables"
    ]
    assert names == ["API_KEY"]


def test_every_input_has_a_label_and_every_page_a_title_and_h1(client):
    repo = register_api(client)
    for path in ("/repositories", "/repositories/new", f"/repositories/{repo['id']}", "/audit", "/sign-in"):
        html = client.get(path).get_data(as_text=True)
        assert re.search(r"<title>[^<]+</title>", html) and "<h1>" in html, path
        ids = re.findall(r'<(?:input|textarea|select) id="([^"]+)"', html)
        visible = [
            m for m in re.findall(r"<(?:input|textarea|select)[^>]*>", html) if 'type="hidden"' not in m
        ]
        assert len(ids) == len(visible), path
        for element_id in ids:
            assert f'<label for="{element_id}">' in html, (path, element_id)
        assert '<input type="submit"' not in html


def pem_key() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


class FakeApp:
    def __init__(self, installed: dict[str, tuple[int, int]]) -> None:
        self.installed = installed

    def repository_installation(self, full_name: str) -> tuple[int, int] | None:
        return self.installed.get(full_name)

    def installation_token(self, installation_id: int) -> str:
        """Users are looked up with it in App mode (the fake resolver accepts any token)."""
        return f"ghs_fake_installation_{installation_id}"


def test_in_app_mode_a_repository_needs_the_app_installed_and_no_token(tmp_path, monkeypatch):
    application = pages_app(
        tmp_path,
        github_app_id="12345",
        github_app_private_key=pem_key(),
        github_app_webhook_secret="hook-secret",
    )
    svc = application.extensions[EXTENSION]
    svc.github_app = FakeApp({"octo-org/hpc-code": (77, 9001)})
    client = application.test_client()
    sign_in_operator(client)
    form = {k: v for k, v in FORM.items() if k != "notification_token"}
    missing = post_form(
        client,
        "/repositories/new",
        {**form, "full_name": "octo-org/other", "clone_url": "https://github.com/octo-org/other.git"},
        "/repositories/new",
    )
    assert missing.status_code == 422
    assert "not installed on octo-org/other" in error_of(missing.get_data(as_text=True), "new", "full_name")
    made = post_form(client, "/repositories/new", form, "/repositories/new")
    assert made.status_code == 201, made.get_data(as_text=True)
    assert "webhook-secret" not in made.get_data(as_text=True)  # the App delivers the events
    with svc.db.session() as session:
        repo = session.query(Repository).one()
        assert (repo.installation_id, repo.source_id) == (77, "9001")
    api = client.post(
        "/api/repositories",
        json={
            **form,
            "full_name": "octo-org/x",
            "clone_url": "https://github.com/octo-org/x.git",
            "trusted_users": [],
            "branches": ["main"],
        },
        headers=admin(),
    )
    assert api.status_code == 422 and api.get_json()["details"][0]["field"] == "full_name"
    # a manager may register an installed repository they administer on GitHub, no other
    manager = application.test_client()
    sign_in_as_github(manager, "mona", 7, managed=[])
    with manager.session_transaction() as session:
        session["github_token"] = svc.box.seal("gho_user_token")
    monkeypatch.setattr("middleware.web.repositories.managing_names", lambda settings, token, names: set())
    svc.github_app = FakeApp({"octo-org/mine": (78, 9002)})
    mine = {**form, "full_name": "octo-org/mine", "clone_url": "https://github.com/octo-org/mine.git"}
    refused = post_form(manager, "/repositories/new", mine, "/repositories/new")
    assert "not an admin or maintainer" in error_of(refused.get_data(as_text=True), "new", "full_name")
    monkeypatch.setattr(
        "middleware.web.repositories.managing_names", lambda settings, token, names: set(names)
    )
    assert post_form(manager, "/repositories/new", mine, "/repositories/new").status_code == 201
    application.extensions[EXTENSION].db.dispose()


def test_in_token_mode_managers_cannot_register(app):
    manager = app.test_client()
    sign_in_as_github(manager, "mona", 7, managed=[])
    assert manager.get("/repositories/new").status_code == 403
    assert post_form(manager, "/repositories/new", FORM, "/repositories").status_code == 403


def test_nul_characters_are_refused_at_their_field(client):
    repo = register_api(client)
    path = f"/repositories/{repo['id']}"
    data = {
        "firecrest_client_id": "client-1",
        "default_account": "a\x00b",
        "trusted_users": "alice",
        "branches": "main",
    }
    answer = post_form(client, f"{path}/settings", data, page=path)
    assert answer.status_code == 422
    assert "NUL" in error_of(answer.get_data(as_text=True), "settings", "default_account")
