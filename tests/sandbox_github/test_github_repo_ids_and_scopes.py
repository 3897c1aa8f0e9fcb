"""Repositories by their stable numeric id (renames and transfers redirect as GitHub's API does),
classic token scopes in `X-OAuth-Scopes`, fine-grained tokens' per-repository permissions,
and repository roles."""

from __future__ import annotations

import pytest
from github import Auth, GithubException, UnknownObjectException

SHA = "c" * 40


def test_a_repository_is_found_by_id_and_keeps_it_through_a_rename(world):
    state = world.gh.state
    github = world.client(Auth.Token(world.owner_token))
    repo_id = state.find_repo("octo-org/hpc-code")["id"]
    assert github.get_repo(repo_id).full_name == "octo-org/hpc-code"
    state.rename_repo("octo-org/hpc-code", "octo-org/hpc-solver")
    renamed = github.get_repo("octo-org/hpc-code")  # PyGithub follows the 301 to /repositories/{id}
    assert (renamed.id, renamed.full_name) == (repo_id, "octo-org/hpc-solver")
    assert renamed.get_pull(7).head.sha == "a" * 40  # pulls moved along
    moved = world.http.get(f"{world.gh.url}/repos/octo-org/hpc-code/pulls/7?x=1", follow_redirects=False)
    assert moved.status_code == 301
    assert moved.headers["Location"] == f"{world.gh.url}/repositories/{repo_id}/pulls/7?x=1"
    assert moved.json()["message"] == "Moved Permanently"
    posted = world.http.post(
        f"{world.gh.url}/repos/octo-org/hpc-code/statuses/{SHA}",
        headers={"Authorization": f"token {world.owner_token}"},
        json={"state": "success"},
    )
    assert posted.status_code == 307  # writes to the old name are redirected, not followed by PyGithub
    assert posted.headers["Location"].endswith(f"/repositories/{repo_id}/statuses/{SHA}")
    followed = world.http.post(
        posted.headers["Location"],
        headers={"Authorization": f"token {world.owner_token}"},
        json={"state": "success"},
    )
    assert followed.status_code == 201
    assert state.statuses[-1]["repository"] == "octo-org/hpc-solver"
    paths = [r["path"] for r in state.requests]
    assert f"/repositories/{repo_id}/statuses/{SHA}" in paths


def test_a_transfer_redirects_and_a_new_repository_takes_the_old_name(world):
    state = world.gh.state
    state.add_org("science")
    repo_id = state.find_repo("octo-org/docs")["id"]
    inst = state.install_app(world.app_id, "octo-org", ["octo-org/docs"])
    state.rename_repo("octo-org/docs", "science/docs")
    assert state.installation_repos(inst) == []  # it left the old account's installation
    github = world.client(Auth.Token(world.owner_token))
    assert github.get_repo("octo-org/docs").full_name == "science/docs"
    assert state.add_repo("octo-org/docs") != repo_id  # a new repository under the old name
    assert github.get_repo("octo-org/docs").id != repo_id
    assert github.get_repo(repo_id).full_name == "science/docs"
    with pytest.raises(UnknownObjectException):
        github.get_repo(987654321)


def test_private_renamed_repositories_do_not_leak_through_redirects(world):
    state = world.gh.state
    state.rename_repo("octo-org/secret", "octo-org/classified")
    anonymous = world.http.get(f"{world.gh.url}/repos/octo-org/secret", follow_redirects=False)
    assert anonymous.status_code == 404


def scopes_of(world, token, path="/repos/octo-org/hpc-code"):
    return world.http.get(f"{world.gh.url}{path}", headers={"Authorization": f"token {token}"})


def post_status(world, token, full_name="octo-org/hpc-code"):
    return world.http.post(
        f"{world.gh.url}/repos/{full_name}/statuses/{SHA}",
        headers={"Authorization": f"token {token}"},
        json={"state": "pending", "context": "ci"},
    )


