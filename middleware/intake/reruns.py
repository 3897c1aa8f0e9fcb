"""The runs a re-run names, read for the policy: the latest attempt of each.

A check run names its run by `external_id`; a check suite names every run of the
commit. Either way the next attempt follows the latest one of the same run key,
whichever attempt GitHub showed, so two presses on an old check run never make
two runs of one attempt number.
"""

from __future__ import annotations

from sqlalchemy import func, select

from middleware.db import Database
from middleware.domain import RerunEvent, RunRef
from middleware.models import Run
from middleware.runs.reporting import FINAL_STATES


def runs_to_rerun(db: Database, repository_id: int, event: RerunEvent) -> tuple[RunRef, ...]:
    """The latest attempt of each run `event` names, in this repository at its head SHA."""
    where = [Run.repository_id == repository_id, Run.sha == event.head_sha]
    with db.session() as session:
        if event.scope == "check_run":
            if event.run_id is None:
                return ()
            named = session.get(Run, event.run_id)
            if named is None or named.repository_id != repository_id or named.sha != event.head_sha:
                return ()
            where += [Run.pipeline_name == named.pipeline_name, Run.trigger_kind == named.trigger_kind]
        latest = (
            select(Run.pipeline_name, Run.trigger_kind, func.max(Run.attempt).label("attempt"))
            .where(*where)
            .group_by(Run.pipeline_name, Run.trigger_kind)
            .subquery()
        )
        rows = session.scalars(
            select(Run)
            .join(
                latest,
                (Run.pipeline_name == latest.c.pipeline_name)
                & (Run.trigger_kind == latest.c.trigger_kind)
                & (Run.attempt == latest.c.attempt),
            )
            .where(*where)
            .order_by(Run.pipeline_name, Run.trigger_kind)
        ).all()
        return tuple(
            RunRef(
                id=run.id,
                pipeline=run.pipeline_name,
                ref=run.ref,
                sha=run.sha,
                kind=run.trigger_kind,
                attempt=run.attempt,
                finished=run.state in FINAL_STATES,
                pr_number=run.pr_number,
                variables={str(k): str(v) for k, v in (run.variables or {}).items()},
            )
            for run in rows
        )
