"""Token mode, the whole loop with a restart: push -> final status -> a new attempt of the run
(as the run viewer's restart makes it) -> a second GitLab pipeline and a second final status,
both linking the run's page."""

from __future__ import annotations

import time

from middleware.db import Database
from middleware.runs.attempts import new_attempt
from tests.middleware.test_loop_e2e import loop

__all__ = ["loop"]


def test_a_restart_makes_a_new_pipeline_and_a_new_final_status(loop):
    sha = loop.commit('echo "attempt on $SLURM_CLUSTER_NAME"')
    assert loop.push_webhook(sha).status_code == 202
    first = loop.final_status(sha)
    assert first["state"] == "success"
    (run,) = [r for r in loop.service.runs(loop.repo["id"]) if r["sha"] == sha]
    assert first["target_url"].endswith(f"/runs/{run['id']}")
    db = Database(loop.service.env["DATABASE_URL"])
    try:
        again = new_attempt(db, run["id"], "octocat")
    finally:
        db.dispose()
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        finals = [
            s for s in loop.service.github.state.statuses
            if s["sha"] == sha and s["state"] != "pending" and s["target_url"].endswith(f"/runs/{again}")
        ]  # fmt: skip
        if finals:
            break
        time.sleep(0.3)
    else:
        raise AssertionError(f"no final status for attempt 2: {loop.service.github.state.statuses}")
    assert finals[-1]["state"] == "success"
    assert len(loop.pipelines(sha)) == 2