def test_classic_tokens_send_back_their_scopes(world):
    state = world.gh.state
    answer = scopes_of(world, world.owner_token)
    assert answer.headers["X-OAuth-Scopes"] == "repo"  # the default
    assert answer.headers["X-Accepted-OAuth-Scopes"] == "repo"
    state.add_user("bot", "ghp_statusonly000000000000000000000001")
    state.set_token_scopes("ghp_statusonly000000000000000000000001", ["repo:status"])
    assert post_status(world, "ghp_statusonly000000000000000000000001").status_code == 201
    accepted = post_status(world, "ghp_statusonly000000000000000000000001").headers["X-Accepted-OAuth-Scopes"]
    assert accepted == "repo, repo:status"
    state.add_user("reader", "ghp_readonly00000000000000000000000001")
    state.set_token_scopes("ghp_readonly00000000000000000000000001", ["read:org"])
    refused = post_status(world, "ghp_readonly00000000000000000000000001")
    assert (refused.status_code, refused.json()["message"]) == (404, "Not Found")  # GitHub hides, not forbids
    assert refused.headers["X-OAuth-Scopes"] == "read:org"
    assert scopes_of(world, "ghp_readonly00000000000000000000000001").status_code == 200  # public read
    state.set_token_scopes("ghp_readonly00000000000000000000000001", ["public_repo"])
    assert post_status(world, "ghp_readonly00000000000000000000000001").status_code == 201
    state.set_role("octo-org/secret", "reader", "read")
    assert post_status(world, "ghp_readonly00000000000000000000000001", "octo-org/secret").status_code == 404
    assert "X-OAuth-Scopes" not in world.http.get(f"{world.gh.url}/repos/octo-org/hpc-code").headers


def test_fine_grained_tokens_have_per_repository_permissions(world):
    state = world.gh.state
    state.add_user("bot")
    token = "github_pat_11AAAAAAA0fine0grained0token0for0tests"
    state.add_fine_grained_token(
        "bot", token, {"octo-org/hpc-code": {"statuses": "write"}, "octo-org/secret": {}}
    )
    assert post_status(world, token).status_code == 201
    assert "X-OAuth-Scopes" not in post_status(world, token).headers
    refused = post_status(world, token, "octo-org/secret")
    assert (refused.status_code, refused.json()["message"]) == (
        403,
        "Resource not accessible by personal access token",
    )
    assert post_status(world, token, "octo-org/docs").status_code == 403  # public, not granted
    state.add_repo("octocat/private", private=True)
    assert post_status(world, token, "octocat/private").status_code == 404
    github = world.client(Auth.Token(token))
    assert github.get_repo("octo-org/secret").private  # metadata read comes with every grant
    with pytest.raises(GithubException) as unknown:
        world.client(Auth.Token("github_pat_unknown")).get_user().login  # noqa: B018
    assert unknown.value.status == 401


def test_roles_give_githubs_permissions_and_the_owner_is_admin(world):
    state = world.gh.state
    owner = world.client(Auth.Token(world.owner_token)).get_repo("octocat/dotfiles")
    assert owner.permissions.admin
    state.add_user("alice", "ghp_alicetoken0000000000000000000000001")
    alice = world.client(Auth.Token("ghp_alicetoken0000000000000000000000001"))
    for role, expected in [
        ("read", (False, False, False, False, True)),
        ("triage", (False, False, False, True, True)),
        ("write", (False, False, True, True, True)),
        ("maintain", (False, True, True, True, True)),
        ("admin", (True, True, True, True, True)),
    ]:
        state.set_role("octo-org/secret", "alice", role)
        permissions = alice.get_repo("octo-org/secret").permissions
        got = (
            permissions.admin,
            permissions.maintain,
            permissions.push,
            permissions.triage,
            permissions.pull,
        )
        assert got == expected, role
    assert alice.get_repo("octo-org/secret").get_collaborator_permission("alice") == "admin"
    state.set_role("octo-org/secret", "alice", "maintain")
    assert alice.get_repo("octo-org/secret").get_collaborator_permission("alice") == "write"
    state.set_role("octo-org/secret", "alice", None)
    with pytest.raises(UnknownObjectException):
        alice.get_repo("octo-org/secret")
    with pytest.raises(ValueError, match="role must be one of"):
        state.set_role("octo-org/secret", "alice", "owner")
