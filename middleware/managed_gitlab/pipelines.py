"""GitLab pipelines for runs: exactly one per (repository, pipeline, sha, trigger).

The run's id travels as the pipeline variable FIRECREST_CI_RUN_ID. Before
creating, the step looks for a pipeline of the same commit that carries it,
so a worker that crashed after GitLab created the pipeline, but before the
run recorded its id, adopts that pipeline instead of making a second one.
"""

from __future__ import annotations

from dataclasses import dataclass

import gitlab
from gitlab.v4.objects import Project, ProjectPipeline

RUN_VARIABLE = "FIRECREST_CI_RUN_ID"
ACTIVE = frozenset(
    {"created", "waiting_for_resource", "preparing", "pending", "running", "scheduled", "manual"}
)
FINISHED = frozenset({"success", "failed", "canceled", "skipped"})


class PipelineRefused(RuntimeError):
    """GitLab would not start the pipeline (bad entrypoint, missing ref); readable message."""


class PipelineMoved(RuntimeError):
    """The mirror branch had moved on when GitLab resolved it: the pipeline was cancelled."""


@dataclass(frozen=True)
class PipelineRef:
    id: int
    url: str
    status: str


def _ref(pipeline: ProjectPipeline) -> PipelineRef:
    return PipelineRef(int(pipeline.id), str(pipeline.web_url), str(pipeline.status))


def find_existing(project: Project, run_id: int, sha: str) -> PipelineRef | None:
    for pipeline in project.pipelines.list(sha=sha, iterator=True):
        variables = {v.key: v.value for v in pipeline.variables.list(get_all=True)}
        if variables.get(RUN_VARIABLE) == str(run_id):
            return _ref(pipeline)
    return None


def ensure_pipeline(
    project: Project, run_id: int, ref: str, sha: str, variables: dict[str, str]
) -> PipelineRef:
    """The run's pipeline: found again if it exists, else created (once).

    The create is never retried blindly: GitLab may have made the pipeline before its
    answer was lost (a 502 from a proxy, a timeout), so a failed create raises and the
    next attempt looks for the pipeline first.
    """
    existing = find_existing(project, run_id, sha)
    if existing is not None:
        return existing
    payload = [{"key": k, "value": v} for k, v in {**variables, RUN_VARIABLE: str(run_id)}.items()]
    try:
        created = project.pipelines.create({"ref": ref, "variables": payload}, retry_transient_errors=False)
    except gitlab.exceptions.GitlabCreateError as error:
        if error.response_code and 400 <= error.response_code < 500:
            raise PipelineRefused(_gitlab_message(error)) from None
        raise
    if str(created.sha) != sha:
        # Someone moved the branch between our push and the create: never run the wrong commit.
        created.cancel()
        raise PipelineMoved(f"{ref} pointed at {str(created.sha)[:12]}, not {sha[:12]}; pipeline cancelled")
    return _ref(created)


def status_of(project: Project, pipeline_id: int) -> PipelineRef:
    return _ref(project.pipelines.get(pipeline_id))


def cancel(project: Project, pipeline_id: int) -> None:
    project.pipelines.get(pipeline_id, lazy=True).cancel()


def cancel_others(project: Project, ref: str, keep_sha: str) -> list[int]:
    """Cancel this ref's running pipelines for other commits (a newer push supersedes them)."""
    cancelled = []
    for pipeline in project.pipelines.list(ref=ref, iterator=True):
        if pipeline.sha != keep_sha and pipeline.status in ACTIVE:
            pipeline.cancel()
            cancelled.append(int(pipeline.id))
    return cancelled


def _gitlab_message(error: gitlab.exceptions.GitlabError) -> str:
    message = str(error.error_message)
    for noise in ("{'base': [", "]}", "'", '"'):
        message = message.replace(noise, "")
    return message.strip() or "GitLab refused the pipeline"
