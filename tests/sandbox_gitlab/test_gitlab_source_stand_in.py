"""The GitLab stand-in as a SOURCE GitLab, driven by the unmodified python-gitlab client and the
real git binary: merge requests and their `refs/merge-requests/<iid>/head`, commit statuses with
GitLab's state machine, notes, user look-ups and injected faults."""

from __future__ import annotations

from pathlib import Path

import gitlab
import httpx
import pytest

from sandbox.gitlab.app import Fault
from sandbox.gitlab.server import GitLabHandle, run_gitlab
from tests.gitops import git


@pytest.fixture
def handle(tmp_path: Path):
    with run_gitlab(tmp_path / "gitlab") as running:
        yield running


@pytest.fixture
def client(handle: GitLabHandle) -> gitlab.Gitlab:
    return gitlab.Gitlab(handle.url, private_token=handle.token)


def new_project(client: gitlab.Gitlab, group_path: str, name: str):
    group = client.groups.get(group_path) if _exists(client, group_path) else None
    if group is None:
        group = client.groups.create({"name": group_path, "path": group_path})
    return client.projects.create(
        {"name": name, "path": name, "namespace_id": group.id, "visibility": "public"}
    )


def _exists(client: gitlab.Gitlab, group_path: str) -> bool:
    try:
        client.groups.get(group_path)
    except gitlab.exceptions.GitlabGetError:
        return False
    return True


def push(handle: GitLabHandle, work: Path, url: str, *refspecs: str) -> None:
    git(work, "push", "-q", "--force", url.replace("http://", f"http://oauth2:{handle.token}@"), *refspecs)


def commit(work: Path, name: str) -> str:
    (work / name).write_text(name)
    git(work, "add", ".")
    git(work, "commit", "-qm", name)
    return git(work, "rev-parse", "HEAD")


@pytest.fixture
def world(tmp_path: Path, handle: GitLabHandle, client: gitlab.Gitlab):
    """`team/app` with `main` and `feature` (one commit ahead), pushed over smart HTTP."""
    project = new_project(client, "team", "app")
    work = tmp_path / "work"
    work.mkdir()
    git(work, "init", "-q", "-b", "main")
    main = commit(work, "a")
    git(work, "checkout", "-q", "-b", "feature")
    feature = commit(work, "b")
    push(handle, work, project.http_url_to_repo, "main:main", "feature:feature")
    return {"project": project, "work": work, "main": main, "feature": feature}


def fetch_sha(tmp_path: Path, url: str, ref: str) -> str:
    """What a fresh clone gets for `ref` over smart HTTP (no credentials: the project is public)."""
    into = tmp_path / f"fetch-{len(list(tmp_path.iterdir()))}"
    into.mkdir()
    git(into, "init", "-q", "--bare")
    git(into, "fetch", "-q", "--no-tags", url, f"+{ref}:refs/fetched")
    return git(into, "rev-parse", "refs/fetched")


def test_merge_request_has_gitlabs_shape_and_a_fetchable_head(tmp_path, handle, client, world):
    alice = handle.state.add_user("alice", "Alice A.", user_id=51)
    opened = handle.state.open_merge_request("team/app", "feature", "main", author=alice)
    assert opened["iid"] == 1
    got = client.projects.get("team/app", lazy=True).mergerequests.get(1)
    assert (got.sha, got.source_branch, got.target_branch) == (world["feature"], "feature", "main")
    assert got.source_project_id == got.target_project_id == world["project"].id
    assert (got.author["id"], got.author["username"]) == (51, "alice")
    assert got.state == "opened"
    assert got.references["full"] == "team/app!1"
    assert got.web_url.endswith("/team/app/-/merge_requests/1")
    assert got.diff_refs == {
        "base_sha": world["main"],
        "head_sha": world["feature"],
        "start_sha": world["main"],
    }
    url = world["project"].http_url_to_repo
    assert fetch_sha(tmp_path, url, "refs/merge-requests/1/head") == world["feature"]
    # a second merge request of the same project gets the next iid
    assert handle.state.open_merge_request("team/app", "main", "feature")["iid"] == 2


