"""Mirror projects in the GitLab stand-in through python-gitlab; the per-repository lock."""

from __future__ import annotations

import threading
import time

import gitlab
import pytest

from middleware.managed_gitlab.projects import GitLabProjects, MirrorProjectSpec, client, project_path
from middleware.runs.locks import LockBusy, repository_lock
from sandbox.gitlab.server import run_gitlab
from tests.conftest import service_url

VARIABLES = {
    "FIRECREST_URL": "https://api.example.org/firecrest/v2",
    "FIRECREST_CLIENT_ID": "client-1",
    "FIRECREST_CLIENT_SECRET": "s3cret-value-0123",
    "FIRECREST_SYSTEM": "daint",
    "FIRECREST_ACCOUNT": "proj42",
}


@pytest.fixture
def gl(tmp_path):
    with run_gitlab(tmp_path / "gitlab") as handle:
        yield handle, client(handle.url, handle.token)


def spec(**overrides) -> MirrorProjectSpec:
    values = {"repository_id": 7, "pipeline": "cpu", "entrypoint": "ci/cpu.yml", "variables": dict(VARIABLES)}
    values.update(overrides)
    return MirrorProjectSpec(**values)


def test_mirror_project_is_created_with_the_right_settings(gl):
    _, gitlab_client = gl
    project = GitLabProjects(gitlab_client, "firecrest-ci").ensure_project(spec(visibility="public"))
    assert project.path_with_namespace == project_path("firecrest-ci", 7, "cpu") == "firecrest-ci/7/cpu"
    fresh = gitlab_client.projects.get("firecrest-ci/7/cpu")
    assert fresh.ci_config_path == "ci/cpu.yml"
    assert fresh.visibility == "public"
    assert fresh.ci_pipeline_variables_minimum_override_role == "developer"
    assert [(b.name, b.allow_force_push) for b in fresh.protectedbranches.list()] == [("*", True)]
    variables = {v.key: v for v in fresh.variables.list()}
    assert set(variables) == set(VARIABLES)
    assert variables["FIRECREST_CLIENT_SECRET"].masked is True
    assert all(v.protected for v in variables.values())  # every branch is protected by the * rule


def test_ensuring_twice_is_idempotent_and_follows_registration_changes(gl):
    handle, gitlab_client = gl
    projects = GitLabProjects(gitlab_client, "firecrest-ci")
    first = projects.ensure_project(spec())
    changed = dict(VARIABLES, FIRECREST_CLIENT_SECRET="r0tated-secret-value")
    second = projects.ensure_project(spec(entrypoint="ci/other.yml", variables=changed))
    assert first.id == second.id
    assert len([p for p in handle.state.projects.values()]) == 1
    fresh = gitlab_client.projects.get(first.id)
    assert fresh.ci_config_path == "ci/other.yml"
    assert fresh.variables.get("FIRECREST_CLIENT_SECRET").value == "r0tated-secret-value"
    assert len(fresh.protectedbranches.list()) == 1


def test_private_sources_get_private_mirrors(gl):
    _, gitlab_client = gl
    project = GitLabProjects(gitlab_client, "g").ensure_project(spec(visibility="private"))
    assert gitlab_client.projects.get(project.id).visibility == "private"


def test_short_values_are_stored_unmasked_rather_than_refused(gl):
    _, gitlab_client = gl
    project = GitLabProjects(gitlab_client, "g").ensure_project(spec(variables={"FIRECREST_ACCOUNT": "p1"}))
    assert project.variables.get("FIRECREST_ACCOUNT").masked is False


def test_bad_gitlab_token_is_an_authentication_error(gl):
    handle, _ = gl
    with pytest.raises(gitlab.exceptions.GitlabAuthenticationError):
        GitLabProjects(client(handle.url, "wrong"), "g").ensure_project(spec())


@pytest.mark.parametrize("backend", ["redis", "file"])
def test_repository_lock_is_exclusive(backend, tmp_path):
    redis_url = service_url("TEST_REDIS_URL") if backend == "redis" else None
    inside: list[int] = []
    overlaps: list[bool] = []

    def work(n: int) -> None:
        with repository_lock(1, redis_url=redis_url, lock_dir=tmp_path):
            overlaps.append(bool(inside))
            inside.append(n)
            time.sleep(0.05)
            inside.remove(n)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert overlaps == [False] * 5


def test_redis_lock_gives_up_with_a_clear_error(tmp_path):
    redis_url = service_url("TEST_REDIS_URL")
    with (
        repository_lock(2, redis_url=redis_url, lock_dir=tmp_path),
        pytest.raises(LockBusy),
        repository_lock(2, redis_url=redis_url, lock_dir=tmp_path, wait=0.2),
    ):
        pass


def test_a_hook_at_the_old_path_is_moved_to_the_new_one_not_doubled(gl):
    _, gitlab_client = gl
    old, new = (
        "https://ci.example.org/webhooks/gitlab",
        "https://ci.example.org/webhooks/managed-gitlab/pipeline",
    )
    GitLabProjects(gitlab_client, "firecrest-ci", old).ensure_project(spec(hook_token="t-1"))
    moved = GitLabProjects(gitlab_client, "firecrest-ci", new, legacy_hook_urls=(old,))
    project = moved.ensure_project(spec(hook_token="t-1"))
    moved.ensure_project(spec(hook_token="t-1"))
    assert [(h.url, h.pipeline_events) for h in project.hooks.list(get_all=True)] == [(new, True)]
