"""Installation tokens on the repository endpoints: only the installation's repositories, within
the App's permissions, and only until they expire (PyGithub's AppInstallationAuth)."""

from __future__ import annotations

import pytest
from github import Auth, BadCredentialsException, GithubException, UnknownObjectException


@pytest.fixture
def installed(world):
    inst = world.gh.state.install_app(world.app_id, "octo-org", ["octo-org/hpc-code", "octo-org/secret"])
    auth = world.app_auth().get_installation_auth(inst.id)
    return inst, world.client(auth)


def test_an_installation_writes_statuses_and_comments_as_its_bot(world, installed):
    _inst, github = installed
    repo = github.get_repo("octo-org/hpc-code")
    assert repo.get_pull(7).head.sha == "a" * 40
    status = repo.get_commit("a" * 40).create_status("success", context="firecrest-ci/cpu")
    assert status.creator.login == "firecrest-ci[bot]"
    assert status.creator.type == "Bot"
    comment = repo.get_issue(7).create_comment("queued on daint")
    assert comment.user.login == "firecrest-ci[bot]"
    assert world.gh.state.statuses[-1]["context"] == "firecrest-ci/cpu"
    assert github.get_repo("octo-org/secret").private  # private, but installed


def test_other_repositories_are_out_of_reach(world, installed):
    _inst, github = installed
    with pytest.raises(UnknownObjectException):
        _ = github.get_repo("octo-org/no-such-repository").full_name
    world.gh.state.add_repo("octocat/private", private=True)
    with pytest.raises(UnknownObjectException):
        _ = github.get_repo("octocat/private").full_name
    # A public repository may be read (as anyone may) but not written: GitHub's 403 for Apps.
    docs = github.get_repo("octo-org/docs")
    with pytest.raises(GithubException) as refused:
        docs.get_commit("b" * 40).create_status("success")
    assert refused.value.status == 403
    assert refused.value.data["message"] == "Resource not accessible by integration"
    with pytest.raises(GithubException) as no_user:
        _ = github.get_user().login
    assert no_user.value.status == 403


def token_for(world, inst_id, **body):
    jwt = world.app_auth().token
    answer = world.http.post(
        f"{world.gh.url}/app/installations/{inst_id}/access_tokens",
        headers={"Authorization": f"Bearer {jwt}"},
        json=body,
    )
    assert answer.status_code == 201, answer.text
    return answer.json()["token"]


def status(world, token, full_name="octo-org/hpc-code"):
    return world.http.post(
        f"{world.gh.url}/repos/{full_name}/statuses/{'c' * 40}",
        headers={"Authorization": f"token {token}"},
        json={"state": "pending", "context": "ci"},
    )


def test_narrowed_tokens_and_permissions(world, installed):
    inst, _github = installed
    read_only = token_for(world, inst.id, permissions={"statuses": "read"})
    answer = status(world, read_only)
    assert answer.status_code == 403
    assert answer.json()["message"] == "Resource not accessible by integration"
    only_secret = token_for(world, inst.id, repositories=["secret"])
    assert status(world, only_secret, "octo-org/secret").status_code == 201
    assert status(world, only_secret, "octo-org/hpc-code").status_code == 403  # public, not in the token
    repos = world.http.get(
        f"{world.gh.url}/installation/repositories", headers={"Authorization": f"token {only_secret}"}
    )
    assert repos.json()["total_count"] == 1
    assert repos.json()["repository_selection"] == "selected"


def test_tokens_expire_and_die_with_the_installation(world, installed):
    inst, _github = installed
    state = world.gh.state
    state.installation_token_ttl = -1  # already expired when issued
    expired = token_for(world, inst.id)
    answer = status(world, expired)
    assert (answer.status_code, answer.json()["message"]) == (401, "Bad credentials")
    state.installation_token_ttl = 3600
    live = token_for(world, inst.id)
    assert status(world, live).status_code == 201
    state.remove_installation_repos(inst.id, ["octo-org/hpc-code"])
    assert status(world, live).status_code == 403  # public, no longer installed
    state.suspend_installation(inst.id)
    assert status(world, live, "octo-org/secret").json()["message"] == "This installation has been suspended"
    state.unsuspend_installation(inst.id)
    assert status(world, live, "octo-org/secret").status_code == 201
    state.uninstall_app(inst.id)
    assert status(world, live, "octo-org/secret").status_code == 401
    revoked = world.http.delete(
        f"{world.gh.url}/installation/token", headers={"Authorization": f"token {live}"}
    )
    assert revoked.status_code == 401


def test_pygithub_renews_an_expiring_installation_token(world, installed):
    _inst, github = installed
    state = world.gh.state
    state.installation_token_ttl = 10  # inside PyGithub's 20 s refresh margin: every use renews it
    github.get_repo("octo-org/hpc-code").get_commit("d" * 40).create_status("success")
    github.get_repo("octo-org/hpc-code").get_commit("d" * 40).create_status("success", context="again")
    assert len(state.installation_tokens) >= 2
    with pytest.raises(BadCredentialsException):
        world.client(Auth.Token("ghs_" + "x" * 36)).get_repo("octo-org/hpc-code").get_commit(
            "e" * 40
        ).create_status("success")
