"""The run viewer's pages on runs that really ran in the GitLab stand-in: a run's page with its jobs,
a job's log rendered from ANSI with secrets masked, the actions through the pages (CSRF required),
and who may see and do what."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from middleware.models import RunAction
from middleware.web.runs_logs import stylesheet
from tests.middleware.runs_world import CLIENT_SECRET, GH_TOKEN, PIPELINE_SECRET, RunsWorld, runs_world
from tests.middleware.web_helpers import csrf_token, sign_in_as_github, sign_in_operator

JOB_LINK = re.compile(r'href="/runs/(\d+)/jobs/(\d+)"')


@pytest.fixture
def world(tmp_path: Path) -> Iterator[RunsWorld]:
    with runs_world(tmp_path) as made:
        yield made


def page(client: FlaskClient, path: str) -> str:
    answer = client.get(path)
    assert answer.status_code == 200, (path, answer.status_code, answer.get_data(as_text=True)[-800:])
    return answer.get_data(as_text=True)


def act(client: FlaskClient, run_id: int, action: str, *, token: str | None = None) -> str:
    """Press an action's button on the run's page: the form's CSRF token, then follow the redirect."""
    token = token or csrf_token(client, f"/runs/{run_id}")
    answer = client.post(f"/runs/{run_id}/{action}", data={"csrf_token": token})
    assert answer.status_code == 303, answer.get_data(as_text=True)[-800:]
    return page(client, answer.headers["Location"])


def test_a_runs_page_shows_its_fields_links_and_jobs(world: RunsWorld) -> None:
    sha = world.commit("echo done")
    run_id = world.trigger(sha)
    world.start(run_id)
    assert world.wait_finished(run_id) == "success"
    run = world.run(run_id)
    client = world.app.test_client()
    sign_in_operator(client)
    html = page(client, f"/runs/{run_id}")
    assert f'href="{world.gh.url}/octo-org/hpc-code/commit/{sha}"' in html
    assert f'href="{run.gitlab_pipeline_url}"' in html
    ((linked_run, _),) = set(JOB_LINK.findall(html))
    assert int(linked_run) == run_id
    assert ">colour</a>" in html and "runs-state-success" in html
    assert "Nobody has cancelled, retried or restarted this run." in html
    assert "Restart run" in html and "Cancel pipeline" not in html  # it has ended
    assert "Retry failed jobs" not in html  # nothing failed


def test_a_job_log_is_rendered_from_ansi_with_every_secret_masked(world: RunsWorld) -> None:
    sha = world.commit("echo done")
    run_id = world.trigger(sha)
    world.start(run_id)
    world.wait_finished(run_id)
    client = world.app.test_client()
    sign_in_operator(client)
    ((_, job_id),) = set(JOB_LINK.findall(page(client, f"/runs/{run_id}")))
    answer = client.get(f"/runs/{run_id}/jobs/{job_id}")
    assert answer.status_code == 200
    html = answer.get_data(as_text=True)
    coloured = '<span class="ansi1 ansi32">building</span> &lt;b&gt;bold?&lt;/b&gt; &amp; '
    assert coloured + '<span class="ansi31">red</span>' in html
    assert "client secret [MASKED] and token [MASKED]" in html
    for secret in (
        CLIENT_SECRET,
        PIPELINE_SECRET,
        "pipeline-secret-&lt;&amp;&gt;-value-42",
        GH_TOKEN,
        world.gl.token,
    ):
        assert secret not in html
    assert " style=" not in html and "\x1b" not in html
    assert "style-src 'self'" in answer.headers["Content-Security-Policy"]
    assert 'href="/assets/runs-ansi.css"' in html
    css = client.get("/assets/runs-ansi.css")
    assert css.status_code == 200 and css.get_data(as_text=True) == stylesheet()
    other = world.trigger(world.commit("echo other"))
    world.start(other)
    assert client.get(f"/runs/{other}/jobs/{job_id}").status_code == 404  # not a job of that run
    assert client.get(f"/runs/{run_id}/jobs/{2**63}").status_code == 404
    world.wait_finished(other)


