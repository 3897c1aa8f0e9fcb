"""The GitHub stand-in driven by the unmodified PyGithub client."""

from __future__ import annotations

import threading
import time

import httpx
import pytest
from github import Auth, BadCredentialsException, Github, GithubException, UnknownObjectException

from sandbox.github.server import run_github

TOKEN = "ghp_standintoken0123456789"


@pytest.fixture
def gh():
    with run_github() as handle:
        handle.state.add_user("octocat", TOKEN)
        handle.state.add_repo("octo-org/hpc-code", collaborators={"octocat": "admin", "alice": "write"})
        handle.state.add_repo("octo-org/secret", private=True)
        handle.state.add_pull(
            "octo-org/hpc-code", 7, head_sha="a" * 40, head_ref="fix", base_ref="main", author="alice"
        )
        handle.state.add_pull("octo-org/hpc-code", 8, head_sha="b" * 40, head_repo=None, author="mallory")
        yield handle


def client(handle, token=TOKEN):
    # No write throttling in tests; production keeps PyGithub's one write a second.
    return Github(
        base_url=handle.url,
        auth=Auth.Token(token),
        retry=None,
        seconds_between_requests=0,
        seconds_between_writes=0,
    )


def test_token_check(gh):
    assert client(gh).get_user().login == "octocat"
    with pytest.raises(BadCredentialsException):
        _ = client(gh, "ghp_wrong").get_user().login


def test_private_repositories_hide_from_anonymous(gh):
    with pytest.raises(UnknownObjectException):
        _ = (
            Github(base_url=gh.url, retry=None, seconds_between_requests=0)
            .get_repo("octo-org/secret")
            .full_name
        )
    assert client(gh).get_repo("octo-org/hpc-code").permissions.admin


def test_pull_request_fields_and_deleted_fork(gh):
    repo = client(gh).get_repo("octo-org/hpc-code")
    pull = repo.get_pull(7)
    assert (pull.head.sha, pull.head.ref, pull.base.ref, pull.user.login) == (
        "a" * 40,
        "fix",
        "main",
        "alice",
    )
    assert pull.head.repo.full_name == "octo-org/hpc-code"
    assert repo.get_pull(8).head.repo is None
    assert [p.number for p in repo.get_pulls(state="open")] == [7, 8]


def test_statuses_round_trip_validate_and_paginate(gh):
    repo = client(gh).get_repo("octo-org/hpc-code")
    commit = repo.get_commit("c" * 40)
    created = commit.create_status(
        "pending", target_url="https://gitlab/p/1", description="queued", context="firecrest-ci/cpu"
    )
    assert (created.state, created.context, created.creator.login) == (
        "pending",
        "firecrest-ci/cpu",
        "octocat",
    )
    with pytest.raises(GithubException) as error:
        commit.create_status("success", description="x" * 141)
    assert error.value.status == 422
    with pytest.raises(GithubException):
        commit.create_status("done")
    for i in range(65):
        commit.create_status("success", description=str(i), context=f"c{i}")
    assert len(list(commit.get_statuses())) == 66
    combined = commit.get_combined_status()
    assert combined.total_count == 66
    assert combined.state == "pending"  # firecrest-ci/cpu is still pending


def test_collaborators_and_comments(gh):
    repo = client(gh).get_repo("octo-org/hpc-code")
    assert repo.get_collaborator_permission("alice") == "write"
    assert repo.has_in_collaborators("alice")
    assert not repo.has_in_collaborators("mallory")
    comment = repo.get_issue(7).create_comment("firecrest-ci: unknown pipeline")
    assert comment.body == "firecrest-ci: unknown pipeline"
    assert gh.state.comments[-1]["issue_number"] == 7


def test_outage_then_recovery_and_no_token_in_the_request_log(gh):
    gh.state.down_until = time.time() + 0.5
    with pytest.raises(GithubException) as error:
        _ = client(gh).get_user().login
    assert error.value.status == 503
    time.sleep(0.6)
    assert client(gh).get_user().login == "octocat"
    assert TOKEN not in str(gh.state.requests)


def test_a_slow_github_answers_late(gh):
    assert httpx.patch(f"{gh.url}/_stand-in/config", json={"delay": 0.3}).json()["delay"] == 0.3
    started = time.monotonic()
    assert client(gh).get_user().login == "octocat"
    assert time.monotonic() - started >= 0.3
    gh.state.delay = 0


def test_concurrent_statuses_are_all_recorded(gh):
    def post(n):
        commit = client(gh).get_repo("octo-org/hpc-code").get_commit("d" * 40)
        for i in range(25):
            commit.create_status("success", context=f"t{n}-{i}")

    threads = [threading.Thread(target=post, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len([s for s in gh.state.statuses if s["sha"] == "d" * 40]) == 200
