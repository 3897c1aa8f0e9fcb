"""The stand-in's Checks API: check runs (written only by App installations) and the suites
GitHub opens for them, validated the way GitHub validates them (422 `Invalid request.`).

Check runs are recorded in the state (`GitHubState.check_runs`) for tests to read.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from flask import Blueprint, Response, jsonify, request

from sandbox.github import web
from sandbox.github.records import CheckRun, CheckSuite, iso
from sandbox.github.render import annotation_json, check_run_json, check_suite_json, suite_outcome
from sandbox.github.state import Refused

bp = Blueprint("github_checks", __name__)

STATUSES = ("queued", "in_progress", "completed")
CONCLUSIONS = (
    "action_required",
    "cancelled",
    "failure",
    "neutral",
    "success",
    "skipped",
    "stale",
    "timed_out",
)
ANNOTATION_LEVELS = ("notice", "warning", "failure")
MAX_TEXT = 65535
MAX_ANNOTATIONS = 50
MAX_ACTIONS = 3
NOT_AN_APP = "You must authenticate via a GitHub App."


class Invalid(Exception):
    """A body GitHub's schema check rejects; the text follows `Invalid request.`."""


def _one_of(field: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        listed = ", ".join(f'"{a}"' for a in allowed)
        raise Invalid(f"For 'properties/{field}', {value!r} is not one of [{listed}].")


def _text(field: str, value: Any, limit: int, required: bool = False) -> None:
    if value is None:
        if required:
            raise Invalid(f'"{field}" wasn\'t supplied.')
        return
    if not isinstance(value, str):
        raise Invalid(f"For 'properties/{field}', {value!r} is not a string.")
    if len(value) > limit:
        raise Invalid(
            f"For 'properties/{field}', {len(value)} characters were sent; at most {limit} are allowed."
        )


def _annotations(items: Any) -> list[dict[str, Any]]:
    if not isinstance(items, list):
        raise Invalid("For 'properties/annotations', the value is not an array.")
    if len(items) > MAX_ANNOTATIONS:
        raise Invalid(
            f"For 'properties/annotations', {len(items)} items were sent; at most {MAX_ANNOTATIONS} "
            "are allowed per request."
        )
    for item in items:
        if not isinstance(item, dict):
            raise Invalid("For 'items', the value is not an object.")
        for key in ("path", "start_line", "end_line", "annotation_level", "message"):
            if key not in item:
                raise Invalid(f'"{key}" wasn\'t supplied.')
        if not isinstance(item["start_line"], int) or not isinstance(item["end_line"], int):
            raise Invalid("For 'properties/start_line' and 'end_line', the values must be integers.")
        _one_of("annotation_level", item["annotation_level"], ANNOTATION_LEVELS)
        _text("message", item["message"], MAX_TEXT, required=True)
        _text("title", item.get("title"), 255)
        _text("raw_details", item.get("raw_details"), MAX_TEXT)
        if ("start_column" in item or "end_column" in item) and item["start_line"] != item["end_line"]:
            raise Invalid("Columns may only be given when start_line and end_line are the same.")
    return [dict(item) for item in items]


def _output(output: Any) -> dict[str, Any]:
    if not isinstance(output, dict):
        raise Invalid("For 'properties/output', the value is not an object.")
    _text("title", output.get("title"), MAX_TEXT, required=True)
    _text("summary", output.get("summary"), MAX_TEXT, required=True)
    _text("text", output.get("text"), MAX_TEXT)
    for image in output.get("images") or []:
        if not isinstance(image, dict) or "alt" not in image or "image_url" not in image:
            raise Invalid('"alt" and "image_url" must be supplied for each image.')
    return output


def _actions(actions: Any) -> list[dict[str, Any]]:
    if not isinstance(actions, list) or len(actions) > MAX_ACTIONS:
        raise Invalid(f"For 'properties/actions', at most {MAX_ACTIONS} actions are allowed.")
    for action in actions:
        if not isinstance(action, dict):
            raise Invalid("For 'items', the value is not an object.")
        _text("label", action.get("label"), 20, required=True)
        _text("description", action.get("description"), 40, required=True)
        _text("identifier", action.get("identifier"), 20, required=True)
    return [dict(a) for a in actions]


def apply(run: CheckRun, body: dict[str, Any]) -> None:
    """Validate `body` fully, then write it onto `run` (annotations append, as GitHub's do)."""
    status = body.get("status", run.status)
    conclusion = body.get("conclusion", run.conclusion)
    if "status" in body:
        _one_of("status", status, STATUSES)
    if "conclusion" in body:
        _one_of("conclusion", conclusion, CONCLUSIONS)
        status = "completed"
    if (status == "completed" or body.get("completed_at")) and conclusion is None:
        raise Invalid('"conclusion" wasn\'t supplied (it is required when the status is completed).')
    for key in ("name", "details_url", "external_id", "started_at", "completed_at", "head_sha"):
        _text(key, body.get(key), MAX_TEXT)
    output = _output(body["output"]) if body.get("output") is not None else None
    annotations = _annotations(output.get("annotations") or []) if output else []
    actions = _actions(body["actions"]) if body.get("actions") is not None else None
    now = iso(time.time())
    run.name = body.get("name", run.name)
    run.details_url = body.get("details_url", run.details_url)
    run.external_id = body.get("external_id", run.external_id)
    run.started_at = body.get("started_at", run.started_at) or now
    run.status, run.conclusion = status, conclusion if status == "completed" else None
    run.completed_at = (
        (body.get("completed_at") or run.completed_at or now) if status == "completed" else None
    )
    if output is not None:
        run.output = {k: output.get(k) for k in ("title", "summary", "text", "images")}
        run.annotations.extend(annotations)
    if actions is not None:
        run.actions = actions


def writer(owner: str, name: str) -> dict[str, Any] | Response:
    """The repository, if the caller is an App installation allowed to write checks there."""
    who = web.caller()
    if who.kind != "installation":
        repo = web.repo_for(owner, name, "checks")
        return repo if isinstance(repo, Response) else web.error(403, NOT_AN_APP)
    return web.repo_for(owner, name, "checks", "write")


def suite_for(repo: dict[str, Any], app_id: int, head_sha: str) -> CheckSuite:
    """GitHub opens one suite per App and commit, on the first run; later runs join it."""
    gh = web.state()
    with gh.lock:
        for suite in gh.check_suites.values():
            if (suite.repo_id, suite.app_id, suite.head_sha) == (repo["id"], app_id, head_sha):
                return suite
        branch = next(
            (
                p.get("head_ref", "feature")
                for (full, _n), p in sorted(gh.pulls.items())
                if full == repo["full_name"].lower() and p.get("head_sha") == head_sha
            ),
            None,
        )
        now = iso(time.time())
        suite = CheckSuite(next(gh.ids), repo["id"], app_id, head_sha, branch, now, now)
        gh.check_suites[suite.id] = suite
        return suite


@bp.post("/repos/<owner>/<name>/check-runs")
def create_check_run(owner: str, name: str) -> Response:
    repo = writer(owner, name)
    if isinstance(repo, Response):
        return repo
    who = web.caller()
    assert who.app is not None
    assert who.installation is not None
    gh = web.state()
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        return web.error(400, "Problems parsing JSON")
    try:
        _text("name", body.get("name"), MAX_TEXT, required=True)
        _text("head_sha", body.get("head_sha"), 40, required=True)
        run = CheckRun(
            id=0,
            repo_id=repo["id"],
            app_id=who.app.id,
            installation_id=who.installation.id,
            suite_id=0,
            name=body["name"],
            head_sha=body["head_sha"],
            status=body.get("status", "queued"),
            conclusion=None,
            started_at=None,
            completed_at=None,
        )
        apply(run, body)
    except Invalid as invalid:
        return web.error(422, f"Invalid request.\n\n{invalid}")
    with gh.lock:
        run.id = next(gh.ids)
        run.suite_id = suite_for(repo, who.app.id, run.head_sha).id
        gh.check_runs[run.id] = run
    return web.answer(check_run_json(gh, web.base(), run), 201)


def run_in(repo: dict[str, Any], check_run_id: int) -> CheckRun:
    run = web.state().check_runs.get(check_run_id)
    if run is None or run.repo_id != repo["id"]:
        raise Refused(404, "Not Found")
    return run


@bp.patch("/repos/<owner>/<name>/check-runs/<int:check_run_id>")
def update_check_run(owner: str, name: str, check_run_id: int) -> Response:
    repo = writer(owner, name)
    if isinstance(repo, Response):
        return repo
    run = run_in(repo, check_run_id)
    who = web.caller()
    if who.app is None or run.app_id != who.app.id:
        return web.error(403, "Resource not accessible by integration")
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        return web.error(400, "Problems parsing JSON")
    gh = web.state()
    with gh.lock:
        trial = dataclasses.replace(run, annotations=list(run.annotations))
        try:
            apply(trial, body)
        except Invalid as invalid:
            return web.error(422, f"Invalid request.\n\n{invalid}")
        gh.check_runs[run.id] = run = trial
        gh.check_suites[run.suite_id].updated_at = iso(time.time())
    return jsonify(check_run_json(gh, web.base(), run))


@bp.get("/repos/<owner>/<name>/check-runs/<int:check_run_id>")
def get_check_run(owner: str, name: str, check_run_id: int) -> Response:
    repo = web.repo_for(owner, name, "checks")
    if isinstance(repo, Response):
        return repo
    return jsonify(check_run_json(web.state(), web.base(), run_in(repo, check_run_id)))


@bp.get("/repos/<owner>/<name>/check-runs/<int:check_run_id>/annotations")
def list_annotations(owner: str, name: str, check_run_id: int) -> Response:
    repo = web.repo_for(owner, name, "checks")
    if isinstance(repo, Response):
        return repo
    run = run_in(repo, check_run_id)
    return web.paginate([annotation_json(web.base(), repo["full_name"], run, a) for a in run.annotations])


def _listed(runs: list[CheckRun]) -> Response:
    """Filter by `check_name` and `app_id`, keep each name's latest run (unless `filter=all`),
    then filter by `status`; newest first."""
    gh = web.state()
    wanted_name, wanted_status = request.args.get("check_name"), request.args.get("status")
    app_id = request.args.get("app_id")
    runs = sorted(runs, key=lambda r: r.id, reverse=True)
    runs = [r for r in runs if wanted_name in (None, r.name) and app_id in (None, str(r.app_id))]
    if request.args.get("filter", "latest") == "latest":
        seen: set[tuple[int, str]] = set()
        latest = []
        for run in runs:
            if (run.app_id, run.name) not in seen:
                seen.add((run.app_id, run.name))
                latest.append(run)
        runs = latest
    runs = [r for r in runs if wanted_status in (None, r.status)]
    return web.paginate([check_run_json(gh, web.base(), r) for r in runs], wrap="check_runs")


@bp.get("/repos/<owner>/<name>/commits/<path:ref>/check-runs")
def runs_for_ref(owner: str, name: str, ref: str) -> Response:
    repo = web.repo_for(owner, name, "checks")
    if isinstance(repo, Response):
        return repo
    gh = web.state()
    with gh.lock:
        runs = [r for r in gh.check_runs.values() if r.repo_id == repo["id"] and ref == r.head_sha]
    return _listed(runs)


@bp.get("/repos/<owner>/<name>/commits/<path:ref>/check-suites")
def suites_for_ref(owner: str, name: str, ref: str) -> Response:
    repo = web.repo_for(owner, name, "checks")
    if isinstance(repo, Response):
        return repo
    gh = web.state()
    with gh.lock:
        suites = [s for s in gh.check_suites.values() if s.repo_id == repo["id"] and s.head_sha == ref]
        shown = [check_suite_json(gh, web.base(), s) for s in suites]
    return web.paginate(shown, wrap="check_suites")


def suite_in(repo: dict[str, Any], check_suite_id: int) -> CheckSuite:
    suite = web.state().check_suites.get(check_suite_id)
    if suite is None or suite.repo_id != repo["id"]:
        raise Refused(404, "Not Found")
    return suite


@bp.get("/repos/<owner>/<name>/check-suites/<int:check_suite_id>")
def get_check_suite(owner: str, name: str, check_suite_id: int) -> Response:
    repo = web.repo_for(owner, name, "checks")
    if isinstance(repo, Response):
        return repo
    return jsonify(check_suite_json(web.state(), web.base(), suite_in(repo, check_suite_id)))


@bp.get("/repos/<owner>/<name>/check-suites/<int:check_suite_id>/check-runs")
def runs_in_suite(owner: str, name: str, check_suite_id: int) -> Response:
    repo = web.repo_for(owner, name, "checks")
    if isinstance(repo, Response):
        return repo
    suite = suite_in(repo, check_suite_id)
    gh = web.state()
    with gh.lock:
        runs = [r for r in gh.check_runs.values() if r.suite_id == suite.id]
    return _listed(runs)


@bp.post("/repos/<owner>/<name>/check-suites/<int:check_suite_id>/rerequest")
def rerequest_suite(owner: str, name: str, check_suite_id: int) -> Response:
    repo = writer(owner, name)
    if isinstance(repo, Response):
        return repo
    suite = suite_in(repo, check_suite_id)
    who = web.caller()
    assert who.app is not None
    web.state().rerequest_check_suite(suite.id, sender=f"{who.app.slug}[bot]")
    return web.answer({}, 201)


@bp.post("/repos/<owner>/<name>/check-runs/<int:check_run_id>/rerequest")
def rerequest_run(owner: str, name: str, check_run_id: int) -> Response:
    repo = writer(owner, name)
    if isinstance(repo, Response):
        return repo
    run = run_in(repo, check_run_id)
    if suite_outcome([run])[0] != "completed":
        return web.error(403, "This check run is not rerequestable")
    who = web.caller()
    assert who.app is not None
    web.state().rerequest_check_run(run.id, sender=f"{who.app.slug}[bot]")
    return web.answer({}, 201)
