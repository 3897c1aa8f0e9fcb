import json

from sqlalchemy import select

from middleware.models import OutboxItem, Pipeline, Repository
from middleware.registry.config import to_config
from tests.middleware.conftest import ADMIN, GOOD_TOKEN, admin, repository_body

SECRETS = (GOOD_TOKEN, "firecrest-secret-value-xyz", "pipeline-secret-value")


def test_every_call_needs_the_admin_token(client):
    for method, path in (
        ("get", "/api/repositories"),
        ("post", "/api/repositories"),
        ("delete", "/api/repositories/1"),
    ):
        answer = getattr(client, method)(path, headers={"Authorization": "Bearer wrong"})
        assert answer.status_code == 401
        assert getattr(client, method)(path).status_code == 401


def test_create_shows_the_webhook_secret_once_and_no_other_secret(client, registered):
    assert len(registered["webhook_secret"]) >= 32
    assert registered["webhook_url"] == "https://ci.example.org/webhooks/github"
    again = client.get(f"/api/repositories/{registered['id']}", headers=admin())
    assert again.status_code == 200
    text = again.get_data(as_text=True)
    assert registered["webhook_secret"] not in text
    for secret in SECRETS:
        assert secret not in text
    body = again.get_json()
    assert [p["name"] for p in body["pipelines"]] == ["cpu", "gpu"]
    assert body["pipelines"][0]["variables"] == ["TOKEN"]
    assert body["trusted_users"] == [{"id": 1001, "login": "alice"}, {"id": 1002, "login": "Bob"}]


def test_secrets_are_encrypted_at_rest(client, registered, svc):
    with svc.db.session() as session:
        repo = session.get(Repository, registered["id"])
        stored = json.dumps(
            [repo.webhook_secret_enc, repo.notification_token_enc, repo.firecrest_client_secret_enc]
            + [p.variables_enc for p in session.query(Pipeline).all()]
        )
    for secret in (*SECRETS, registered["webhook_secret"]):
        assert secret not in stored
    if svc.settings.database_url.startswith("sqlite:///"):
        with open(svc.settings.database_url.removeprefix("sqlite:///"), "rb") as handle:
            content = handle.read()  # the raw database file
        for secret in (*SECRETS, registered["webhook_secret"]):
            assert secret.encode() not in content


def test_invalid_notification_token_is_refused_clearly(client):
    answer = client.post(
        "/api/repositories", json=repository_body(notification_token="ghp_bad"), headers=admin()
    )
    assert answer.status_code == 422
    assert "refused the notification token" in answer.get_json()["error"]
    assert "ghp_bad" not in answer.get_data(as_text=True)


def test_unsafe_clone_urls_are_refused(client):
    for url in (
        "https://127.0.0.1/o/r.git",
        "https://10.1.2.3/o/r.git",
        "file:///srv/repo",
        "https://u:p@github.com/o/r.git",
    ):
        answer = client.post("/api/repositories", json=repository_body(clone_url=url), headers=admin())
        assert answer.status_code == 422, url
        assert answer.get_json()["details"][0]["field"] == "clone_url"


def test_validation_errors_never_echo_the_input(client):
    answer = client.post(
        "/api/repositories",
        json=repository_body(firecrest_client_secret=["not", "a", "string-secret-xyz"], extra_field="x"),
        headers=admin(),
    )
    assert answer.status_code == 422
    text = answer.get_data(as_text=True)
    assert "string-secret-xyz" not in text
    fields = {d["field"] for d in answer.get_json()["details"]}
    assert {"firecrest_client_secret", "extra_field"} <= fields


def test_malformed_bodies_get_400(client):
    for body in (b"{", b"[1, 2]", b"null", b"\xff\xfe"):
        answer = client.post(
            "/api/repositories", data=body, headers={**admin(), "Content-Type": "application/json"}
        )
        assert answer.status_code == 400


def test_duplicate_repository_is_a_conflict(client, registered):
    answer = client.post("/api/repositories", json=repository_body(), headers=admin())
    assert answer.status_code == 409


def test_update_replaces_secrets_and_can_rotate_the_webhook_secret(client, registered):
    repo_id = registered["id"]
    answer = client.patch(
        f"/api/repositories/{repo_id}",
        json={
            "firecrest_client_secret": "new-secret-value-abc",
            "trusted_users": ["carol"],
            "rotate_webhook_secret": True,
        },
        headers=admin(),
    )
    assert answer.status_code == 200
    body = answer.get_json()
    assert body["trusted_users"] == [{"id": 1003, "login": "carol"}]
    assert body["webhook_secret"] != registered["webhook_secret"]
    assert "new-secret-value-abc" not in answer.get_data(as_text=True)
    assert "webhook_secret" not in client.get(f"/api/repositories/{repo_id}", headers=admin()).get_json()


def test_pipeline_names_are_unique_and_without_whitespace(client, registered):
    base = f"/api/repositories/{registered['id']}/pipelines"
    dup = client.post(base, json={"name": "cpu", "entrypoint": "x.yml", "system": "cluster"}, headers=admin())
    assert dup.status_code == 409
    spaced = client.post(
        base, json={"name": "has space", "entrypoint": "x.yml", "system": "cluster"}, headers=admin()
    )
    assert spaced.status_code == 422


