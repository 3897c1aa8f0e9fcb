"""The mirror step with the real git binary: a source served over HTTP, a mirror in the
GitLab stand-in (driven by python-gitlab), pushes with `-o ci.skip`, no token anywhere."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import gitlab
import pytest

from middleware.runs.mirror import Mirror, MirrorError, SourceRef, mirror_ref
from sandbox.gitlab.server import GitLabHandle, run_gitlab
from tests.gitops import git


@pytest.fixture
def gitlab_stand_in(tmp_path: Path) -> Iterator[GitLabHandle]:
    with run_gitlab(tmp_path / "gitlab") as handle:
        yield handle


@pytest.fixture
def projects(gitlab_stand_in: GitLabHandle) -> dict[str, gitlab.v4.objects.Project]:
    gl = gitlab.Gitlab(gitlab_stand_in.url, private_token=gitlab_stand_in.token)
    group = gl.groups.create({"name": "firecrest-ci", "path": "firecrest-ci"})
    source = gl.projects.create(
        {"name": "source", "path": "source", "namespace_id": group.id, "visibility": "public"}
    )
    mirror = gl.projects.create({"name": "1-cpu", "path": "1-cpu", "namespace_id": group.id})
    return {"source": source, "mirror": mirror}


@pytest.fixture
def work(tmp_path: Path, gitlab_stand_in: GitLabHandle, projects) -> Path:
    """A working copy whose pushes (with the token) publish the 'public source'."""
    path = tmp_path / "work"
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    (path / "a.txt").write_text("1\n")
    git(path, "add", ".")
    git(path, "commit", "-qm", "one")
    return path


def publish(work: Path, handle: GitLabHandle, url: str, *refspecs: str) -> None:
    authed = url.replace("http://", f"http://oauth2:{handle.token}@")
    git(work, "push", "-q", "--force", authed, *refspecs)


def mirror_heads(handle: GitLabHandle, project) -> dict[str, str]:
    repo = handle.state.repo_dir(handle.state.projects[project.id])
    listed = git(repo, "for-each-ref", "--format=%(refname) %(objectname)")
    return dict(line.split(" ") for line in listed.splitlines())


def test_branch_push_is_mirrored_with_ci_skip_and_incrementally(tmp_path, gitlab_stand_in, projects, work):
    source_url, mirror_url = projects["source"].http_url_to_repo, projects["mirror"].http_url_to_repo
    publish(work, gitlab_stand_in, source_url, "main:main")
    first = git(work, "rev-parse", "HEAD")
    mirror = Mirror(tmp_path / "cache", gitlab_stand_in.token)
    sha = mirror.fetch(1, source_url, SourceRef.for_trigger("main", first))
    mirror.push(1, mirror_url, sha, mirror_ref("main"))
    assert mirror_heads(gitlab_stand_in, projects["mirror"]) == {"refs/heads/main": first}
    (work / "a.txt").write_text("2\n")
    git(work, "commit", "-qam", "two")
    second = git(work, "rev-parse", "HEAD")
    publish(work, gitlab_stand_in, source_url, "main:main")
    assert mirror.fetch(1, source_url, SourceRef.for_trigger("main", second)) == second
    mirror.push(1, mirror_url, second, "refs/heads/main")
    assert mirror_heads(gitlab_stand_in, projects["mirror"])["refs/heads/main"] == second
    log = (
        gitlab_stand_in.state.repo_dir(gitlab_stand_in.state.projects[projects["mirror"].id])
        / "push-options.log"
    )
    assert log.read_text().splitlines() == ["push: ci.skip", "push: ci.skip"]
    cache = mirror.cache(1)
    assert git(cache, "cat-file", "-t", first) == "commit"  # kept: the next fetch is incremental


def test_pull_request_heads_come_from_refs_pull_and_land_as_pr_branches(
    tmp_path, gitlab_stand_in, projects, work
):
    source_url, mirror_url = projects["source"].http_url_to_repo, projects["mirror"].http_url_to_repo
    git(work, "checkout", "-qb", "fork-feature")
    (work / "b.txt").write_text("fork\n")
    git(work, "add", ".")
    git(work, "commit", "-qm", "from a fork")
    head = git(work, "rev-parse", "HEAD")
    publish(work, gitlab_stand_in, source_url, "main:main", "fork-feature:refs/pull/7/head")
    mirror = Mirror(tmp_path / "cache", gitlab_stand_in.token)
    sha = mirror.fetch(1, source_url, SourceRef.for_trigger("pr-7", head))
    mirror.push(1, mirror_url, sha, mirror_ref("pr-7"))
    assert mirror_heads(gitlab_stand_in, projects["mirror"]) == {"refs/heads/pr-7": head}
    mirror.delete(1, mirror_url, mirror_ref("pr-7"))
    assert mirror_heads(gitlab_stand_in, projects["mirror"]) == {}


def test_hostile_refs_are_data_not_options(tmp_path, gitlab_stand_in, projects):
    mirror = Mirror(tmp_path / "cache", gitlab_stand_in.token)
    source_url = projects["source"].http_url_to_repo
    for ref in ("--upload-pack=touch pwned", "main\nx", "../../etc"):
        with pytest.raises(MirrorError):
            mirror.fetch(1, source_url, SourceRef.for_trigger(ref, "a" * 40))
    with pytest.raises(MirrorError):
        mirror.push(1, projects["mirror"].http_url_to_repo, "--force", "refs/heads/main")
    assert not Path("pwned").exists()


@pytest.mark.parametrize("ref", ["release/.x", "a/x.lock", "a@{b", "a//b", "main/", "main.", "x.lock/y"])
def test_refs_git_would_refuse_never_reach_git(tmp_path, ref):
    mirror = Mirror(tmp_path / "cache", None)
    unreachable = "http://127.0.0.1:9/source.git"  # refused before any git network call
    with pytest.raises(MirrorError, match="refusing ref"):
        mirror.fetch(1, unreachable, SourceRef.for_trigger(ref, "a" * 40))
    with pytest.raises(MirrorError, match="refusing ref"):
        mirror.push(1, unreachable, "a" * 40, f"refs/heads/{ref}")


def test_shas_need_a_full_match(tmp_path):
    sha = "a" * 40 + "\n"
    assert SourceRef.for_trigger(sha, sha).ref == f"refs/heads/{sha}"  # not taken for a SHA ...
    assert mirror_ref(sha) == f"refs/heads/{sha}"
    with pytest.raises(MirrorError, match="refusing ref"):  # ... and then refused as a ref
        Mirror(tmp_path / "cache", None).fetch(1, "http://127.0.0.1:9/s.git", SourceRef.for_trigger(sha, sha))
    with pytest.raises(MirrorError, match="refusing to push"):
        Mirror(tmp_path / "cache", None).push(1, "http://127.0.0.1:9/m.git", sha, "refs/heads/main")


def test_the_token_is_never_stored_or_shown(tmp_path, gitlab_stand_in, projects, work):
    source_url = projects["source"].http_url_to_repo
    publish(work, gitlab_stand_in, source_url, "main:main")
    head = git(work, "rev-parse", "HEAD")
    mirror = Mirror(tmp_path / "cache", gitlab_stand_in.token)
    mirror.fetch(1, source_url, SourceRef.for_trigger("main", head))
    mirror.push(1, projects["mirror"].http_url_to_repo, head, "refs/heads/main")
    cache = mirror.cache(1)
    assert gitlab_stand_in.token not in (cache / "config").read_text()
    assert git(cache, "remote") == ""
    with pytest.raises(MirrorError) as error:
        mirror.push(
            1, projects["mirror"].http_url_to_repo.replace("1-cpu", "missing"), head, "refs/heads/main"
        )
    assert gitlab_stand_in.token not in str(error.value)
    wrong = Mirror(tmp_path / "cache2", "wrong-token-value-123")
    wrong.fetch(1, source_url, SourceRef.for_trigger("main", head))
    with pytest.raises(MirrorError) as refused:
        wrong.push(1, projects["mirror"].http_url_to_repo, head, "refs/heads/main")
    assert "wrong-token-value-123" not in str(refused.value)
