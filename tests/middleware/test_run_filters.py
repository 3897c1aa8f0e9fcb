"""The run viewer's list: each filter narrows to exactly the runs it names (SQLite and PostgreSQL),
25 runs a page newest first, and input that cannot be a filter is a 400 with a message beside its
field, never a 500. Also the log rendering's rules (middleware.web.runs_logs)."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import update

from middleware.models import Run
from middleware.runs.schedule import record_run
from middleware.services import EXTENSION, Services
from middleware.settings import Settings
from middleware.web.runs_filters import parse
from middleware.web.runs_links import source_links
from middleware.web.runs_logs import STYLESHEET, render, stylesheet
from tests.middleware.conftest import make_app
from tests.middleware.web_helpers import register_api, sign_in_operator

RUN_LINK = re.compile(r'<td><a href="/runs/(\d+)">#')
BASE = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC)


@pytest.fixture
def app(tmp_path: Path, database_url: str) -> Iterator[Flask]:
    application = make_app(tmp_path, database_url, session_cookie_secure=False)
    yield application
    application.extensions[EXTENSION].db.dispose()


def add_run(svc: Services, repo_id: int, number: int, **columns: Any) -> int:
    """Run `number`, created `number` hours after BASE unless told otherwise."""
    trigger = {
        "repository_id": repo_id,
        "pipeline": columns.pop("pipeline", "cpu"),
        "sha": columns.pop("sha", f"{number:02x}" * 20),
        "kind": columns.pop("kind", "push"),
        "ref": columns.pop("ref", "main"),
        "pr_number": columns.pop("pr_number", None),
        "requested_by": columns.pop("requested_by", None),
    }
    run_id = record_run(svc.db, trigger)
    created = columns.pop("created_at", BASE + dt.timedelta(hours=number))
    with svc.db.session() as session:
        session.execute(update(Run).where(Run.id == run_id).values(created_at=created, **columns))
    return run_id


@pytest.fixture
def listed(app: Flask) -> tuple[FlaskClient, int, dict[str, int]]:
    """A signed-in operator and a repository with one run of each kind worth filtering for."""
    client = app.test_client()
    repo = register_api(client)
    svc: Services = app.extensions[EXTENSION]
    runs = {
        "plain": add_run(svc, repo["id"], 1, state="success"),
        "failed": add_run(svc, repo["id"], 2, state="failed"),
        "pr": add_run(svc, repo["id"], 3, kind="pull_request", ref="pr-12", pr_number=12),
        "comment": add_run(
            svc, repo["id"], 4, kind="comment", ref="pr-12", pr_number=12, requested_by="Alice"
        ),
        "tag": add_run(svc, repo["id"], 5, ref="refs/tags/v1.0", sha="abcdef" + "0" * 34),
        "branch": add_run(svc, repo["id"], 6, ref="feature/x", requested_by="operator"),
        "late": add_run(svc, repo["id"], 48, state="canceled"),
    }
    sign_in_operator(client)
    return client, repo["id"], runs


def shown(client: FlaskClient, repo_id: int, query: str = "") -> list[int]:
    answer = client.get(f"/repositories/{repo_id}/runs?{query}")
    assert answer.status_code == 200, answer.get_data(as_text=True)[-1500:]
    return [int(found) for found in RUN_LINK.findall(answer.get_data(as_text=True))]


def test_each_filter_narrows_to_the_runs_it_names(listed: tuple[FlaskClient, int, dict[str, int]]) -> None:
    client, repo_id, runs = listed
    assert shown(client, repo_id) == sorted(runs.values(), reverse=True)  # newest first
    html = client.get(f"/repositories/{repo_id}/runs?ref=12").get_data(as_text=True)
    assert 'href="https://github.com/octo-org/hpc-code/pull/12">#12</a>' in html
    assert f'href="https://github.com/octo-org/hpc-code/commit/{"03" * 20}"' in html
    cases = {
        "state=failed": ["failed"],
        "state=FAILED": ["failed"],
        "trigger=comment": ["comment"],
        "trigger=pull_request&state=queued": ["pr"],
        "commit=abcdef": ["tag"],
        "commit=ABCDEF0000": ["tag"],
        f"commit={'02' * 20}": ["failed"],
        "ref=%2312": ["comment", "pr"],
        "ref=pr-12": ["comment", "pr"],
        "ref=12": ["comment", "pr"],
        "ref=feature/x": ["branch"],
        "ref=refs/heads/feature/x": ["branch"],
        "ref=v1.0": ["tag"],
        "ref=main&state=success": ["plain"],
        "requested_by=alice": ["comment"],
        "requested_by=operator": ["branch"],
        "from=2024-05-01T14:30&to=2024-05-01T16:00": ["comment", "pr"],
        "from=2024-05-02": ["late"],
        "to=2024-05-01": [k for k in runs if k != "late"],
        "from=2024-05-01T15:00%2B01:00&to=2024-05-01T15:00Z": ["failed", "pr"],  # 14:00 to 15:00 UTC
        "ref=nothing-like-it": [],
    }
    for query, names in cases.items():
        expected = sorted((runs[name] for name in names), reverse=True)
        assert shown(client, repo_id, query) == expected, query


def test_per_pipeline_lists(app: Flask, listed: tuple[FlaskClient, int, dict[str, int]]) -> None:
    client, repo_id, runs = listed
    svc: Services = app.extensions[EXTENSION]
    assert (
        client.post(
            f"/api/repositories/{repo_id}/pipelines",
            json={"name": "gpu", "entrypoint": "ci/gpu.yml", "system": "daint"},
            headers={"Authorization": f"Bearer {svc.settings.admin_token}"},
        ).status_code
        == 201
    )
    gpu = add_run(svc, repo_id, 7, pipeline="gpu")
    assert shown(client, repo_id, "pipeline=gpu") == [gpu]
    answer = client.get(f"/repositories/{repo_id}/pipelines/gpu/runs")
    assert [int(x) for x in RUN_LINK.findall(answer.get_data(as_text=True))] == [gpu]
    assert set(shown(client, repo_id, "pipeline=cpu")) == set(runs.values())
    assert client.get(f"/repositories/{repo_id}/pipelines/nope/runs").status_code == 404


def test_pages_of_25_newest_first_keep_the_filters(app: Flask) -> None:
    client = app.test_client()
    repo = register_api(client)
    svc: Services = app.extensions[EXTENSION]
    made = [add_run(svc, repo["id"], n, state="failed" if n % 2 else "success") for n in range(1, 60)]
    sign_in_operator(client)
    failed = sorted((r for n, r in enumerate(made, 1) if n % 2), reverse=True)  # 30 runs
    first = client.get(f"/repositories/{repo['id']}/runs?state=failed").get_data(as_text=True)
    assert [int(x) for x in RUN_LINK.findall(first)] == failed[:25]
    assert "Runs 1\u201325 of 30" in first
    following = re.search(r'<a rel="next" href="([^"]+)"', first)
    assert following and "state=failed" in following[1] and "page=2" in following[1]
    second = client.get(following[1].replace("&amp;", "&")).get_data(as_text=True)
    assert [int(x) for x in RUN_LINK.findall(second)] == failed[25:]
    assert 'rel="prev"' in second and 'rel="next"' not in second
    assert shown(client, repo["id"], "page=3&state=failed") == []


#: (query, the field whose message it is, words of the message)
BAD_INPUT = [
    ("state=exploded", "state", "choose one of queued"),
    ("trigger=cron", "trigger", "choose one of push"),
    ("commit=xyz", "commit", "hexadecimal"),
    ("commit=abc", "commit", "hexadecimal"),
    ("commit=" + "a" * 41, "commit", "hexadecimal"),
    ("ref=" + "r" * 300, "ref", "at most 255"),
    ("ref=a%00b", "ref", "control characters"),
    ("requested_by=" + "x" * 201, "requested_by", "at most 200"),
    ("from=yesterday", "from", "a date (2024-05-31)"),
    ("to=2024-02-30", "to", "a date (2024-05-31)"),
    ("from=2024-06-01&to=2024-05-01", "to", "before its start"),
    ("from=9999-12-31T23:59-12:00", "from", "a date"),
    ("page=0", "page", "from 1 to"),
    ("page=" + "9" * 5000, "page", "from 1 to"),
    ("page=%C2%B2", "page", "from 1 to"),
    ("pipeline=nope", "pipeline", "no pipeline &#39;nope&#39;"),
]


def test_bad_filter_input_is_a_400_with_the_reason_beside_the_field(
    listed: tuple[FlaskClient, int, dict[str, int]],
) -> None:
    client, repo_id, _ = listed
    for query, field, words in BAD_INPUT:
        answer = client.get(f"/repositories/{repo_id}/runs?{query}")
        assert answer.status_code == 400, (query, answer.get_data(as_text=True)[-800:])
        html = answer.get_data(as_text=True)
        assert words in html, query
        assert RUN_LINK.findall(html) == []
        if field not in ("page", "pipeline"):
            assert f'id="filter-{field}-error"' in html and f'aria-describedby="filter-{field}' in html


def test_what_was_entered_is_shown_back() -> None:
    parsed = parse({"state": "nope", "commit": " ABC123 ", "from": "2024-05-01"})
    assert parsed.values == {"state": "nope", "commit": "ABC123", "from": "2024-05-01"}
    assert set(parsed.errors) == {"state"}
    assert parsed.filter.commit == "abc123"
    assert parsed.filter.since == BASE.replace(hour=0)


def test_source_links_per_provider() -> None:
    settings = Settings(bitbucket_url="https://bb.example.org/")
    gitlab = source_links(
        settings, "gitlab", "grp/sub/proj", "https://gl.example.org:8443/grp/sub/proj.git", "ab", 7
    )
    assert gitlab.commit == "https://gl.example.org:8443/grp/sub/proj/-/commit/ab"
    assert gitlab.pull_request == "https://gl.example.org:8443/grp/sub/proj/-/merge_requests/7"
    bitbucket = source_links(
        settings, "bitbucket", "ws/repo", "https://bitbucket.org/ws/repo.git", "ab", None
    )
    assert (bitbucket.commit, bitbucket.pull_request) == ("https://bb.example.org/ws/repo/commits/ab", None)
    github = source_links(settings, "github", "o/r", "https://github.com/o/r.git", "ab", 3)
    assert (github.commit, github.pull_request) == (
        "https://github.com/o/r/commit/ab",
        "https://github.com/o/r/pull/3",
    )


# -- the log rendering ---------------------------------------------------------------------------


def test_the_static_stylesheet_is_the_generated_one() -> None:
    assert STYLESHEET.read_text() == stylesheet(), "regenerate it: STYLESHEET.write_text(stylesheet())"


def test_logs_keep_colours_as_classes_and_hide_secrets_even_escaped_or_cut() -> None:
    secret = "s3cr3t<&>value"
    text = (
        f"\x1b[31mred {secret}\x1b[0m\n\x1b]8;;http://evil\x07link\x1b]8;;\x07\nprogress 10%\rprogress 100%\n"
    )
    html = str(render(text, [secret, ""]))
    assert html.startswith('<span class="ansi31">red [MASKED]</span>\n')
    assert "evil" not in html and "link\n" in html
    assert "progress 100%" in html and "progress 10%\r" not in html
    assert "<script>" not in str(render("<script>alert(1)</script>", []))
    assert "\x07" not in html and "\x1b" not in html
    cut = str(render("line one\nthe key is s3cr3t<&", [secret], truncated=True))
    assert cut == "line one\n"  # the partial last line may hold the start of a secret
    assert str(render("no newline at all", [], truncated=True)) == ""
