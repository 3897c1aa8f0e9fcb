"""The GitLab stand-in's jobs API: job and pipeline JSON as GitLab's entities give them, the job
lists with GitLab's offset pagination, traces, retry and cancel of jobs and pipelines, and the
pipeline test report and its summary.

Routes follow GitLab's `lib/api/ci/jobs.rb` and `lib/api/ci/pipelines.rb`: the lists are newest
first; a pipeline's jobs list leaves out retried jobs unless `include_retried`; the project's jobs
list is paginated without counting (no `X-Total`, `X-Total-Pages` or `last` link, as GitLab does
there); `scope[]` takes job statuses; a job retry answers 201 with the new job or 403
`Job is not retryable`; a job cancel answers 201 with the job, changed or not; a pipeline retry
answers 201, a pipeline cancel 200; a pipeline without reports has an empty test report.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from flask import Flask, Response, jsonify, request

from sandbox.gitlab.pipelines import AVAILABLE_STATUSES, Job, Pipeline
from sandbox.gitlab.reports import report_json, summary_json

if TYPE_CHECKING:
    from sandbox.gitlab.app import GitLabState


class BadParameter(ValueError):
    """A query parameter Grape would refuse (400 with `{"error": ...}`)."""


def _integer(name: str, default: int) -> int:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise BadParameter(f"{name} is invalid") from None


def paginate(items: list[dict[str, Any]], base: str, *, count: bool = True) -> Response:
    """One page of `items` with GitLab's offset pagination headers and `Link`; without `count`,
    as GitLab's keyset-capable lists, no totals and no `last` link."""
    per_page = max(1, min(_integer("per_page", 20), 100))
    page = max(1, _integer("page", 1))
    total_pages = max(1, math.ceil(len(items) / per_page))
    response = jsonify(items[(page - 1) * per_page : page * per_page])
    following = page + 1 if page * per_page < len(items) else None
    previous = page - 1 if page > 1 else None
    query = [(k, v) for k, v in request.args.items(multi=True) if k not in ("page", "per_page")]

    def link(number: int) -> str:
        pairs = [*query, ("page", str(number)), ("per_page", str(per_page))]
        return f"{base}{request.path}?{urlencode(pairs)}"

    links = []
    if previous is not None:
        links.append(f'<{link(previous)}>; rel="prev"')
    if following is not None:
        links.append(f'<{link(following)}>; rel="next"')
    links.append(f'<{link(1)}>; rel="first"')
    headers = {
        "X-Page": str(page),
        "X-Per-Page": str(per_page),
        "X-Next-Page": str(following or ""),
        "X-Prev-Page": str(previous or ""),
    }
    if count:
        links.append(f'<{link(total_pages)}>; rel="last"')
        headers.update({"X-Total": str(len(items)), "X-Total-Pages": str(total_pages)})
    headers["Link"] = ", ".join(links)
    response.headers.update(headers)
    return response


def scope() -> list[str] | None:
    """`scope[]` (or a single `scope`) of job statuses; BadParameter for an unknown one."""
    wanted = request.args.getlist("scope[]") + request.args.getlist("scope")
    if not wanted:
        return None
    if any(s not in AVAILABLE_STATUSES for s in wanted):
        raise BadParameter("scope does not have a valid value")
    return wanted


def user_json(user: dict[str, Any], base: str) -> dict[str, Any]:
    return {**user, "avatar_url": None, "web_url": f"{base}/{user['username']}"}


def pipeline_basic_json(gl: GitLabState, pipeline: Pipeline, base: str) -> dict[str, Any]:
    project = gl.projects[pipeline.project_id]
    return {
        "id": pipeline.id,
        "iid": pipeline.id,
        "project_id": pipeline.project_id,
        "sha": pipeline.sha,
        "ref": pipeline.ref,
        "status": pipeline.status,
        "source": "api",
        "created_at": pipeline.created_at,
        "updated_at": pipeline.updated_at,
        "web_url": f"{base}/{project['path_with_namespace']}/-/pipelines/{pipeline.id}",
    }


