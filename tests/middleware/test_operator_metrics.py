"""What operators watch, read from the database at scrape time (the same in every gunicorn
process), the managed GitLab's health, and the example alert rules in deploy/prometheus."""

from __future__ import annotations

import datetime as dt
import re
import shutil
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from middleware.models import Delivery, OutboxItem, Repository, Run, utcnow
from middleware.services import EXTENSION
from tests.middleware.conftest import make_app, postgres_database

ROOT = Path(__file__).resolve().parents[2]
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
TOKEN = "glpat-metrics-secret-0123456789"


class GitLabUser(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        good = self.path == "/api/v4/user" and self.headers.get("PRIVATE-TOKEN") == TOKEN
        body = b'{"id": 1}' if good else b'{"message": "401 Unauthorized"}'
        self.send_response(200 if good else 401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: Any) -> None:
        return


@pytest.fixture(scope="module")
def gitlab_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), GitLabUser)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def database_url() -> Iterator[str]:
    with postgres_database() as url:
        yield url


def scrape(app: Any) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """Sample name -> {labels: value}."""
    answer = app.test_client().get("/metrics")
    assert answer.status_code == 200
    found: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(answer.get_data(as_text=True)):
        found.setdefault(family.name + ("_total" if family.type == "counter" else ""), {})
        for sample in family.samples:
            found.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return found


def seed(app: Any) -> None:
    now = utcnow()
    ago = lambda **kw: now - dt.timedelta(**kw)  # noqa: E731
    with app.extensions[EXTENSION].db.session() as session:
        session.add(
            Repository(
                full_name="o/r",
                clone_url="https://github.com/o/r.git",
                webhook_secret_enc="x",
                notification_token_enc="x",
                firecrest_client_id="c",
                firecrest_client_secret_enc="x",
            )
        )
        session.flush()
        repo_id = session.query(Repository.id).scalar()

        def run(
            sha: str, state: str, created: dt.datetime, finished: dt.datetime | None = None, **kw: Any
        ) -> Run:
            return Run(
                repository_id=repo_id,
                pipeline_name="cpu",
                sha=sha,
                trigger_kind="push",
                ref="refs/heads/main",
                state=state,
                created_at=created,
                finished_at=finished,
                **kw,
            )

        session.add_all(
            [
                run("a", "queued", ago(hours=2), attempts=3, last_error="GitlabHttpError: 502"),
                run("b", "running", ago(minutes=30)),
                run("c", "success", ago(minutes=11), ago(minutes=10)),  # 60 s
                run("d", "failed", ago(minutes=12), ago(minutes=10)),  # 120 s
                run("e", "error", ago(minutes=20), ago(minutes=10)),  # 600 s
                run("f", "success", ago(hours=5), ago(hours=3)),  # ended before the window
                Delivery(id="d1", event="push", outcome="queued", received_at=ago(minutes=5)),
                Delivery(id="d2", event="push", outcome="queued", received_at=ago(minutes=6)),
                Delivery(id="d3", event="issue_comment", outcome="no-trigger", received_at=ago(minutes=7)),
                Delivery(id="d4", event="push", outcome="queued", received_at=ago(hours=2)),
                OutboxItem(task="t", payload={}, created_at=ago(minutes=20)),
                OutboxItem(task="t", payload={}, created_at=ago(minutes=1)),
                OutboxItem(task="t", payload={}, created_at=ago(hours=9), done_at=ago(hours=8)),
            ]
        )


@pytest.fixture(scope="module")
def figures(tmp_path_factory, database_url) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    app = make_app(tmp_path_factory.mktemp("metrics"), database_url)
    try:
        seed(app)
        return scrape(app)
    finally:
        app.extensions[EXTENSION].db.dispose()


def value(figures: dict[str, Any], name: str, **labels: str) -> float:
    result: float = figures[name][tuple(sorted(labels.items()))]
    return result


def test_work_that_does_not_move(figures):
    assert 2 * 3600 - 5 <= value(figures, "firecrest_ci_runs_oldest_open_seconds") <= 2 * 3600 + 60
    assert value(figures, "firecrest_ci_runs_retrying") == 1
    assert value(figures, "firecrest_ci_runs", state="queued") == 1
    assert value(figures, "firecrest_ci_outbox_backlog") == 2
    assert 20 * 60 - 5 <= value(figures, "firecrest_ci_outbox_oldest_seconds") <= 20 * 60 + 60


def test_deliveries_of_the_last_hour_by_outcome(figures):
    assert figures["firecrest_ci_deliveries_recent"] == {
        (("outcome", "no-trigger"),): 1.0,
        (("outcome", "queued"),): 2.0,
    }


def test_time_from_delivery_to_final_status(figures):
    assert value(figures, "firecrest_ci_runs_finished_recent") == 3
    quantiles = {labels[0][1]: v for labels, v in figures["firecrest_ci_run_seconds"].items()}
    assert quantiles["0.5"] == pytest.approx(120, abs=2)
    assert quantiles["1.0"] == pytest.approx(600, abs=2)


def test_gitlab_not_configured_is_not_up(figures):
    assert value(figures, "firecrest_ci_gitlab_configured") == 0
    assert value(figures, "firecrest_ci_gitlab_up") == 0


@pytest.mark.parametrize(("token", "up"), [(TOKEN, 1.0), ("glpat-wrong-token-0123456789", 0.0)])
def test_gitlab_up_follows_the_probe(tmp_path, database_url, gitlab_url, token, up):
    app = make_app(tmp_path, database_url, gitlab_url=gitlab_url, gitlab_token=token)
    try:
        found = scrape(app)
        assert value(found, "firecrest_ci_gitlab_configured") == 1
        assert value(found, "firecrest_ci_gitlab_up") == up
        assert app.test_client().get("/readyz").status_code == 200  # never a reason to take it out
        assert token not in app.test_client().get("/metrics").get_data(as_text=True)
    finally:
        app.extensions[EXTENSION].db.dispose()


def test_every_alert_names_a_metric_the_service_exports(figures):
    rules = [rule for group in yaml.safe_load(ALERTS.read_text())["groups"] for rule in group["rules"]]
    assert len(rules) >= 8
    exported = set(figures)
    for rule in rules:
        assert rule["alert"] and rule["labels"]["severity"] and rule["annotations"]["summary"]
        named = set(re.findall(r"\b(firecrest_ci_[a-z_]+)\b", rule["expr"]))
        assert named or "up{" in rule["expr"], rule["alert"]
        assert named <= exported, (rule["alert"], named - exported)


def test_promtool_accepts_the_alert_rules():
    assert shutil.which("promtool"), "promtool is missing: scripts/services.sh installs Debian's prometheus"
    done = subprocess.run(
        ["promtool", "check", "rules", str(ALERTS)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
