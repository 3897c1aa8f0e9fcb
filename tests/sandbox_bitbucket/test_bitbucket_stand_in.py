"""The Bitbucket Cloud stand-in, driven over plain HTTP and real git: Bitbucket's paths, fields,
status codes and error bodies, its faults, and git smart HTTP for forks."""

from __future__ import annotations

import base64
import subprocess
import time

import pytest
import requests

from sandbox.bitbucket.app import BitbucketState
from sandbox.bitbucket.server import run_bitbucket

TOKEN = "repo-token-0123456789abcdef"
WORKSPACE_TOKEN = "workspace-token-0123456789abcdef"
REPO = "team/hpc-code"
FORK = "alice/hpc-code"


@pytest.fixture
def bb():
    with run_bitbucket() as handle:
        state = handle.state
        state.add_token(TOKEN, REPO)
        state.add_token(WORKSPACE_TOKEN, "alice")
        state.add_repo(REPO)
        state.add_commit(REPO, sha="1" * 40)
        state.add_commit(REPO, branch="feature", sha="1234567890" + "a" * 30)
        state.add_commit(REPO, branch="other", sha="1234567890" + "b" * 30)
        state.add_repo(FORK, fork_of=REPO)
        state.add_commit(FORK, branch="fix", sha="f" * 40)
        state.add_pull(REPO, 7, source_branch="feature", author="Carol")
        state.add_pull(REPO, 8, source_branch="fix", source_repo=FORK, author="Alice")
        state.add_pull(REPO, 9, source_branch="gone", source_commit="e" * 40, source_repo=None)
        yield handle


def get(handle, path, token=TOKEN, **kwargs):
    auth = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.get(handle.api_url + path, headers=auth, timeout=10, **kwargs)


def post(handle, path, body, token=TOKEN):
    auth = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.post(handle.api_url + path, json=body, headers=auth, timeout=10)


def assert_error(response, status, words):
    assert response.status_code == status
    body = response.json()
    assert body["type"] == "error"
    assert words in body["error"]["message"]
    return body


def test_repository_fields(bb):
    body = get(bb, f"/repositories/{REPO}").json()
    assert (body["type"], body["full_name"], body["is_private"], body["mainbranch"]["name"]) == (
        "repository",
        REPO,
        True,
        "main",
    )
    assert body["links"]["clone"] == [{"name": "https", "href": f"{bb.url}/{REPO}.git"}]
    assert get(bb, f"/repositories/{FORK}", token=WORKSPACE_TOKEN).json()["parent"]["full_name"] == REPO


def test_tokens_private_repositories_and_scopes(bb):
    assert_error(get(bb, f"/repositories/{REPO}", token=None), 404, f"Repository {REPO} not found")
    assert_error(get(bb, f"/repositories/{REPO}", token="wrong"), 401, "Token is invalid")
    assert_error(get(bb, f"/repositories/{FORK}"), 403, "privilege scopes")  # a repository token
    assert get(bb, f"/repositories/{FORK}", token=WORKSPACE_TOKEN).status_code == 200
    assert_error(get(bb, "/repositories/team/nothing"), 404, "Repository team/nothing not found")


def test_public_repositories_read_anonymously_but_not_written(bb):
    bb.state.add_repo("team/open", private=False)
    sha = bb.state.add_commit("team/open")
    assert get(bb, "/repositories/team/open", token=None).status_code == 200
    assert get(bb, "/repositories/team/open", token=TOKEN).status_code == 200  # any known token reads
    status = {"key": "K", "state": "SUCCESSFUL", "url": "https://ci.example.org/1"}
    assert_error(post(bb, f"/repositories/team/open/commit/{sha}/statuses/build", status, None), 401, "")
    assert_error(post(bb, f"/repositories/team/open/commit/{sha}/statuses/build", status), 403, "scopes")


def test_commits_resolve_from_unique_prefixes_only(bb):
    full = "1234567890" + "a" * 30
    for node in (full, full[:12], "1234567890a"):
        body = get(bb, f"/repositories/{REPO}/commit/{node}").json()
        assert (body["type"], body["hash"]) == ("commit", full)
    assert_error(get(bb, f"/repositories/{REPO}/commit/1234567890"), 404, "Commit not found")  # ambiguous
    assert_error(get(bb, f"/repositories/{REPO}/commit/ffffffff"), 404, "Commit not found")  # the fork's
    assert_error(get(bb, f"/repositories/{REPO}/commit/main"), 404, "Commit not found")
    assert get(bb, f"/repositories/{FORK}/commit/ffffffff", token=WORKSPACE_TOKEN).json()["hash"] == "f" * 40
    # a fork starts with its parent's commits
    assert get(bb, f"/repositories/{FORK}/commit/{full[:12]}", token=WORKSPACE_TOKEN).status_code == 200