def pipeline_json(gl: GitLabState, pipeline: Pipeline, base: str) -> dict[str, Any]:
    """`Entities::Ci::Pipeline`."""
    basic = pipeline_basic_json(gl, pipeline, base)
    return {
        **basic,
        "before_sha": "0" * 40,
        "tag": False,
        "yaml_errors": None,
        "user": user_json(gl.bot, base),
        "started_at": pipeline.started_at,
        "finished_at": pipeline.finished_at,
        "committed_at": None,
        "duration": pipeline.duration,
        "queued_duration": pipeline.queued_duration,
        "coverage": None,
        "detailed_status": {
            "icon": f"status_{pipeline.status}",
            "text": pipeline.status.replace("_", " "),
            "label": pipeline.status.replace("_", " "),
            "group": pipeline.status,
            "tooltip": pipeline.status.replace("_", " "),
            "has_details": True,
            "details_path": basic["web_url"].removeprefix(base),
        },
    }


def job_json(gl: GitLabState, pipeline: Pipeline, job: Job, base: str) -> dict[str, Any]:
    """`Entities::Ci::Job`."""
    project = gl.projects[pipeline.project_id]
    found = {
        "id": job.id,
        "status": job.status,
        "stage": job.stage,
        "name": job.name,
        "ref": pipeline.ref,
        "tag": False,
        "coverage": None,
        "allow_failure": job.allow_failure,
        "created_at": job.created_at,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
        "erased_at": None,
        "duration": job.duration,
        "queued_duration": job.queued_duration,
        "user": user_json(gl.bot, base),
        "commit": {"id": pipeline.sha, "short_id": pipeline.sha[:8], "title": "", "message": ""},
        "pipeline": pipeline_basic_json(gl, pipeline, base),
        "web_url": f"{base}/{project['path_with_namespace']}/-/jobs/{job.id}",
        "project": {"ci_job_token_scope_enabled": False},
        "artifacts": [],
        "runner": None,
        "runner_manager": None,
        "artifacts_expire_at": None,
        "archived": False,
        "tag_list": [],
    }
    if job.status == "failed":
        found["failure_reason"] = job.failure_reason or "script_failure"
    return found