def test_a_forks_head_is_fetched_into_the_target_project(tmp_path, handle, client, world):
    fork = new_project(client, "outsider", "app")
    work = world["work"]
    git(work, "checkout", "-q", "-b", "fix", "main")
    first = commit(work, "fix-1")
    push(handle, work, fork.http_url_to_repo, "fix:fix")
    opened = handle.state.open_merge_request("team/app", "fix", "main", source_project="outsider/app")
    assert opened["source_project_id"] == fork.id != opened["target_project_id"]
    target_url = world["project"].http_url_to_repo
    assert fetch_sha(tmp_path, target_url, "refs/merge-requests/1/head") == first
    # the commit lives in the target project now, though no branch of it holds it
    assert git(handle.state.repo_dir(handle.state.project("team/app")), "cat-file", "-t", first) == "commit"
    second = commit(work, "fix-2")
    push(handle, work, fork.http_url_to_repo, "fix:fix")
    assert handle.state.update_merge_request("team/app", 1) == second
    assert client.projects.get(world["project"].id).mergerequests.get(1).sha == second
    assert fetch_sha(tmp_path, target_url, "refs/merge-requests/1/head") == second


def test_missing_merge_requests_and_projects_answer_gitlabs_404(client, world):
    with pytest.raises(gitlab.exceptions.GitlabGetError) as missing:
        client.projects.get("team/app", lazy=True).mergerequests.get(7)
    assert (missing.value.response_code, missing.value.error_message) == (404, "404 Not found")
    with pytest.raises(gitlab.exceptions.GitlabGetError) as no_project:
        client.projects.get("team/nope", lazy=True).mergerequests.get(1)
    assert no_project.value.response_code == 404


def test_commit_statuses_follow_gitlabs_state_machine(handle, client, world):
    statuses = client.projects.get("team/app", lazy=True).commits.get(world["feature"], lazy=True).statuses
    first = statuses.create({"state": "pending", "name": "ci/cpu", "description": "queued"})
    assert (first.status, first.ref, first.name, first.sha) == (
        "pending",
        "feature",
        "ci/cpu",
        world["feature"],
    )
    # pending again: refused, but GitLab has taken the new description first
    with pytest.raises(gitlab.exceptions.GitlabCreateError) as again:
        statuses.create({"state": "pending", "name": "ci/cpu", "description": "still queued"})
    assert again.value.response_code == 400
    assert again.value.error_message == (
        "Cannot transition status via :enqueue from :pending "
        '(Reason(s): Status cannot transition via "enqueue")'
    )
    (listed,) = statuses.list(name="ci/cpu")
    assert (listed.id, listed.status, listed.description) == (first.id, "pending", "still queued")
    running = statuses.create({"state": "running", "name": "ci/cpu"})
    assert running.id == first.id and running.started_at
    with pytest.raises(gitlab.exceptions.GitlabCreateError) as twice:
        statuses.create({"state": "running", "name": "ci/cpu"})
    assert "via :run from :running" in str(twice.value.error_message)
    done = statuses.create({"state": "success", "name": "ci/cpu", "target_url": "https://ci.example.org/1"})
    assert (done.id, done.status, done.target_url) == (first.id, "success", "https://ci.example.org/1")
    assert done.finished_at
    # a finished status is followed by a new one; the list shows the latest of each name and ref
    later = statuses.create({"state": "pending", "name": "ci/cpu", "description": "again"})
    assert later.id != first.id
    other = statuses.create({"state": "failed", "context": "ci/gpu"})
    assert other.name == "ci/gpu"
    latest = {s.name: (s.id, s.status) for s in statuses.list()}
    assert latest == {"ci/cpu": (later.id, "pending"), "ci/gpu": (other.id, "failed")}
    everything = statuses.list(all=True, per_page=2, get_all=True)  # three, over two pages (Link)
    assert sorted(s.id for s in everything) == sorted([first.id, later.id, other.id])


def test_status_requests_gitlab_refuses(handle, client, world):
    project = client.projects.get("team/app", lazy=True)
    statuses = project.commits.get(world["feature"], lazy=True).statuses
    with pytest.raises(gitlab.exceptions.GitlabCreateError) as bad_state:
        statuses.create({"state": "error", "name": "x"})
    assert (bad_state.value.response_code, bad_state.value.error_message) == (
        400,
        "state does not have a valid value",
    )
    unknown = project.commits.get("0" * 40, lazy=True).statuses
    with pytest.raises(gitlab.exceptions.GitlabCreateError) as missing:
        unknown.create({"state": "pending"})
    assert (missing.value.response_code, missing.value.error_message) == (404, "404 Commit Not Found")


