"""A new attempt of a run: the same commit, pipeline and trigger, as a new pipeline.

A re-run on GitHub, a restart from the run viewer or the API all come here. The run key
includes the attempt number, so the new attempt is a new run (and a new GitLab pipeline,
found by its own FIRECREST_CI_RUN_ID), while a redelivered webhook still lands on the
attempt it made. The caller checks who may ask; this records who did.
"""

from __future__ import annotations

from sqlalchemy import func, insert, select

from middleware.db import Database
from middleware.models import Run, RunAction, utcnow
from middleware.runs.schedule import insert_runs


def new_attempt(db: Database, run_id: int, requested_by: str, *, action: str = "restart") -> int:
    """Record the next attempt of run `run_id`, due at once, and the action on the old run.

    Returns the new run's id. Two concurrent requests make two attempts, each recorded.
    """
    with db.engine.begin() as connection:
        run = connection.execute(select(Run).where(Run.id == run_id)).one_or_none()
        if run is None:
            raise LookupError(f"no run {run_id}")
        key = (
            Run.repository_id == run.repository_id,
            Run.pipeline_name == run.pipeline_name,
            Run.sha == run.sha,
            Run.trigger_kind == run.trigger_kind,
        )
        attempt = int(connection.scalar(select(func.max(Run.attempt)).where(*key)) or 0) + 1
        trigger = {
            "repository_id": run.repository_id,
            "pipeline": run.pipeline_name,
            "sha": run.sha,
            "kind": run.trigger_kind,
            "ref": run.ref,
            "pr_number": run.pr_number,
            "variables": dict(run.variables or {}),
            "reason": f"attempt {attempt}: {action} by {requested_by}",
            "attempt": attempt,
            "requested_by": requested_by,
        }
        insert_runs(connection, [trigger])
        new_id = connection.scalar(select(Run.id).where(*key, Run.attempt == attempt))
        assert new_id is not None
        connection.execute(
            insert(RunAction).values(
                run_id=run_id, action=action, actor=requested_by, at=utcnow(), new_run_id=new_id, detail=""
            )
        )
    return int(new_id)
