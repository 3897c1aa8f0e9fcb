"""GitHub Apps on the stand-in through the unmodified PyGithub: JWT authentication, installations,
installation access tokens, and the `installation` / `installation_repositories` webhooks."""

from __future__ import annotations

import hashlib
import hmac
import json
import time

import jwt
import pytest
from github import Auth, GithubException, GithubIntegration, UnknownObjectException


def make_jwt(claims, key, algorithm="RS256"):
    """Sign claims as given (PyJWT's `encode` insists on a string `iss`; GitHub takes an integer too)."""
    return jwt.PyJWS().encode(json.dumps(claims).encode(), key, algorithm=algorithm)


def test_the_app_authenticates_with_its_jwt(world):
    plain = GithubIntegration(  # PyGithub's own signer, from the PEM text
        auth=Auth.AppAuth(world.app_id, world.private_key), base_url=world.gh.url, retry=None
    )
    app = plain.get_app()
    assert (app.id, app.slug, app.name, app.owner.login) == (
        world.app_id,
        "firecrest-ci",
        "FirecREST CI",
        "octo-org",
    )
    assert app.permissions["checks"] == "write"
    # PyGithub sends `iss` as a string; an integer works as well, and so does the client ID.
    now = int(time.time())
    for issuer in (world.app_id, world.client_id):
        token = make_jwt({"iat": now - 60, "exp": now + 300, "iss": issuer}, world.signing_key)
        answer = world.http.get(f"{world.gh.url}/app", headers={"Authorization": f"Bearer {token}"})
        assert answer.json()["id"] == world.app_id
    # The longest lifetime PyGithub allows (10 minutes) is accepted.
    assert world.integration(jwt_expiry=600).get_app().id == world.app_id


def bearer(world, claims, key=None, algorithm="RS256"):
    token = make_jwt(claims, key or world.signing_key, algorithm)
    return world.http.get(f"{world.gh.url}/app/installations", headers={"Authorization": f"Bearer {token}"})


def test_bad_jwts_are_refused_as_github_refuses_them(world):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    now = int(time.time())
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    cases = [
        ({"iat": now - 60, "exp": now + 300, "iss": str(world.app_id)}, other, 401, "could not be decoded"),
        (
            {"iat": now - 700, "exp": now - 100, "iss": str(world.app_id)},
            None,
            401,
            "'Expiration time' claim",
        ),
        ({"iat": now - 60, "exp": now + 1200, "iss": str(world.app_id)}, None, 401, "too far in the future"),
        ({"iat": now + 600, "exp": now + 590, "iss": str(world.app_id)}, None, 401, "'Issued at' claim"),
        ({"iat": now - 60, "exp": now + 300, "iss": "999"}, None, 404, "Integration not found"),
    ]
    for claims, key, status, message in cases:
        answer = bearer(world, claims, key)
        assert answer.status_code == status, claims
        assert message in answer.json()["message"]
        assert answer.json()["documentation_url"].startswith("https://docs.github.com/")
    garbage = world.http.get(f"{world.gh.url}/app", headers={"Authorization": "Bearer eyJnot.a.jwt"})
    assert garbage.status_code == 401
    # Apps sign with RS256: an HS256 token is refused whatever its secret.
    hs = bearer(world, {"iat": now - 60, "exp": now + 300, "iss": str(world.app_id)}, "s" * 32, "HS256")
    assert hs.status_code == 401
    # A personal token is not a JWT: the App endpoints refuse it.
    personal = world.http.get(f"{world.gh.url}/app", headers={"Authorization": f"token {world.owner_token}"})
    assert personal.status_code == 401


def test_installations_are_listed_and_found_by_repo_org_and_user(world):
    state = world.gh.state
    org = state.install_app(world.app_id, "octo-org", ["octo-org/hpc-code"])
    user = state.install_app(world.app_id, "octocat")
    integration = world.integration()
    assert sorted(i.id for i in integration.get_installations()) == sorted([org.id, user.id])
    found = integration.get_app_installation(org.id)
    assert (found.app_id, found.target_type, found.account.login) == (
        world.app_id,
        "Organization",
        "octo-org",
    )
    assert found.repository_selection == "selected"
    assert integration.get_repo_installation("octo-org", "hpc-code").id == org.id
    assert integration.get_org_installation("octo-org").id == org.id
    assert integration.get_user_installation("octocat").id == user.id
    assert integration.get_repo_installation("octocat", "dotfiles").id == user.id  # `all` covers it
    for lookup in (
        lambda: integration.get_repo_installation("octo-org", "docs"),  # not selected
        lambda: integration.get_org_installation("octocat"),  # a user, not an organization
        lambda: integration.get_app_installation(123),
    ):
        with pytest.raises(UnknownObjectException):
            lookup()


