"""Every change to a registration leaves an audit entry (who, what, when; never a secret value),
from the JSON API and from the pages alike, and operators read them on /audit."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import select

from middleware.models import AuditEntry
from middleware.services import EXTENSION
from tests.middleware.conftest import GOOD_TOKEN, admin
from tests.middleware.web_helpers import (
    pages_app,
    post_form,
    register_api,
    sign_in_as_github,
    sign_in_operator,
)


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Flask]:
    application = pages_app(tmp_path)
    yield application
    application.extensions[EXTENSION].db.dispose()


def entries(app: Flask) -> list[AuditEntry]:
    with app.extensions[EXTENSION].db.session() as session:
        return list(session.scalars(select(AuditEntry).order_by(AuditEntry.id)))


def test_api_changes_are_audited_with_field_names_and_no_secret_values(app):
    client = app.test_client()
    repo = register_api(client)
    rid = repo["id"]
    client.patch(
        f"/api/repositories/{rid}",
        json={
            "firecrest_client_secret": "rotated-firecrest-secret",
            "default_account": "p9",
            "rotate_webhook_secret": True,
        },
        headers=admin(),
    )
    client.patch(
        f"/api/repositories/{rid}/pipelines/cpu", json={"variables": {"K": "var-secret-2"}}, headers=admin()
    )
    client.delete(f"/api/repositories/{rid}/pipelines/cpu", headers=admin())
    client.delete(f"/api/repositories/{rid}", headers=admin())
    found = entries(app)
    assert [e.action for e in found] == [
        "repository.create",
        "pipeline.create",
        "repository.update",
        "webhook_secret.rotate",
        "pipeline.update",
        "pipeline.delete",
        "repository.delete",
    ]
    assert all(e.actor == "operator" for e in found)
    assert found[2].detail["fields"] == ["default_account", "firecrest_client_secret"]
    assert found[4].detail == {"pipeline": "cpu", "fields": ["variables"]}
    assert found[6].detail["full_name"] == "octo-org/hpc-code"
    text = json.dumps([e.detail for e in found])
    for secret in (
        GOOD_TOKEN,
        "firecrest-secret-value-xyz",
        "rotated-firecrest-secret",
        "var-secret-2",
        "pipe-secret-1",
    ):
        assert secret not in text


def test_refused_changes_leave_no_entry(app):
    client = app.test_client()
    repo = register_api(client)
    before = len(entries(app))
    answer = client.patch(
        f"/api/repositories/{repo['id']}", json={"notification_token": "ghp_bad"}, headers=admin()
    )
    assert answer.status_code == 422
    assert len(entries(app)) == before


def test_a_managers_changes_carry_their_login_and_numeric_id(app):
    client = app.test_client()
    repo = register_api(client)
    manager = app.test_client()
    sign_in_as_github(manager, "mona", 4242, managed=[repo["id"]])
    path = f"/repositories/{repo['id']}"
    cpu = client.get(f"/api/repositories/{repo['id']}/pipelines/cpu", headers=admin()).get_json()
    post_form(
        manager,
        f"{path}/pipelines/{cpu['id']}/variables",
        {"variable_name": "NEW", "variable_value": "v-123"},
        path,
    )
    last = entries(app)[-1]
    assert (last.actor, last.action, last.repository_id) == ("mona", "variable.set", repo["id"])
    assert last.detail == {"pipeline": "cpu", "variable": "NEW", "user_id": 4242}


def test_operators_read_the_trail_newest_first_filtered_and_paginated(app, monkeypatch):
    client = app.test_client()
    first = register_api(client)
    second = register_api(
        client, full_name="octo-org/second", clone_url="https://github.com/octo-org/second.git"
    )
    for n in range(3):
        client.patch(f"/api/repositories/{first['id']}", json={"default_account": f"a{n}"}, headers=admin())
    sign_in_operator(client)
    page = client.get("/audit").get_data(as_text=True)
    assert "<h1>Audit trail</h1>" in page and "7 changes" in page
    assert page.index("repository.update") < page.index("repository.create")  # newest first
    only = client.get(f"/audit?repository={second['id']}").get_data(as_text=True)
    assert "2 changes" in only and "repository.update" not in only and "octo-org/second" in only
    monkeypatch.setattr("middleware.web.audit.PAGE_SIZE", 3)
    one = client.get("/audit").get_data(as_text=True)
    assert "Page 1 of 3" in one and "Older" in one
    three = client.get("/audit?page=3").get_data(as_text=True)
    assert "Page 3 of 3" in three and "Newer" in three and three.count("<code>repository.create</code>") == 1
    assert client.get("/audit?page=x&repository=-1").status_code == 200


def test_only_operators_see_the_trail(app):
    repo = register_api(app.test_client())
    manager = app.test_client()
    sign_in_as_github(manager, "mona", 7, managed=[repo["id"]])
    assert manager.get("/audit").status_code == 403
    assert manager.get(f"/audit?repository={repo['id']}").status_code == 403
    assert app.test_client().get("/audit").status_code == 302