def register(
    app: Flask, gl: GitLabState, base: Callable[[], str], error: Callable[[int, str], Response]
) -> None:
    """Add the jobs, traces, retry/cancel and test report routes to the stand-in's app."""

    @app.errorhandler(BadParameter)
    def _bad_parameter(problem: BadParameter) -> Response:
        response = jsonify({"error": str(problem)})
        response.status_code = 400
        return response

    def pipeline_of(project_id: int, pipeline_id: int) -> Pipeline | None:
        pipeline = gl.pipelines.get(pipeline_id)
        return pipeline if pipeline is not None and pipeline.project_id == project_id else None

    def job_of(project_id: int, job_id: int) -> tuple[Pipeline, Job] | None:
        with gl.lock:
            for pipeline in gl.pipelines.values():
                job = pipeline.job(job_id) if pipeline.project_id == project_id else None
                if job is not None:
                    return pipeline, job
        return None

    def created(body: dict[str, Any]) -> Response:
        response = jsonify(body)
        response.status_code = 201
        return response

    @app.get("/api/v4/projects/<int:project_id>/pipelines/<int:pipeline_id>/jobs")
    def pipeline_jobs(project_id: int, pipeline_id: int) -> Response:
        pipeline = pipeline_of(project_id, pipeline_id)
        if pipeline is None:
            return error(404, "404 Project Not Found" if project_id not in gl.projects else "404 Not found")
        wanted = scope()
        retried = request.args.get("include_retried", "false").lower() == "true"
        with gl.lock:
            jobs = [
                job_json(gl, pipeline, j, base())
                for j in sorted(pipeline.jobs, key=lambda j: -j.id)
                if (retried or not j.retried) and (wanted is None or j.status in wanted)
            ]
        return paginate(jobs, base())

    @app.get("/api/v4/projects/<int:project_id>/jobs")
    def project_jobs(project_id: int) -> Response:
        if project_id not in gl.projects:
            return error(404, "404 Project Not Found")
        wanted = scope()
        with gl.lock:
            found = [
                (p, j)
                for p in gl.pipelines.values()
                if p.project_id == project_id
                for j in p.jobs
                if wanted is None or j.status in wanted
            ]
            jobs = [job_json(gl, p, j, base()) for p, j in sorted(found, key=lambda pj: -pj[1].id)]
        return paginate(jobs, base(), count=False)

    @app.get("/api/v4/projects/<int:project_id>/jobs/<int:job_id>")
    def get_job(project_id: int, job_id: int) -> Response:
        found = job_of(project_id, job_id)
        return jsonify(job_json(gl, *found, base())) if found else error(404, "404 Not found")

    @app.get("/api/v4/projects/<int:project_id>/jobs/<int:job_id>/trace")
    def job_trace(project_id: int, job_id: int) -> Response:
        found = job_of(project_id, job_id)
        if found is None:
            return error(404, "404 Not found")
        return Response(
            found[1].trace.encode("utf-8", errors="surrogateescape"),
            mimetype="text/plain",
            headers={"Content-Disposition": f'infile; filename="{job_id}.log"'},
        )

    @app.post("/api/v4/projects/<int:project_id>/jobs/<int:job_id>/retry")
    def retry_job(project_id: int, job_id: int) -> Response:
        found = job_of(project_id, job_id)
        if found is None:
            return error(404, "404 Not found")
        try:
            job = gl.retry_job(job_id)
        except ValueError:
            return error(403, "403 Forbidden - Job is not retryable")
        return created(job_json(gl, found[0], job, base()))

    @app.post("/api/v4/projects/<int:project_id>/jobs/<int:job_id>/cancel")
    def cancel_job(project_id: int, job_id: int) -> Response:
        found = job_of(project_id, job_id)
        if found is None:
            return error(404, "404 Not found")
        return created(job_json(gl, found[0], gl.cancel_job(job_id), base()))

    @app.post("/api/v4/projects/<int:project_id>/pipelines/<int:pipeline_id>/retry")
    def retry_pipeline(project_id: int, pipeline_id: int) -> Response:
        if pipeline_of(project_id, pipeline_id) is None:
            return error(404, "404 Not found")
        return created(pipeline_json(gl, gl.retry_pipeline(pipeline_id), base()))

    @app.post("/api/v4/projects/<int:project_id>/pipelines/<int:pipeline_id>/cancel")
    def cancel_pipeline(project_id: int, pipeline_id: int) -> Response:
        if pipeline_of(project_id, pipeline_id) is None:
            return error(404, "404 Not found")
        return jsonify(pipeline_json(gl, gl.cancel_pipeline(pipeline_id), base()))

    def reports(pipeline: Pipeline) -> list[tuple[int, str, Any]]:
        with gl.lock:
            return [
                (j.id, j.name, j.report)
                for j in sorted(pipeline.latest_jobs(), key=lambda j: j.id)
                if j.report
            ]

    @app.get("/api/v4/projects/<int:project_id>/pipelines/<int:pipeline_id>/test_report")
    def test_report(project_id: int, pipeline_id: int) -> Response:
        pipeline = pipeline_of(project_id, pipeline_id)
        return jsonify(report_json(reports(pipeline))) if pipeline else error(404, "404 Not found")

    @app.get("/api/v4/projects/<int:project_id>/pipelines/<int:pipeline_id>/test_report_summary")
    def test_report_summary(project_id: int, pipeline_id: int) -> Response:
        pipeline = pipeline_of(project_id, pipeline_id)
        return jsonify(summary_json(reports(pipeline))) if pipeline else error(404, "404 Not found")
