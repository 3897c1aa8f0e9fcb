"""The managed GitLab side of a withdrawn registration (the App was removed): the mirror projects'
CI variables go with the purge; cancelling is harmless where nothing was mirrored."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import update

from middleware.crypto import SecretBox
from middleware.db import Database
from middleware.managed_gitlab.projects import GitLabProjects, MirrorProjectSpec, client
from middleware.migrate import upgrade
from middleware.models import Pipeline, Repository, utcnow
from middleware.runs.withdrawal import cancel_pipelines, disable, purge_credentials
from sandbox.gitlab.server import run_gitlab
from tests.middleware.conftest import SECRET_KEY

SECRET = "firecrest-secret-to-purge-0123"


@pytest.fixture
def db(tmp_path: Path) -> Database:
    url = f"sqlite:///{tmp_path / 'mw.db'}"
    upgrade(url)
    return Database(url)


def registration(db: Database, box: SecretBox) -> int:
    with db.session() as session:
        repo = Repository(
            full_name="octo-org/hpc-code",
            clone_url="https://github.com/octo-org/hpc-code.git",
            webhook_secret_enc=box.seal("hook"),
            notification_token_enc=box.seal("ghp_token"),
            firecrest_client_id="client",
            firecrest_client_secret_enc=box.seal(SECRET),
        )
        repo.pipelines.append(
            Pipeline(
                name="cpu", entrypoint="ci/cpu.yml", system="daint", variables_enc=box.seal('{"K": "v"}')
            )
        )
        session.add(repo)
        session.flush()
        return repo.id


def test_purge_removes_the_mirror_projects_ci_variables(tmp_path, db):
    box = SecretBox(SECRET_KEY)
    repo_id = registration(db, box)
    with run_gitlab(tmp_path / "gitlab") as handle:
        gl = client(handle.url, handle.token)
        spec = MirrorProjectSpec(
            repository_id=repo_id, pipeline="cpu", entrypoint="ci/cpu.yml",
            variables={"FIRECREST_CLIENT_SECRET": SECRET, "K": "v"},
        )  # fmt: skip
        GitLabProjects(gl, "firecrest-ci").ensure_project(spec)
        disable(db, [repo_id], "the GitHub App was uninstalled", retention=0)
        with db.session() as session:
            disabled_at = session.get(Repository, repo_id).disabled_at
        assert disabled_at is not None
        assert purge_credentials(db, gl, "firecrest-ci", box.seal, repo_id, disabled_at.isoformat()) is True
        assert gl.projects.get(f"firecrest-ci/{repo_id}/cpu").variables.list(get_all=True) == []
        assert cancel_pipelines(gl, "firecrest-ci", repo_id, [{"pipeline": "gpu", "sha": "a" * 40}]) == 0
    with db.session() as session:
        repo = session.get(Repository, repo_id)
        assert box.open(repo.firecrest_client_secret_enc) == ""


def test_a_purge_for_an_older_disabling_does_nothing(db):
    box = SecretBox(SECRET_KEY)
    repo_id = registration(db, box)
    disable(db, [repo_id], "removed", retention=0)
    with db.session() as session:  # re-enabled, then disabled again later
        session.execute(update(Repository).where(Repository.id == repo_id).values(disabled_at=utcnow()))
    assert (
        purge_credentials(db, None, "firecrest-ci", box.seal, repo_id, "2020-01-01T00:00:00+00:00") is False
    )
    with db.session() as session:
        assert box.open(session.get(Repository, repo_id).firecrest_client_secret_enc) == SECRET