def test_pull_requests_carry_short_hashes_and_their_source(bb):
    same = get(bb, f"/repositories/{REPO}/pullrequests/7").json()
    assert same["type"] == "pullrequest"
    assert same["source"]["commit"]["hash"] == "1234567890aa"  # 12 characters, as Bitbucket sends
    assert same["source"]["branch"]["name"] == "feature"
    assert same["source"]["repository"]["full_name"] == REPO
    assert same["destination"]["branch"]["name"] == "main"
    assert same["destination"]["commit"]["hash"] == "1" * 12
    assert same["author"]["display_name"] == "Carol"
    assert same["author"]["uuid"] == bb.state.add_user("Carol")
    assert same["author"]["uuid"].startswith("{")
    fork = get(bb, f"/repositories/{REPO}/pullrequests/8").json()
    assert (fork["source"]["repository"]["full_name"], fork["source"]["commit"]["hash"]) == (FORK, "f" * 12)
    assert get(bb, f"/repositories/{REPO}/pullrequests/9").json()["source"]["repository"] is None
    assert_error(get(bb, f"/repositories/{REPO}/pullrequests/70"), 404, "Pull request 70 not found")


def build(key="firecrest-ci-cpu", state="INPROGRESS", **extra):
    return {"key": key, "state": state, "url": "https://gitlab.example.org/p/1", **extra}


def test_build_statuses_validate_like_bitbucket(bb):
    path = f"/repositories/{REPO}/commit/{'1' * 40}/statuses/build"
    body = assert_error(post(bb, path, build(key="k" * 41)), 400, "at most 40 characters (it has 41)")
    assert body["error"]["fields"] == {"key": ["Ensure this value has at most 40 characters (it has 41)."]}
    assert_error(post(bb, path, build(state="pending")), 400, "state:")
    assert_error(post(bb, path, {"key": "k", "state": "FAILED"}), 400, "url: This field is required.")
    assert_error(post(bb, path, build(description=12)), 400, "description")
    assert_error(post(bb, path, ["not", "an", "object"]), 400, "Bad request")
    assert_error(post(bb, f"/repositories/{REPO}/commit/{'9' * 40}/statuses/build", build()), 404, "Commit")
    assert bb.state.statuses == {}


def test_a_status_key_is_replaced_not_added(bb):
    path = f"/repositories/{REPO}/commit/{'1' * 40}/statuses/build"
    first = post(bb, path, build(name="firecrest-ci/cpu", description="queued"))
    assert first.status_code == 201
    assert (first.json()["type"], first.json()["state"], first.json()["name"]) == (
        "build",
        "INPROGRESS",
        "firecrest-ci/cpu",
    )
    second = post(bb, path, build(state="SUCCESSFUL", description="passed")).json()
    assert second["uuid"] == first.json()["uuid"]
    assert second["created_on"] == first.json()["created_on"]
    post(bb, path, build(key="another"))
    looked_up = get(bb, f"{path}/firecrest-ci-cpu").json()
    assert (looked_up["state"], looked_up["description"], looked_up["url"]) == (
        "SUCCESSFUL",
        "passed",
        "https://gitlab.example.org/p/1",
    )
    assert_error(get(bb, f"{path}/missing-key"), 404, "No build status")
    listed = get(bb, f"/repositories/{REPO}/commit/{'1' * 12}/statuses", params={"pagelen": 1}).json()
    assert (listed["size"], listed["pagelen"], len(listed["values"])) == (2, 1, 1)
    assert "page=2" in listed["next"]


def test_comments_are_recorded_with_the_tokens_bot_user(bb):
    path = f"/repositories/{REPO}/pullrequests/7/comments"
    created = post(bb, path, {"content": {"raw": "Pipeline **failed**"}})
    assert created.status_code == 201
    body = created.json()
    assert body["content"]["raw"] == "Pipeline **failed**"
    assert body["pullrequest"]["id"] == 7
    assert "access token" in body["user"]["display_name"]
    assert get(bb, path).json()["values"][0]["id"] == body["id"]
    assert_error(post(bb, path, {"content": {}}), 400, "content.raw")
    assert_error(
        post(bb, f"/repositories/{REPO}/pullrequests/70/comments", {"content": {"raw": "x"}}), 404, ""
    )