def test_access_tokens_expire_in_an_hour_and_can_be_narrowed(world):
    state = world.gh.state
    inst = state.install_app(world.app_id, "octo-org")
    integration = world.integration()
    token = integration.get_access_token(inst.id)
    assert token.token.startswith("ghs_")
    assert 3590 < token.expires_at.timestamp() - time.time() <= 3600
    assert token.permissions["statuses"] == "write"
    assert token.repository_selection == "all"

    jwt_header = {"Authorization": f"Bearer {integration.auth.token}"}
    url = f"{world.gh.url}/app/installations/{inst.id}/access_tokens"
    narrowed = world.http.post(
        url, headers=jwt_header, json={"repositories": ["docs"], "permissions": {"statuses": "write"}}
    )
    assert narrowed.status_code == 201
    body = narrowed.json()
    assert body["repository_selection"] == "selected"
    assert [r["full_name"] for r in body["repositories"]] == ["octo-org/docs"]
    assert body["permissions"] == {"statuses": "write", "metadata": "read"}
    by_id = world.http.post(
        url, headers=jwt_header, json={"repository_ids": [state.find_repo("octo-org/hpc-code")["id"]]}
    )
    assert [r["name"] for r in by_id.json()["repositories"]] == ["hpc-code"]
    assert world.http.post(url, headers=jwt_header, json={"repositories": ["dotfiles"]}).status_code == 422
    too_much = world.http.post(url, headers=jwt_header, json={"permissions": {"administration": "write"}})
    assert too_much.status_code == 422
    assert "not granted" in too_much.json()["message"]
    with pytest.raises(UnknownObjectException):
        integration.get_access_token(999_999)


def test_an_installation_lists_its_repositories(world):
    state = world.gh.state
    inst = state.install_app(world.app_id, "octo-org", ["octo-org/hpc-code", "octo-org/secret"])
    installation = world.integration().get_app_installation(inst.id)
    assert sorted(r.full_name for r in installation.get_repos()) == ["octo-org/hpc-code", "octo-org/secret"]
    github = world.client(world.app_auth().get_installation_auth(inst.id))
    assert github.get_repo("octo-org/secret").private


def signed(world, record):
    expected = hmac.new(world.webhook_secret.encode(), record["body"], hashlib.sha256).hexdigest()
    return record["headers"]["X-Hub-Signature-256"] == f"sha256={expected}"


def test_installation_lifecycle_sends_webhooks_like_githubs(world):
    state, receiver = world.gh.state, world.receiver
    inst = state.install_app(world.app_id, "octo-org", ["octo-org/hpc-code"], sender="octocat")
    state.add_installation_repos(inst.id, ["octo-org/docs"], sender="octocat")
    state.remove_installation_repos(inst.id, ["octo-org/hpc-code"], sender="octocat")
    state.suspend_installation(inst.id, sender="octocat")
    with pytest.raises(GithubException) as suspended:
        world.integration().get_access_token(inst.id)
    assert suspended.value.status == 403
    state.unsuspend_installation(inst.id)
    state.uninstall_app(inst.id, sender="octocat")

    kinds = [(r["headers"]["X-Github-Event"], r["payload"]["action"]) for r in receiver.received]
    assert kinds == [
        ("installation", "created"),
        ("installation_repositories", "added"),
        ("installation_repositories", "removed"),
        ("installation", "suspend"),
        ("installation", "unsuspend"),
        ("installation", "deleted"),
    ]
    assert all(signed(world, r) for r in receiver.received)
    created = receiver.received[0]["payload"]
    assert created["installation"]["id"] == inst.id
    assert created["installation"]["account"]["login"] == "octo-org"
    assert created["installation"]["target_type"] == "Organization"
    assert created["installation"]["app_id"] == world.app_id
    assert [r["full_name"] for r in created["repositories"]] == ["octo-org/hpc-code"]
    assert created["sender"]["login"] == "octocat"
    added = receiver.received[1]["payload"]
    assert added["repository_selection"] == "selected"
    assert [r["full_name"] for r in added["repositories_added"]] == ["octo-org/docs"]
    assert added["repositories_removed"] == []
    removed = receiver.received[2]["payload"]
    assert [r["name"] for r in removed["repositories_removed"]] == ["hpc-code"]
    assert receiver.received[3]["payload"]["installation"]["suspended_by"]["login"] == "octocat"
    assert receiver.received[4]["payload"]["installation"]["suspended_at"] is None
    assert [r["full_name"] for r in receiver.received[5]["payload"]["repositories"]] == ["octo-org/docs"]
    with pytest.raises(UnknownObjectException):
        world.integration().get_app_installation(inst.id)


def test_removing_from_an_all_installation_makes_it_selected(world):
    state = world.gh.state
    inst = state.install_app(world.app_id, "octo-org")
    state.remove_installation_repos(inst.id, ["octo-org/secret"])
    removed = world.receiver.events("installation_repositories")[-1]
    assert removed["repository_selection"] == "selected"
    assert sorted(r["full_name"] for r in state.installation_repos(inst)) == [
        "octo-org/docs",
        "octo-org/hpc-code",
    ]


def test_no_webhook_url_no_delivery(world):
    state = world.gh.state
    state.apps[world.app_id].webhook_url = None
    state.install_app(world.app_id, "octo-org")
    assert world.receiver.received == []
    assert state.deliveries == []