def test_a_trusted_user_cancels_and_restarts_through_the_pages(world: RunsWorld) -> None:
    sha = world.commit("sleep 30")
    run_id = world.trigger(sha)
    world.start(run_id)
    client = world.app.test_client()
    sign_in_as_github(client, "trusty", world.trusted_id, managed=[])
    html = page(client, f"/runs/{run_id}")
    assert "Cancel pipeline" in html and "Restart run" not in html
    html = act(client, run_id, "cancel")
    assert f"run {run_id} canceled" in html
    assert re.search(r"<td>cancel</td>\s*<td>trusty</td>", html)
    refused = act(client, run_id, "cancel")
    assert "already ended canceled" in refused and 'class="flash error"' in refused
    restarted = act(client, run_id, "restart")
    with world.svc.db.session() as session:
        done = session.scalars(select(RunAction).where(RunAction.run_id == run_id).order_by(RunAction.id))
        assert [(a.action, a.actor) for a in done] == [("cancel", "trusty"), ("restart", "trusty")]
        new_id = session.scalars(select(RunAction.new_run_id).where(RunAction.action == "restart")).one()
    assert new_id is not None
    assert f"run {run_id} restarted as run {new_id}" in restarted
    assert f'a restart of <a href="/runs/{run_id}">run {run_id}</a> by trusty' in restarted
    assert world.run(new_id).requested_by == "trusty"
    world.start(new_id)
    assert len(world.pipelines(sha)) == 2  # the restart made its own pipeline
    act(client, new_id, "cancel")
    old = page(client, f"/runs/{run_id}")
    assert f'href="/runs/{new_id}">attempt 2: run {new_id}</a>' in old
    assert f'<a href="/runs/{new_id}">run {new_id}</a>' in old  # the restart's result


def test_retry_through_the_page(world: RunsWorld, tmp_path: Path) -> None:
    marker = tmp_path / "second-time"
    sha = world.commit(f"if [ -e {marker} ]; then echo passed; else touch {marker}; exit 4; fi")
    run_id = world.trigger(sha)
    world.start(run_id)
    assert world.wait_finished(run_id) == "failed"
    client = world.app.test_client()
    sign_in_operator(client)
    assert "Retry failed jobs" in page(client, f"/runs/{run_id}")
    html = act(client, run_id, "retry")
    assert "retried" in html and re.search(r"<td>retry</td>\s*<td>operator</td>", html)
    assert world.wait_finished(run_id) == "success"


def test_page_actions_need_the_csrf_token(world: RunsWorld) -> None:
    run_id = world.trigger(world.commit("echo never"))
    client = world.app.test_client()
    sign_in_operator(client)
    for action in ("cancel", "retry", "restart"):
        for data in ({}, {"csrf_token": "forged"}):
            answer = client.post(f"/runs/{run_id}/{action}", data=data)
            assert answer.status_code == 400, answer.status_code
    assert world.run(run_id).state == "queued"
    with world.svc.db.session() as session:
        assert session.scalars(select(RunAction)).all() == []


def test_outsiders_get_403_on_every_page_and_action(world: RunsWorld) -> None:
    sha = world.commit("echo done")
    run_id = world.trigger(sha)
    world.start(run_id)
    world.wait_finished(run_id)
    operator = world.app.test_client()
    sign_in_operator(operator)
    ((_, job_id),) = set(JOB_LINK.findall(page(operator, f"/runs/{run_id}")))
    repo = world.repo_id
    pages = [
        f"/repositories/{repo}/runs",
        f"/repositories/{repo}/runs?pipeline=cpu",
        f"/repositories/{repo}/pipelines/cpu/runs",
        f"/runs/{run_id}",
        f"/runs/{run_id}/jobs/{job_id}",
    ]
    outsider = world.app.test_client()
    sign_in_as_github(outsider, "mallory", world.outsider_id, managed=[])
    token = csrf_token(outsider, "/repositories")
    for path in pages:
        answer = outsider.get(path)
        assert answer.status_code == 403, path
        assert CLIENT_SECRET not in answer.get_data(as_text=True)
        assert sha not in answer.get_data(as_text=True)
    for action in ("cancel", "retry", "restart"):
        assert outsider.post(f"/runs/{run_id}/{action}", data={"csrf_token": token}).status_code == 403
    nobody = world.app.test_client()
    for path in pages:
        answer = nobody.get(path)
        assert answer.status_code == 302 and "/sign-in" in answer.headers["Location"], path
    with world.svc.db.session() as session:
        assert session.scalars(select(RunAction)).all() == []


def test_a_pipelines_trusted_user_sees_that_pipeline_only(world: RunsWorld) -> None:
    cpu = world.trigger(world.commit("echo cpu"))
    gpu = world.trigger(world.commit("echo gpu"), pipeline="gpu")
    client = world.app.test_client()
    sign_in_as_github(client, "gpu-only", world.pipeline_trusted_id, managed=[])
    listed = page(client, f"/repositories/{world.repo_id}/runs")
    assert f'href="/runs/{gpu}"' in listed and f'href="/runs/{cpu}"' not in listed
    assert page(client, f"/repositories/{world.repo_id}/pipelines/gpu/runs").count('href="/runs/') == 1
    assert client.get(f"/repositories/{world.repo_id}/pipelines/cpu/runs").status_code == 403
    assert client.get(f"/runs/{cpu}").status_code == 403
    token = csrf_token(client, f"/runs/{gpu}")
    assert client.post(f"/runs/{cpu}/cancel", data={"csrf_token": token}).status_code == 403
    assert "canceled" in act(client, gpu, "cancel", token=token)
    assert world.run(cpu).state == "queued"