def test_pipeline_crud(client, registered):
    base = f"/api/repositories/{registered['id']}/pipelines"
    updated = client.patch(
        f"{base}/cpu", json={"branches": ["dev"], "trusted_users": ["dave"], "variables": {}}, headers=admin()
    )
    assert updated.status_code == 200
    assert updated.get_json()["branches"] == ["dev"]
    assert updated.get_json()["variables"] == []
    assert client.get(f"{base}/cpu", headers=admin()).get_json()["trusted_users"] == [
        {"id": 1004, "login": "dave"}
    ]
    assert client.delete(f"{base}/cpu", headers=admin()).status_code == 204
    assert client.get(f"{base}/cpu", headers=admin()).status_code == 404
    assert [p["name"] for p in client.get(base, headers=admin()).get_json()["pipelines"]] == ["gpu"]


def test_delete_repository(client, registered):
    assert client.delete(f"/api/repositories/{registered['id']}", headers=admin()).status_code == 204
    assert client.get(f"/api/repositories/{registered['id']}", headers=admin()).status_code == 404
    assert client.get("/api/repositories", headers=admin()).get_json() == {"repositories": []}


def test_admin_token_is_never_logged(client, registered, capfd):
    client.get("/api/repositories", headers={"Authorization": f"Bearer {ADMIN}"})
    out, err = capfd.readouterr()
    assert ADMIN not in out + err


def test_the_sources_visibility_is_read_from_github(client):
    answer = client.post(
        "/api/repositories",
        json=repository_body(
            full_name="octo-org/hpc-private", clone_url="https://github.com/octo-org/hpc-private.git"
        ),
        headers=admin(),
    )
    assert answer.status_code == 201
    assert answer.get_json()["private"] is True


def test_a_pipeline_narrows_its_variables_with_the_comment_name_rule(client, registered, svc):
    from middleware.registry.config import to_config

    base = f"/api/repositories/{registered['id']}/pipelines"
    assert client.get(f"{base}/cpu", headers=admin()).get_json()["allowed_variables"] is None
    body = {
        "name": "mpi",
        "entrypoint": "ci/mpi.yml",
        "system": "cluster",
        "allowed_variables": ["N", "DEBUG", "N"],
    }
    made = client.post(base, json=body, headers=admin())
    assert made.status_code == 201, made.get_data(as_text=True)
    assert made.get_json()["allowed_variables"] == ["DEBUG", "N"]
    for names, needle in (
        (["GIT_CONFIG_COUNT"], "reserved"),
        (["N\nX"], "not a variable name"),
        (["n"], "not a"),
    ):
        refused = client.patch(f"{base}/mpi", json={"allowed_variables": names}, headers=admin())
        assert refused.status_code == 422, names
        assert needle in refused.get_json()["details"][0]["message"]
    assert client.patch(f"{base}/mpi", json={"system": "daint"}, headers=admin()).get_json()[
        "allowed_variables"
    ] == [
        "DEBUG",
        "N",
    ]  # untouched unless given
    with svc.db.session() as session:
        config = to_config(session.get_one(Repository, registered["id"]))
    assert {p.name: p.allowed_variables for p in config.pipelines}["mpi"] == frozenset({"DEBUG", "N"})
    assert (
        client.patch(f"{base}/mpi", json={"allowed_variables": []}, headers=admin()).get_json()[
            "allowed_variables"
        ]
        == []
    )
    lifted = client.patch(f"{base}/mpi", json={"allowed_variables": None}, headers=admin())
    assert lifted.get_json()["allowed_variables"] is None


def test_trusted_logins_are_stored_with_githubs_numeric_ids_and_unknown_ones_refused(client, registered):
    answer = client.patch(
        f"/api/repositories/{registered['id']}",
        json={"trusted_users": ["alice", "nobody-here"]},
        headers=admin(),
    )
    assert answer.status_code == 422
    assert "nobody-here" in answer.get_json()["error"]


def test_logins_github_cannot_resolve_now_are_resolved_later_and_trust_no_one_until_then(client, svc):
    from middleware.registry.trust import resolve_trusted_users
    from middleware.sources.github.users import UsersUnavailable
    from tests.middleware.conftest import fake_resolve_users

    def github_away(token, logins):
        raise UsersUnavailable("GitHub answered 503")

    svc.resolve_github_users = github_away
    made = client.post("/api/repositories", json=repository_body(trusted_users=["alice"]), headers=admin())
    assert made.status_code == 201
    repo = made.get_json()
    assert repo["trusted_users"] == [{"id": None, "login": "alice"}]
    with svc.db.session() as session:
        config = to_config(session.get(Repository, repo["id"]))
        (command,) = session.scalars(select(OutboxItem)).all()
    assert config.trusted_users == frozenset()  # nobody is trusted by a login alone
    assert (command.task, command.payload) == (
        "firecrest_ci.resolve_trusted_users",
        {"repository_id": repo["id"]},
    )
    assert resolve_trusted_users(svc.db, svc.box, fake_resolve_users, repo["id"]) == 1
    shown = client.get(f"/api/repositories/{repo['id']}", headers=admin()).get_json()
    assert shown["trusted_users"] == [{"id": 1001, "login": "alice"}]


def test_deleted_registrations_queue_a_purge_and_their_ids_are_never_reused(client, registered, svc):
    old_id = registered["id"]
    assert client.delete(f"/api/repositories/{old_id}", headers=admin()).status_code == 204
    with svc.db.session() as session:
        (purge,) = session.scalars(
            select(OutboxItem).where(OutboxItem.task == "firecrest_ci.purge_repository")
        )
        assert purge.payload == {"repository_id": old_id, "pipelines": ["cpu", "gpu"]}
    again = client.post("/api/repositories", json=repository_body(), headers=admin())
    assert again.status_code == 201
    assert again.get_json()["id"] > old_id  # the next tenant never inherits <group>/<id>/...