def test_injected_faults_answer_before_any_work(bb):
    bb.state.fail_next(2, 502)
    path = f"/repositories/{REPO}/commit/{'1' * 40}/statuses/build"
    assert_error(post(bb, path, build()), 502, "Something went wrong")
    assert_error(get(bb, f"/repositories/{REPO}"), 502, "")
    assert bb.state.statuses == {}
    assert get(bb, f"/repositories/{REPO}").status_code == 200
    bb.state.fail_next(1, 429)
    assert_error(get(bb, f"/repositories/{REPO}"), 429, "Rate limit")


def test_a_lost_status_answer_still_stores_the_status(bb):
    bb.state.lose_status_answers = 1
    path = f"/repositories/{REPO}/commit/{'1' * 40}/statuses/build"
    assert post(bb, path, build()).status_code == 502
    assert get(bb, f"{path}/firecrest-ci-cpu").status_code == 200
    assert post(bb, path, build()).status_code == 201


def test_a_delay_slows_every_answer(bb):
    bb.state.delay = 0.3
    started = time.monotonic()
    assert get(bb, f"/repositories/{REPO}").status_code == 200
    assert time.monotonic() - started >= 0.3


def test_the_request_log_never_holds_a_token(bb):
    get(bb, f"/repositories/{REPO}")
    get(bb, f"/repositories/{REPO}", token="wrong-token-abc")
    assert [r["authorized"] for r in bb.state.requests] == [True, False]
    assert TOKEN not in repr(bb.state.requests)
    assert "wrong-token-abc" not in repr(bb.state.requests)


# -- git over smart HTTP (git-backed repositories) ----------------------------------------------


def git(*args, cwd=None, check=True):
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=check)


@pytest.fixture
def git_bb(tmp_path):
    with run_bitbucket(BitbucketState(root=tmp_path / "bitbucket")) as handle:
        handle.state.add_token(TOKEN, REPO)
        handle.state.add_repo(REPO)
        handle.state.add_commit(REPO, message="first")
        handle.state.add_repo(FORK, fork_of=REPO, private=False)
        yield handle


def basic(token):
    value = base64.b64encode(f"x-token-auth:{token}".encode()).decode()
    return ["-c", f"http.extraHeader=Authorization: Basic {value}"]


def test_git_serves_real_repositories_and_forks_share_history(git_bb, tmp_path):
    main = git_bb.state.head(REPO, "main")
    fix = git_bb.state.add_commit(FORK, branch="fix", message="the fix")
    assert git("ls-remote", git_bb.clone_url(REPO), check=False).returncode != 0  # private
    listed = git(*basic(TOKEN), "ls-remote", git_bb.clone_url(REPO)).stdout
    assert f"{main}\trefs/heads/main" in listed
    fork = git("ls-remote", git_bb.clone_url(FORK)).stdout  # public
    assert f"{fix}\trefs/heads/fix" in fork
    assert f"{main}\trefs/heads/main" in fork
    target = tmp_path / "cache.git"
    git("init", "--quiet", "--bare", str(target))
    git("-C", str(target), "fetch", "--quiet", git_bb.clone_url(FORK), "refs/heads/fix:refs/fetched")
    assert git("-C", str(target), "rev-parse", "refs/fetched").stdout.strip() == fix
    assert git("-C", str(target), "rev-parse", "refs/fetched~1").stdout.strip() == main
    # the API sees what git holds
    body = get(git_bb, f"/repositories/{FORK}/commit/{fix[:12]}").json()
    assert body["hash"] == fix


def test_a_push_needs_a_token_and_lands(git_bb, tmp_path):
    work = tmp_path / "work"
    git(*basic(TOKEN), "clone", "--quiet", git_bb.clone_url(REPO), str(work))  # the token for this call only
    identity = ["-c", "user.name=T", "-c", "user.email=t@example.org"]
    git(*identity, "commit", "--quiet", "--allow-empty", "-m", "x", cwd=work)
    pushed = git("rev-parse", "HEAD", cwd=work).stdout.strip()
    refused = git("push", "--quiet", git_bb.clone_url(REPO), "HEAD:refs/heads/new", cwd=work, check=False)
    assert refused.returncode != 0
    git(*basic(TOKEN), "push", "--quiet", git_bb.clone_url(REPO), "HEAD:refs/heads/new", cwd=work)
    assert git_bb.state.head(REPO, "new") == pushed
    assert get(git_bb, f"/repositories/{REPO}/commit/{pushed[:12]}").json()["hash"] == pushed