def test_a_status_on_a_commit_no_branch_holds_needs_a_ref(handle, client, world):
    """A fork's merge request head is in the target project under refs/merge-requests only: GitLab
    finds no branch for it, so a status needs `ref`."""
    fork = new_project(client, "outsider", "app")
    work = world["work"]
    git(work, "checkout", "-q", "-b", "fix", "main")
    sha = commit(work, "fix")
    push(handle, work, fork.http_url_to_repo, "fix:fix")
    handle.state.open_merge_request("team/app", "fix", "main", source_project="outsider/app")
    statuses = client.projects.get("team/app", lazy=True).commits.get(sha, lazy=True).statuses
    with pytest.raises(gitlab.exceptions.GitlabCreateError) as no_ref:
        statuses.create({"state": "pending", "name": "ci"})
    assert (no_ref.value.response_code, no_ref.value.error_message) == (
        404,
        "404 References for commit Not Found",
    )
    assert statuses.create({"state": "pending", "name": "ci", "ref": "refs/merge-requests/1/head"}).ref


def test_notes_on_merge_requests(handle, client, world):
    handle.state.open_merge_request("team/app", "feature", "main")
    request = client.projects.get("team/app", lazy=True).mergerequests.get(1, lazy=True)
    first = request.notes.create({"body": "queued"})
    request.notes.create({"body": "done"})
    assert (first.body, first.noteable_type, first.noteable_iid) == ("queued", "MergeRequest", 1)
    assert first.author["username"] == "firecrest-ci-bot"
    assert [n.body for n in request.notes.list()] == ["done", "queued"]  # newest first
    with pytest.raises(gitlab.exceptions.GitlabCreateError) as empty:
        request.notes.create({"body": "  "})
    assert (empty.value.response_code, empty.value.error_message) == (400, "body is empty")
    missing = client.projects.get("team/app", lazy=True).mergerequests.get(9, lazy=True)
    with pytest.raises(gitlab.exceptions.GitlabCreateError) as gone:
        missing.notes.create({"body": "x"})
    assert gone.value.response_code == 404


def test_users_are_found_by_username_case_insensitively(handle, client):
    alice = handle.state.add_user("Alice")
    assert alice["id"] != handle.state.bot["id"]
    assert [u.id for u in client.users.list(username="alice")] == [alice["id"]]
    assert client.users.list(username="nobody") == []
    assert client.users.get(alice["id"]).username == "Alice"
    with pytest.raises(ValueError, match="user alice exists"):
        handle.state.add_user("alice")
    handle.state.add_user("bob", user_id=51)
    with pytest.raises(ValueError, match="user id 51 is taken"):
        handle.state.add_user("carol", user_id=51)


def test_injected_faults_answer_before_or_after_the_work(handle, client, world):
    handle.state.open_merge_request("team/app", "feature", "main")
    project_id = world["project"].id
    handle.state.inject(
        Fault(
            "GET",
            rf"/api/v4/projects/{project_id}/merge_requests/1",
            503,
            times=2,
            headers={"Retry-After": "7"},
        )
    )
    raw = httpx.get(
        f"{handle.url}/api/v4/projects/{project_id}/merge_requests/1", headers={"PRIVATE-TOKEN": handle.token}
    )
    assert (raw.status_code, raw.headers["Retry-After"], raw.json()) == (
        503,
        "7",
        {"message": "503 Service Unavailable"},
    )
    with pytest.raises(gitlab.exceptions.GitlabGetError):
        client.projects.get(project_id, lazy=True).mergerequests.get(1)
    assert client.projects.get(project_id, lazy=True).mergerequests.get(1).iid == 1  # used up
    # after: the note is made, its answer is lost
    handle.state.inject(Fault("POST", r"/api/v4/projects/\d+/merge_requests/1/notes", 502, after=True))
    with pytest.raises(gitlab.exceptions.GitlabCreateError) as lost:
        client.projects.get(project_id, lazy=True).mergerequests.get(1, lazy=True).notes.create(
            {"body": "hi"}
        )
    assert lost.value.response_code == 502
    assert [n["body"] for n in handle.state.notes] == ["hi"]
