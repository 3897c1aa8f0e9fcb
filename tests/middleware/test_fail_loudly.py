"""Loud, not silent: a wrong setting refuses to start in one line naming it; a managed GitLab
that is not configured fails /readyz, stops the worker from starting and ends runs `error` at
once with the reason; one that is configured but away is a transient fault, not unreadiness."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import uuid
from pathlib import Path
from types import ModuleType

import pytest

from middleware.runs.schedule import ADVANCE_RUN
from middleware.runs.steps import UNCONFIGURED
from middleware.services import EXTENSION
from middleware.settings import Settings, one_line
from sandbox.github.server import run_github
from tests.middleware.conftest import (
    GOOD_TOKEN,
    admin,
    deliver,
    load_payload,
    make_app,
    postgres_database,
    repository_body,
    retarget,
)

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
TOKEN = "glpat-loud-secret-token-0123456789"


def environment(tmp_path: Path, **values: str) -> dict[str, str]:
    """A clean environment: nothing of the developer's or CI's settings leaks in."""
    keep = {
        k: v for k, v in os.environ.items() if k.upper() not in {n.upper() for n in Settings.model_fields}
    }
    keep = {k: v for k, v in keep.items() if not k.upper().endswith("_FILE")}
    return {
        **keep,
        "DATA_DIR": str(tmp_path / "state"),
        "MIDDLEWARE_SECRET_KEY": "loud-secret-key-0123456789abcdefghijkl",
        "ADMIN_TOKEN": "loud-admin-token-0123456789",
        **values,
    }


def start(command: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)


def test_wrong_values_refuse_gunicorn_in_one_line_naming_each(tmp_path):
    env = environment(tmp_path, LOG_LEVEL="LOUD", WEB_THREADS="0", DEMO_MODE="1")
    done = start(
        [str(BIN / "gunicorn"), "-c", "middleware/gunicorn.conf.py", "--check-config", "middleware.wsgi:app"],
        env,
    )
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("firecrest-ci middleware: cannot start: ")
    assert "LOG_LEVEL" in lines[0] and "'LOUD'" in lines[0] and "WEB_THREADS" in lines[0]


def entry_point(module: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **values: str) -> ModuleType:
    """Import an entry point (as gunicorn and celery do) in a clean environment, in-process."""
    for name in list(os.environ):
        if name.upper() in {n.upper() for n in Settings.model_fields} or name.upper().endswith("_FILE"):
            monkeypatch.delenv(name)
    for name, value in environment(tmp_path, **values).items():
        monkeypatch.setenv(name, value)
    monkeypatch.delitem(sys.modules, module, raising=False)
    loaded = importlib.import_module(module)
    monkeypatch.delitem(sys.modules, module)  # the next import runs it again
    return loaded


def test_a_wrong_type_refuses_the_web_app_in_one_line(tmp_path, monkeypatch, capsys):
    with pytest.raises(SystemExit) as exit_:
        entry_point("middleware.wsgi", tmp_path, monkeypatch, GITHUB_TIMEOUT="ten", GITLAB_URL="http://x")
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "GITHUB_TIMEOUT: Input should be a valid integer" in err


def test_a_secret_with_a_wrong_value_is_named_but_never_shown():
    from pydantic import ValidationError

    with pytest.raises(ValidationError) as error:
        Settings(database_url=["postgresql://user:pa55word-xyz@db/x"], github_timeout=0)  # type: ignore[arg-type]
    line = one_line(error.value)
    assert "DATABASE_URL: " in line and "GITHUB_TIMEOUT: " in line
    assert "pa55word" not in line and "\n" not in line


@pytest.mark.parametrize("module", ["middleware.worker", "middleware.wsgi"])
def test_the_worker_and_the_web_tier_refuse_to_start_without_a_managed_gitlab(
    tmp_path, monkeypatch, capsys, module
):
    with pytest.raises(SystemExit) as exit_:
        entry_point(module, tmp_path, monkeypatch)
    assert exit_.value.code == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "firecrest-ci middleware: cannot start: managed GitLab not configured: set GITLAB_URL "
        "(and GITLAB_TOKEN) to the GitLab that runs the pipelines"
    ]


def test_the_worker_says_when_the_managed_gitlab_is_away_and_never_its_token(
    tmp_path, monkeypatch, capsys, postgres_url
):
    from middleware.managed_gitlab import templates_project

    monkeypatch.setattr(templates_project, "publish", lambda *_a, **_k: None)  # only the probe here
    worker = entry_point(
        "middleware.worker",
        tmp_path,
        monkeypatch,
        DATABASE_URL=postgres_url,
        BROKER_URL="memory://",
        GITLAB_URL="http://127.0.0.1:9",
        GITLAB_TOKEN=TOKEN,
    )
    try:
        worker._start_dispatcher()
    finally:
        worker._stop_dispatcher()
        worker.services.db.dispose()
    out = capsys.readouterr()
    assert "managed GitLab unavailable; runs wait for it" in out.err
    assert "http://127.0.0.1:9 is unreachable (ConnectionError)" in out.err
    assert TOKEN not in out.err + out.out


@pytest.fixture
def postgres_url():
    with postgres_database() as url:
        yield url


def test_readyz_fails_with_the_reason_when_gitlab_is_not_configured(tmp_path, postgres_url):
    app = make_app(tmp_path, postgres_url)
    try:
        answer = app.test_client().get("/readyz")
        assert answer.status_code == 503
        assert answer.get_json()["checks"]["managed_gitlab"] == "not configured: set GITLAB_URL"
    finally:
        app.extensions[EXTENSION].db.dispose()


def test_a_gitlab_that_is_away_keeps_the_service_ready(tmp_path, postgres_url):
    app = make_app(tmp_path, postgres_url, gitlab_url="http://127.0.0.1:9", gitlab_token=TOKEN)
    try:
        answer = app.test_client().get("/readyz")
        assert answer.status_code == 200, answer.get_json()
        assert "managed_gitlab" not in answer.get_json()["checks"]
    finally:
        app.extensions[EXTENSION].db.dispose()


def test_runs_end_error_at_once_with_the_reason_when_gitlab_is_not_configured(tmp_path, postgres_url):
    with run_github() as gh:
        gh.state.add_user("alice", GOOD_TOKEN)
        gh.state.add_repo("octo-org/hpc-code")
        app = make_app(tmp_path, postgres_url, github_api_url=gh.url, github_write_interval=0)
        svc = app.extensions[EXTENSION]
        try:
            client = app.test_client()
            repo = client.post("/api/repositories", json=repository_body(), headers=admin()).get_json()
            made = client.post(
                f"/api/repositories/{repo['id']}/pipelines",
                json={"name": "cpu", "entrypoint": "ci/cpu.yml", "system": "cluster"},
                headers=admin(),
            )
            assert made.status_code == 201
            sha = uuid.uuid4().hex[:40].ljust(40, "0")
            payload = retarget(load_payload("push"))
            payload.update(ref="refs/heads/main", after=sha, deleted=False)
            assert deliver(client, "push", payload, repo["webhook_secret"]).status_code == 202
            from middleware.models import Run

            with svc.db.session() as session:
                (run_id,) = [r.id for r in session.query(Run).filter(Run.sha == sha)]
            assert svc.celery.tasks[ADVANCE_RUN](run_id) == "error"
            with svc.db.session() as session:
                run = session.get(Run, run_id)
                assert run is not None
                assert (run.state, run.error, run.next_check_at) == ("error", UNCONFIGURED, None)
                assert run.posted_seq == run.status_seq  # the reason reached the commit too
            posted = [s for s in gh.state.statuses if s.get("sha") == sha]
            assert posted and posted[-1]["state"] == "error"
            assert "GITLAB_URL" in posted[-1]["description"]
        finally:
            svc.db.dispose()


def test_the_web_command_refuses_a_bad_web_concurrency_in_one_line_before_gunicorn(tmp_path):
    """gunicorn parses WEB_CONCURRENCY itself, before any configuration: its traceback would be
    the answer. `firecrest-ci-middleware web` checks the settings first, then execs gunicorn."""
    cli = [str(BIN / "python"), "-m", "middleware.cli", "web"]
    bad = start(cli, environment(tmp_path, GITLAB_URL="http://gitlab.invalid", WEB_CONCURRENCY="ten"))
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert bad.stderr.strip().splitlines() == [
        "firecrest-ci-middleware: settings: WEB_CONCURRENCY: Input should be a valid integer, "
        "unable to parse string as an integer (got 'ten')"
    ]
    good = start([*cli, "--version"], environment(tmp_path, GITLAB_URL="http://gitlab.invalid"))
    assert good.returncode == 0 and "gunicorn" in good.stdout + good.stderr  # gunicorn took over
