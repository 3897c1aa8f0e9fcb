"""A stand-in for GitLab: the REST v4 calls the middleware makes through python-gitlab, and
real git smart HTTP through the real `git http-backend`.

It plays both GitLabs the middleware talks to: the managed one it mirrors into and runs
pipelines on, and a SOURCE one (gitlab.com or self-managed) whose merge requests it pins and
whose commits and merge requests it reports back to (merge requests, commit statuses with
GitLab's state machine, notes, user look-ups).

It is not GitLab: users exist for look-ups and authorship only, every known token acts as
one bot user, and there is no permissions model beyond "a known token may do anything", and
no runners. Projects are real bare repositories on disk, so a real `git push` lands in a real
repository; every push records its push options (`-o ci.skip`) for tests to check. A merge
request's head is written to `refs/merge-requests/<iid>/head` of its target project, fetched
from a fork as GitLab does, so a real `git fetch` of that ref works over smart HTTP. Faults are
injected with `GitLabState.inject` (or, older, `fault_5xx_rate` and `fail_after_create`).

Pipelines run their jobs for real (pipelines.py); the jobs API, retry, cancel and test reports
are in jobs.py. Tests drive jobs themselves with `run_jobs = False` or `add_pipeline`, then
`start_job`, `finish_job`, `fail_job`, `finish_pipeline`, `set_job_log`, `set_test_report` and
`set_junit_report`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import itertools
import os
import random
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import httpx
from flask import Flask, Response, g, jsonify, request

from sandbox.gitlab import jobs as jobs_api
from sandbox.gitlab.pipelines import (
    COMPLETED,
    Job,
    Pipeline,
    PipelineConfigError,
    PipelineRunner,
    cancel_job,
    git_show,
    load_jobs,
    process,
    retry_job,
    retryable,
)
from sandbox.gitlab.reports import JobReport, TestCase, parse_junit

PUSH_LOG = "push-options.log"
PRE_RECEIVE = """#!/bin/sh
# Records each push's options (the stand-in's way to show `-o ci.skip` arrived).
i=0
opts=""
while [ "$i" -lt "${GIT_PUSH_OPTION_COUNT:-0}" ]; do
  eval "opt=\\$GIT_PUSH_OPTION_$i"
  opts="$opts $opt"
  i=$((i + 1))
done
cat > /dev/null
echo "push:$opts" >> "$GIT_DIR/push-options.log"
"""


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


#: The states of a commit status the API takes, and which transition each one asks for.
STATUS_EVENTS = {
    "pending": "enqueue",
    "running": "run",
    "success": "success",
    "failed": "drop",
    "canceled": "cancel",
}
#: GitLab's commit status state machine: the states each transition may leave.
STATUS_TRANSITIONS = {
    "enqueue": frozenset({"created"}),
    "run": frozenset({"pending"}),
    "success": frozenset({"created", "pending", "running"}),
    "drop": frozenset({"created", "pending", "running"}),
    "cancel": frozenset({"created", "pending", "running"}),
}
#: Where each transition leads.
STATUS_RESULTS = {
    "enqueue": "pending",
    "run": "running",
    "success": "success",
    "drop": "failed",
    "cancel": "canceled",
}
_HEX = re.compile(r"[0-9a-f]{4,40}")


@dataclass
class Fault:
    """The next `times` API requests whose method is `method` and whose path (numeric project ids,
    as the routes see it) fully matches `path` are answered `status` with GitLab's error body.

    With `after`, the request's work is done first and only its answer is lost on the way.
    """

    method: str
    path: str
    status: int = 502
    times: int = 1
    after: bool = False
    headers: dict[str, str] = field(default_factory=dict)

    def matches(self, method: str, path: str) -> bool:
        return self.times > 0 and method == self.method.upper() and re.fullmatch(self.path, path) is not None


@dataclass
class GitLabState:
    root: Path
    tokens: set[str] = field(default_factory=set)
    groups: dict[int, dict[str, Any]] = field(default_factory=dict)
    projects: dict[int, dict[str, Any]] = field(default_factory=dict)
    requests: list[dict[str, Any]] = field(default_factory=list)
    #: Share of API requests answered 5xx (before any work is done), drawn from a seeded RNG.
    fault_5xx_rate: float = 0.0
    rng: random.Random = field(default_factory=lambda: random.Random(0))  # noqa: S311 - faults, not crypto
    faults: int = 0
    #: Seconds every push waits before it is received (to catch a worker mid-mirror).
    push_delay: float = 0.0
    #: Seconds a pipeline create waits after the pipeline exists, before it answers.
    create_delay: float = 0.0
    #: The next N pipeline creates make the pipeline, then answer 502 (an answer lost on the way).
    fail_after_create: int = 0
    #: Markers a test waits for, to kill a worker inside a push or a create.
    pushes_in_progress: int = 0
    creates_in_progress: int = 0
    lock: threading.RLock = field(default_factory=threading.RLock)
    ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    #: Users by id (their own sequence, as in GitLab); the first is the bot every token acts as.
    users: dict[int, dict[str, Any]] = field(default_factory=dict)
    user_ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    #: Merge requests by (target project id, iid).
    merge_requests: dict[tuple[int, int], dict[str, Any]] = field(default_factory=dict)
    #: Commit statuses as stored (oldest first), and merge request notes.
    statuses: list[dict[str, Any]] = field(default_factory=list)
    notes: list[dict[str, Any]] = field(default_factory=list)
    #: Faults waiting for their requests (see `Fault`).
    injected: list[Fault] = field(default_factory=list)
    #: Every pipeline, by id.
    pipelines: dict[int, Pipeline] = field(default_factory=dict)
    #: False: pipelines created through the API do not run their jobs; tests drive them
    #: (`start_job`, `finish_job`, `fail_job`, `finish_pipeline`).
    run_jobs: bool = True
    #: Called after a pipeline or one of its jobs changed (the app sends Pipeline Hooks from it).
    on_pipeline_change: Callable[[Pipeline], None] | None = None
    bot: dict[str, Any] = field(init=False)
    runner: PipelineRunner = field(init=False)

    def __post_init__(self) -> None:
        self.bot = self.add_user("firecrest-ci-bot", "FirecREST CI")
        self.runner = PipelineRunner(self._changed, self.lock)

    def group_by_path(self, full_path: str) -> dict[str, Any] | None:
        return next((g for g in self.groups.values() if g["full_path"] == full_path), None)

    def project_by_path(self, full_path: str) -> dict[str, Any] | None:
        return next((p for p in self.projects.values() if p["path_with_namespace"] == full_path), None)

    def repo_dir(self, project: dict[str, Any]) -> Path:
        return self.root / f"{project['path_with_namespace']}.git"

    # -- building a source GitLab's world (tests) -------------------------------------------

    def add_user(
        self, username: str, name: str | None = None, *, user_id: int | None = None
    ) -> dict[str, Any]:
        """A user, by username (unique, case-insensitively); `user_id` to match a payload's id."""
        with self.lock:
            if any(u["username"].lower() == username.lower() for u in self.users.values()):
                raise ValueError(f"user {username} exists")
            new_id = user_id if user_id is not None else next(self.user_ids)
            while user_id is None and new_id in self.users:
                new_id = next(self.user_ids)
            if new_id in self.users:
                raise ValueError(f"user id {new_id} is taken")
            user = {"id": new_id, "username": username, "name": name or username, "state": "active"}
            self.users[new_id] = user
        return user

    def project(self, ident: int | str) -> dict[str, Any]:
        """A project by id or full path; KeyError names it when there is none."""
        with self.lock:
            found = self.projects.get(ident) if isinstance(ident, int) else self.project_by_path(ident)
        if found is None:
            raise KeyError(f"no project {ident!r}")
        return found

    def _git(self, repo: Path, *args: str) -> str:
        done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise ValueError(f"git {args[0]} in {repo.name} failed: {done.stderr.strip()}")
        return done.stdout.strip()

    def _write_head(self, merge_request: dict[str, Any]) -> str:
        """Copy the source branch's head to `refs/merge-requests/<iid>/head` of the target project,
        fetching it from a fork as GitLab does; returns its SHA."""
        target = self.projects[merge_request["target_project_id"]]
        source = self.projects[merge_request["source_project_id"]]
        branch, ref = merge_request["source_branch"], f"refs/merge-requests/{merge_request['iid']}/head"
        sha = self._git(self.repo_dir(source), "rev-parse", "--verify", f"refs/heads/{branch}^{{commit}}")
        if source["id"] == target["id"]:
            self._git(self.repo_dir(target), "update-ref", ref, sha)
        else:
            self._git(
                self.repo_dir(target), "fetch", "--quiet", "--no-tags", str(self.repo_dir(source)),
                f"+refs/heads/{branch}:{ref}",
            )  # fmt: skip
        target_head = self._git(
            self.repo_dir(target),
            "rev-parse",
            "--verify",
            f"refs/heads/{merge_request['target_branch']}^{{commit}}",
        )
        base = self._git(self.repo_dir(target), "merge-base", target_head, sha)
        merge_request.update(
            sha=sha,
            updated_at=_now(),
            diff_refs={"base_sha": base, "head_sha": sha, "start_sha": target_head},
        )
        return sha

    def open_merge_request(
        self,
        project: int | str,
        source_branch: str,
        target_branch: str,
        *,
        author: dict[str, Any] | None = None,
        source_project: int | str | None = None,
        title: str = "",
    ) -> dict[str, Any]:
        """A merge request of `source_branch` (of `source_project`, a fork, or of `project` itself)
        into `target_branch` of `project`; its head is written to `refs/merge-requests/<iid>/head`.
        Both branches must exist. Returns the stored merge request."""
        target = self.project(project)
        source = self.project(source_project) if source_project is not None else target
        with self.lock:
            iid = 1 + max((i for (p, i) in self.merge_requests if p == target["id"]), default=0)
            merge_request: dict[str, Any] = {
                "id": next(self.ids),
                "iid": iid,
                "project_id": target["id"],
                "title": title or f"Merge {source_branch} into {target_branch}",
                "description": "",
                "state": "opened",
                "created_at": _now(),
                "target_branch": target_branch,
                "source_branch": source_branch,
                "source_project_id": source["id"],
                "target_project_id": target["id"],
                "author": dict(author or self.bot),
            }
            self._write_head(merge_request)
            self.merge_requests[(target["id"], iid)] = merge_request
        return merge_request

    def update_merge_request(self, project: int | str, iid: int) -> str:
        """After a push to its source branch: the merge request's head moves on; returns the new SHA."""
        with self.lock:
            return self._write_head(self.merge_requests[(self.project(project)["id"], iid)])

    def inject(self, fault: Fault) -> Fault:
        with self.lock:
            self.injected.append(fault)
        return fault

    def take_fault(self, method: str, path: str) -> Fault | None:
        """The first waiting fault for this request, one of its `times` used up."""
        with self.lock:
            fault = next((f for f in self.injected if f.matches(method, path)), None)
            if fault is not None:
                fault.times -= 1
                if fault.times <= 0:
                    self.injected.remove(fault)
        return fault

    # -- pipelines and jobs (the API's retry and cancel, and tests driving jobs) -------------

    def _changed(self, pipeline: Pipeline) -> None:
        if self.on_pipeline_change is not None:
            self.on_pipeline_change(pipeline)

    def pipeline(self, pipeline_id: int) -> Pipeline:
        """A pipeline by id; KeyError names it when there is none."""
        with self.lock:
            found = self.pipelines.get(pipeline_id)
        if found is None:
            raise KeyError(f"no pipeline {pipeline_id}")
        return found

    def _job(self, job_id: int) -> tuple[Pipeline, Job]:
        with self.lock:
            for pipeline in self.pipelines.values():
                job = pipeline.job(job_id)
                if job is not None:
                    return pipeline, job
        raise KeyError(f"no job {job_id}")

    def job(self, job_id: int) -> Job:
        """A job by id (retried ones included); KeyError names it when there is none."""
        return self._job(job_id)[1]

    def add_pipeline(
        self,
        project: int | str,
        jobs: Sequence[str | tuple[str, str]] = ("test",),
        *,
        ref: str = "main",
        sha: str | None = None,
        variables: Mapping[str, str] | None = None,
    ) -> Pipeline:
        """A pipeline put straight in, its jobs driven by tests: `jobs` are names (stage `test`) or
        (name, stage) pairs, stages ordered as first met. `sha` defaults to the head of `ref`, or a
        made-up SHA when the project has no such branch. The first stage's jobs are pending."""
        found = self.project(project)
        if sha is None:
            done = subprocess.run(
                ["git", "-C", str(self.repo_dir(found)), "rev-parse", "--verify", "--quiet",
                 f"refs/heads/{ref}^{{commit}}"],
                capture_output=True, text=True, check=False,
            )  # fmt: skip
            sha = done.stdout.strip() or None
        with self.lock:
            pipeline_id = next(self.ids)
            built = [
                Job(next(self.ids), spec, "test", [], None, {})
                if isinstance(spec, str)
                else Job(next(self.ids), spec[0], spec[1], [], None, {})
                for spec in jobs
            ]
            pipeline = Pipeline(
                pipeline_id,
                found["id"],
                ref,
                sha or hashlib.sha1(f"pipeline-{pipeline_id}".encode()).hexdigest(),  # noqa: S324 - an id
                dict(variables or {}),
                built,
                stages=list(dict.fromkeys(j.stage for j in built)),
            )
            self.pipelines[pipeline.id] = pipeline
            process(pipeline)
        self._changed(pipeline)
        return pipeline

    def set_job_log(self, job_id: int, log: str | bytes, *, append: bool = False) -> None:
        """The job's trace (raw, ANSI escapes and all), replaced or appended to."""
        text = log.decode("utf-8", errors="surrogateescape") if isinstance(log, bytes) else log
        with self.lock:
            job = self.job(job_id)
            job.trace = job.trace + text if append else text

    def _driven(self, job_id: int) -> tuple[Pipeline, Job]:
        pipeline, job = self._job(job_id)
        if pipeline.workspace is not None:
            raise ValueError(f"job {job_id} runs for real; set run_jobs = False to drive jobs")
        if job.retried or job.status in COMPLETED:
            raise ValueError(f"job {job_id} is {'retried' if job.retried else job.status}")
        return pipeline, job

    def start_job(self, job_id: int) -> Job:
        """A created or pending job starts running (a runner picked it)."""
        with self.lock:
            pipeline, job = self._driven(job_id)
            if job.status == "running":
                raise ValueError(f"job {job_id} is running")
            job.begin()
            process(pipeline)
        self._changed(pipeline)
        return job

    def finish_job(
        self,
        job_id: int,
        status: str = "success",
        *,
        log: str | bytes | None = None,
        failure_reason: str | None = None,
    ) -> Job:
        """A job not yet finished ends `success`, `failed` or `canceled` (started now if it had not
        started); `log` replaces its trace. The pipeline moves on as GitLab processes it."""
        if status not in ("success", "failed", "canceled"):
            raise ValueError(f"a job finishes success, failed or canceled, not {status!r}")
        with self.lock:
            pipeline, job = self._driven(job_id)
            if job.started_at is None and status != "canceled":
                job.begin()
            if log is not None:
                self.set_job_log(job_id, log)
            job.finish(status, failure_reason)
            process(pipeline)
        self._changed(pipeline)
        return job

    def fail_job(
        self, job_id: int, *, log: str | bytes | None = None, failure_reason: str = "script_failure"
    ) -> Job:
        """`finish_job(job_id, "failed", ...)`."""
        return self.finish_job(job_id, "failed", log=log, failure_reason=failure_reason)

    def finish_pipeline(self, pipeline_id: int, status: str = "success") -> Pipeline:
        """Every job that gets to run ends `status`, stage after stage (after a failed stage the
        rest are skipped); `canceled` cancels the pipeline. Returns the pipeline."""
        pipeline = self.pipeline(pipeline_id)
        if status == "canceled":
            return self.cancel_pipeline(pipeline_id)
        while True:
            with self.lock:
                active = [j for j in pipeline.latest_jobs() if j.status in ("pending", "running")]
            if not active:
                return pipeline
            for job in active:
                self.finish_job(job.id, status)

    def _report_job(self, pipeline: Pipeline, job: int | str | None) -> Job:
        latest = pipeline.latest_jobs()
        if job is None and latest:
            return latest[0]
        found = next((j for j in latest if job in (j.id, j.name)), None)
        if found is None:
            raise KeyError(f"pipeline {pipeline.id} has no job {job!r}")
        return found

    def set_test_report(
        self,
        pipeline_id: int,
        cases: Iterable[TestCase | Mapping[str, Any]],
        *,
        job: int | str | None = None,
    ) -> None:
        """The JUnit report of one of the pipeline's jobs (by id or name; the first job when None):
        cases as `TestCase`s or dicts of its fields (`name`, `status` success/failed/error/skipped,
        `classname`, `file`, `execution_time`, `system_output`, `stack_trace`). The pipeline's test
        report is its latest jobs' reports, one suite per job name."""
        report = JobReport(cases=[TestCase.of(c) for c in cases])
        with self.lock:
            self._report_job(self.pipeline(pipeline_id), job).report = report

    def set_junit_report(
        self, pipeline_id: int, xml: str | bytes | Path, *, job: int | str | None = None
    ) -> None:
        """Like `set_test_report`, from JUnit XML (text or a file) parsed as GitLab parses it; XML that
        does not parse becomes the suite's `suite_error`, as GitLab shows it."""
        report = parse_junit(xml)
        with self.lock:
            self._report_job(self.pipeline(pipeline_id), job).report = report

    def retry_job(self, job_id: int) -> Job:
        """`POST /jobs/:id/retry`: the new job; ValueError when the job is not retryable."""
        with self.lock:
            pipeline, job = self._job(job_id)
            if not retryable(job):
                raise ValueError("Job is not retryable")
            clone = retry_job(pipeline, job, next(self.ids))
            process(pipeline)
        self._changed(pipeline)
        self.runner.kick(pipeline)
        return clone

    def retry_pipeline(self, pipeline_id: int) -> Pipeline:
        """`POST /pipelines/:id/retry`: its failed and canceled jobs retried, skipped ones reset."""
        with self.lock:
            pipeline = self.pipeline(pipeline_id)
            for job in [j for j in pipeline.latest_jobs() if j.status in ("failed", "canceled")]:
                retry_job(pipeline, job, next(self.ids))
            process(pipeline)
        self._changed(pipeline)
        self.runner.kick(pipeline)
        return pipeline

    def cancel_job(self, job_id: int) -> Job:
        """`POST /jobs/:id/cancel`: the job canceled if it can be; the job either way."""
        with self.lock:
            pipeline, job = self._job(job_id)
            changed = cancel_job(job)
            process(pipeline)
        if changed:
            self._changed(pipeline)
        return job

    def cancel_pipeline(self, pipeline_id: int) -> Pipeline:
        """`POST /pipelines/:id/cancel`: every cancelable job canceled."""
        pipeline = self.pipeline(pipeline_id)
        self.runner.cancel(pipeline)
        return pipeline


def create_app(state: GitLabState) -> Flask:
    app = Flask("sandbox.gitlab")
    gl = state
    app.extensions["gitlab_state"] = gl

    def base() -> str:
        return request.host_url.rstrip("/")

    def error(status: int, message: str) -> Response:
        response = jsonify({"message": message})
        response.status_code = status
        return response

    def authorised() -> bool:
        token = request.headers.get("PRIVATE-TOKEN") or ""
        if not token and request.headers.get("Authorization", "").startswith("Bearer "):
            token = request.headers["Authorization"][7:]
        return token in gl.tokens

    @app.before_request
    def _auth() -> Response | None:
        if request.path.startswith("/api/v4/"):
            with gl.lock:
                gl.requests.append({"method": request.method, "path": request.path})
                faulty = gl.fault_5xx_rate and gl.rng.random() < gl.fault_5xx_rate
                if faulty:
                    gl.faults += 1
            if faulty:
                return error(502, "502 Bad Gateway")
            fault = gl.take_fault(request.method, request.path)
            if fault is not None and not fault.after:
                return fault_answer(fault)
            g.lost_answer = fault
            if not authorised():
                return error(401, "401 Unauthorized")
        return None

    def fault_answer(fault: Fault) -> Response:
        response = error(fault.status, f"{fault.status} {HTTPStatus(fault.status).phrase}")
        response.headers.update(fault.headers)
        return response

    @app.after_request
    def _lose_answer(response: Response) -> Response:
        fault = g.get("lost_answer")
        return fault_answer(fault) if fault is not None else response

    def group_json(group: dict[str, Any]) -> dict[str, Any]:
        return {**group, "web_url": f"{base()}/groups/{group['full_path']}"}

    def project_json(project: dict[str, Any]) -> dict[str, Any]:
        path = project["path_with_namespace"]
        return {
            **{k: v for k, v in project.items() if k not in ("variables", "protected")},
            "web_url": f"{base()}/{path}",
            "http_url_to_repo": f"{base()}/{path}.git",
            "namespace": group_json(gl.groups[project["namespace_id"]]),
        }

    def find_group(ident: str) -> dict[str, Any] | None:
        ident = unquote(ident)
        return gl.groups.get(int(ident)) if ident.isdigit() else gl.group_by_path(ident)

    def find_project(ident: str) -> dict[str, Any] | None:
        ident = unquote(ident)
        return gl.projects.get(int(ident)) if ident.isdigit() else gl.project_by_path(ident)

    # -- groups -----------------------------------------------------------------------

    @app.get("/api/v4/groups/<path:ident>")
    def get_group(ident: str) -> Response:
        group = find_group(ident)
        return jsonify(group_json(group)) if group else error(404, "404 Group Not Found")

    @app.post("/api/v4/groups")
    def create_group() -> Response:
        body = request.get_json(silent=True) or request.form.to_dict()
        parent = gl.groups.get(int(body["parent_id"])) if body.get("parent_id") else None
        full_path = f"{parent['full_path']}/{body['path']}" if parent else str(body["path"])
        with gl.lock:
            if gl.group_by_path(full_path):
                return error(400, 'Failed to save group {:path=>["has already been taken"]}')
            group_id = next(gl.ids)
            group = {
                "id": group_id,
                "name": body.get("name", body["path"]),
                "path": body["path"],
                "full_path": full_path,
                "parent_id": parent["id"] if parent else None,
                "visibility": body.get("visibility", "private"),
            }
            gl.groups[group_id] = group
        response = jsonify(group_json(group))
        response.status_code = 201
        return response

    # -- projects ---------------------------------------------------------------------

    @app.get("/api/v4/projects/<path:ident>")
    def get_project(ident: str) -> Response:
        project = find_project(ident)
        return jsonify(project_json(project)) if project else error(404, "404 Project Not Found")

    @app.post("/api/v4/projects")
    def create_project() -> Response:
        body = request.get_json(silent=True) or request.form.to_dict()
        namespace = gl.groups.get(int(body["namespace_id"])) if body.get("namespace_id") else None
        if namespace is None:
            return error(400, "namespace_id is required")
        path = str(body.get("path") or body["name"])
        full_path = f"{namespace['full_path']}/{path}"
        with gl.lock:
            if gl.project_by_path(full_path):
                return error(400, 'Failed to save project {:path=>["has already been taken"]}')
            project_id = next(gl.ids)
            project = {
                "id": project_id,
                "name": body.get("name", path),
                "path": path,
                "path_with_namespace": full_path,
                "namespace_id": namespace["id"],
                "visibility": body.get("visibility", "private"),
                "ci_config_path": body.get("ci_config_path"),
                "ci_pipeline_variables_minimum_override_role": body.get(
                    "ci_pipeline_variables_minimum_override_role", "no_one_allowed"
                ),
                "default_branch": None,
                "created_at": _now(),
                "variables": {},
                "protected": {},
            }
            repo = gl.repo_dir(project)
            repo.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run(["git", "init", "-q", "--bare", str(repo)], check=True)
            for key, value in (("http.receivepack", "true"), ("receive.advertisePushOptions", "true")):
                subprocess.run(["git", "-C", str(repo), "config", key, value], check=True)
            hook = repo / "hooks" / "pre-receive"
            hook.write_text(PRE_RECEIVE)
            hook.chmod(0o755)
            gl.projects[project_id] = project
        response = jsonify(project_json(project))
        response.status_code = 201
        return response

    @app.delete("/api/v4/projects/<int:project_id>")
    def delete_project(project_id: int) -> Response:
        """Deleted at once (GitLab answers 202 and deletes a little later)."""
        with gl.lock:
            project = gl.projects.pop(project_id, None)
            if project is None:
                return error(404, "404 Project Not Found")
            for pipeline_id in [i for i, p in pipelines.items() if p.project_id == project_id]:
                runner.cancel(pipelines.pop(pipeline_id))
        shutil.rmtree(gl.repo_dir(project), ignore_errors=True)
        response = jsonify({"message": "202 Accepted"})
        response.status_code = 202
        return response

    @app.delete("/api/v4/groups/<path:ident>")
    def delete_group(ident: str) -> Response:
        with gl.lock:
            group = find_group(ident)
            if group is None:
                return error(404, "404 Group Not Found")
            group_id = group["id"]
            inside = [
                p
                for p in gl.projects.values()
                if p["path_with_namespace"].startswith(group["full_path"] + "/")
            ]
            if inside:
                return error(400, "group still has projects")
            gl.groups.pop(group_id)
        response = jsonify({"message": "202 Accepted"})
        response.status_code = 202
        return response

    @app.put("/api/v4/projects/<int:project_id>")
    def update_project(project_id: int) -> Response:
        project = gl.projects.get(project_id)
        if project is None:
            return error(404, "404 Project Not Found")
        body = request.get_json(silent=True) or request.form.to_dict()
        for key in ("ci_config_path", "visibility", "ci_pipeline_variables_minimum_override_role", "name"):
            if key in body:
                project[key] = body[key]
        return jsonify(project_json(project))

    # -- project variables -----------------------------------------------------------------

    def variable_json(variable: dict[str, Any]) -> dict[str, Any]:
        return {"variable_type": "env_var", "environment_scope": "*", "raw": False, **variable}

    @app.get("/api/v4/projects/<int:project_id>/variables")
    def list_variables(project_id: int) -> Response:
        project = gl.projects.get(project_id)
        if project is None:
            return error(404, "404 Project Not Found")
        return jsonify([variable_json(v) for v in project["variables"].values()])

    @app.get("/api/v4/projects/<int:project_id>/variables/<key>")
    def get_variable(project_id: int, key: str) -> Response:
        project = gl.projects.get(project_id)
        variable = project["variables"].get(key) if project else None
        return jsonify(variable_json(variable)) if variable else error(404, "404 Variable Not Found")

    @app.post("/api/v4/projects/<int:project_id>/variables")
    def create_variable(project_id: int) -> Response:
        project = gl.projects.get(project_id)
        if project is None:
            return error(404, "404 Project Not Found")
        body = request.get_json(silent=True) or request.form.to_dict()
        key = str(body["key"])
        if key in project["variables"]:
            return error(400, f'{{:key=>["({key}) has already been taken"]}}')
        value = str(body.get("value", ""))
        masked = str(body.get("masked", "false")).lower() == "true"
        if masked and len(value) < 8:
            return error(400, '{:value=>["is invalid"]}')
        project["variables"][key] = {
            "key": key,
            "value": value,
            "masked": masked,
            "protected": str(body.get("protected", "false")).lower() == "true",
        }
        response = jsonify(variable_json(project["variables"][key]))
        response.status_code = 201
        return response

    @app.put("/api/v4/projects/<int:project_id>/variables/<key>")
    def update_variable(project_id: int, key: str) -> Response:
        project = gl.projects.get(project_id)
        variable = project["variables"].get(key) if project else None
        if variable is None:
            return error(404, "404 Variable Not Found")
        body = request.get_json(silent=True) or request.form.to_dict()
        for name in ("value", "masked", "protected"):
            if name in body:
                raw = body[name]
                variable[name] = raw if name == "value" else str(raw).lower() == "true"
        return jsonify(variable_json(variable))

    @app.delete("/api/v4/projects/<int:project_id>/variables/<key>")
    def delete_variable(project_id: int, key: str) -> Response:
        project = gl.projects.get(project_id)
        if project is None or project["variables"].pop(key, None) is None:
            return error(404, "404 Variable Not Found")
        return Response(status=204)

    # -- protected branches and branches ------------------------------------------------

    @app.post("/api/v4/projects/<int:project_id>/protected_branches")
    def protect(project_id: int) -> Response:
        project = gl.projects.get(project_id)
        if project is None:
            return error(404, "404 Project Not Found")
        body = request.get_json(silent=True) or request.form.to_dict()
        name = str(body["name"])
        project["protected"][name] = {
            "id": next(gl.ids),
            "name": name,
            "allow_force_push": str(body.get("allow_force_push", "false")).lower() == "true",
        }
        response = jsonify(project["protected"][name])
        response.status_code = 201
        return response

    @app.get("/api/v4/projects/<int:project_id>/protected_branches")
    def protected(project_id: int) -> Response:
        project = gl.projects.get(project_id)
        return (
            jsonify(list(project["protected"].values())) if project else error(404, "404 Project Not Found")
        )

    @app.get("/api/v4/projects/<int:project_id>/repository/branches")
    def branches(project_id: int) -> Response:
        project = gl.projects.get(project_id)
        if project is None:
            return error(404, "404 Project Not Found")
        listed = subprocess.run(
            [
                "git",
                "-C",
                str(gl.repo_dir(project)),
                "for-each-ref",
                "--format=%(refname:short) %(objectname)",
                "refs/heads/",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split("\n")
        return jsonify(
            [
                {"name": n, "commit": {"id": sha}}
                for n, _, sha in (line.partition(" ") for line in listed if line)
            ]
        )

    # -- git smart HTTP through the real git http-backend ---------------------------------------

    @app.route("/<path:repo_path>.git/<path:rest>", methods=["GET", "POST"])
    def git_http(repo_path: str, rest: str) -> Response:
        project = gl.project_by_path(repo_path)
        if project is None:
            return Response("repository not found\n", status=404)
        writing = rest == "git-receive-pack" or request.args.get("service") == "git-receive-pack"
        auth = request.authorization
        token_ok = auth is not None and (auth.password or "") in gl.tokens
        if (writing or project["visibility"] != "public") and not token_ok:
            return Response(
                "HTTP Basic: Access denied\n",
                status=401,
                headers={"WWW-Authenticate": 'Basic realm="GitLab"'},
            )
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "GIT_PROJECT_ROOT": str(gl.root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "PATH_INFO": f"/{repo_path}.git/{rest}",
            "REQUEST_METHOD": request.method,
            "QUERY_STRING": request.query_string.decode(),
            "CONTENT_TYPE": request.content_type or "",
            "REMOTE_USER": ((auth.username or "oauth2") if auth is not None else "") if token_ok else "",
            "REMOTE_ADDR": request.remote_addr or "127.0.0.1",
            "GIT_PROTOCOL": request.headers.get("Git-Protocol", ""),
            "HTTP_CONTENT_ENCODING": request.headers.get("Content-Encoding", ""),
        }
        body = request.get_data()
        env["CONTENT_LENGTH"] = str(len(body))
        pushing = rest == "git-receive-pack"
        if pushing:
            with gl.lock:
                gl.pushes_in_progress += 1
        try:
            if pushing and gl.push_delay:
                time.sleep(gl.push_delay)
            done = subprocess.run(
                ["git", "http-backend"], input=body, env=env, capture_output=True, check=False
            )
        finally:
            if pushing:
                with gl.lock:
                    gl.pushes_in_progress -= 1
        head, _, payload = done.stdout.partition(b"\r\n\r\n")
        if not _:
            head, _, payload = done.stdout.partition(b"\n\n")
        status = 200
        headers = {}
        for line in head.decode("latin-1").splitlines():
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = int(value.strip().split()[0])
            elif name:
                headers[name.strip()] = value.strip()
        return Response(payload, status=status, headers=headers)

    # -- pipelines, jobs, traces and pipeline hooks ------------------------------------------

    def pipeline_json(pipeline: Pipeline) -> dict[str, Any]:
        return jobs_api.pipeline_json(gl, pipeline, base())

    def notify(pipeline: Pipeline) -> None:
        """Pipeline Hook callbacks, as GitLab sends them, in the background."""
        project = gl.projects.get(pipeline.project_id)
        if project is None:  # deleted meanwhile
            return
        hooks = [h for h in project.get("hooks", []) if h.get("pipeline_events")]
        if not hooks:
            return
        body = {
            "object_kind": "pipeline",
            "object_attributes": {
                "id": pipeline.id,
                "iid": pipeline.id,
                "ref": pipeline.ref,
                "sha": pipeline.sha,
                "status": pipeline.status,
                "source": "api",
            },
            "project": {"id": project["id"], "path_with_namespace": project["path_with_namespace"]},
            "builds": [
                {"id": j.id, "name": j.name, "stage": j.stage, "status": j.status}
                for j in pipeline.latest_jobs()
            ],
        }

        def send() -> None:
            for hook in hooks:
                with contextlib.suppress(httpx.HTTPError):  # GitLab retries; the middleware reconciles
                    httpx.post(
                        hook["url"],
                        json=body,
                        headers={
                            "X-Gitlab-Event": "Pipeline Hook",
                            "X-Gitlab-Token": hook.get("token") or "",
                        },
                        timeout=5,
                    )

        threading.Thread(target=send, daemon=True).start()

    gl.on_pipeline_change = notify
    runner = gl.runner
    pipelines = gl.pipelines
    app.extensions["gitlab_pipelines"] = pipelines
    jobs_api.register(app, gl, base, error)

    def resolve_component(reference: str) -> str:
        path, _, version = reference.partition("@")
        parts = path.split("/")
        if parts and ("." in parts[0] or ":" in parts[0] or parts[0].startswith("$")):
            parts = parts[1:]
        project = gl.project_by_path("/".join(parts[:-1]))
        if project is None:
            raise PipelineConfigError(
                f"component '{reference}' - project does not exist or you don't have sufficient permissions"
            )
        repo = gl.repo_dir(project)
        for candidate in (f"templates/{parts[-1]}.yml", f"templates/{parts[-1]}/template.yml"):
            text = git_show(repo, version or "HEAD", candidate)
            if text is not None:
                return text
        raise PipelineConfigError(f"component '{reference}' - content not found")

    @app.post("/api/v4/projects/<int:project_id>/pipeline")
    def create_pipeline(project_id: int) -> Response:
        project = gl.projects.get(project_id)
        if project is None:
            return error(404, "404 Project Not Found")
        body = request.get_json(silent=True) or {}
        ref = str(body.get("ref") or "")
        repo = gl.repo_dir(project)
        resolved = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "--verify", "--quiet", f"refs/heads/{ref}^{{commit}}"],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if not ref or resolved.returncode != 0:
            return jsonify({"message": {"base": ["Reference not found"]}}), 400  # type: ignore[return-value]
        variables = {str(v["key"]): str(v.get("value", "")) for v in body.get("variables") or []}
        if variables and project["ci_pipeline_variables_minimum_override_role"] == "no_one_allowed":
            return jsonify({"message": {"base": ["Insufficient permissions to set pipeline variables"]}}), 400  # type: ignore[return-value]
        sha = resolved.stdout.strip()
        config = git_show(repo, sha, project.get("ci_config_path") or ".gitlab-ci.yml")
        if config is None:
            return jsonify({"message": {"base": ["Missing CI config file"]}}), 400  # type: ignore[return-value]
        try:
            stages, jobs = load_jobs(config, resolve_component, gl.ids)
        except PipelineConfigError as problem:
            return jsonify({"message": {"base": [str(problem)]}}), 400  # type: ignore[return-value]
        with gl.lock:
            pipeline = Pipeline(next(gl.ids), project_id, ref, sha, variables, jobs)
            pipelines[pipeline.id] = pipeline
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": os.environ.get("HOME", "/tmp"),  # noqa: S108 - the jobs' HOME on a shell runner
            "LANG": "C.UTF-8",
            "CI": "true",
            "GITLAB_CI": "true",
            "CI_SERVER_URL": base(),
            "CI_PROJECT_ID": str(project_id),
            "CI_PROJECT_PATH": project["path_with_namespace"],
            "CI_PROJECT_NAME": project["path"],
            "CI_SERVER_FQDN": request.host,
            "CI_REPOSITORY_URL": f"{base()}/{project['path_with_namespace']}.git",
            "CI_PIPELINE_ID": str(pipeline.id),
            "CI_PIPELINE_SOURCE": "api",
            "CI_COMMIT_SHA": sha,
            "CI_COMMIT_REF_NAME": ref,
            **{k: v["value"] for k, v in project["variables"].items()},
            **variables,
        }
        if gl.run_jobs:
            runner.start(pipeline, stages, repo, env)
        else:
            with gl.lock:
                pipeline.stages = stages
                process(pipeline)
            notify(pipeline)
        with gl.lock:
            lose = gl.fail_after_create > 0
            gl.fail_after_create -= int(lose)
            gl.creates_in_progress += 1
        try:
            if gl.create_delay:
                time.sleep(gl.create_delay)
        finally:
            with gl.lock:
                gl.creates_in_progress -= 1
        if lose:
            return error(502, "502 Bad Gateway")
        response = jsonify(pipeline_json(pipeline))
        response.status_code = 201
        return response

    def pipeline_or_404(project_id: int, pipeline_id: int) -> Pipeline | None:
        pipeline = pipelines.get(pipeline_id)
        return pipeline if pipeline is not None and pipeline.project_id == project_id else None

    @app.get("/api/v4/projects/<int:project_id>/pipelines/<int:pipeline_id>")
    def get_pipeline(project_id: int, pipeline_id: int) -> Response:
        pipeline = pipeline_or_404(project_id, pipeline_id)
        return jsonify(pipeline_json(pipeline)) if pipeline else error(404, "404 Not found")

    @app.get("/api/v4/projects/<int:project_id>/pipelines")
    def list_pipelines(project_id: int) -> Response:
        found = [
            pipeline_json(p)
            for p in sorted(pipelines.values(), key=lambda p: -p.id)
            if p.project_id == project_id
            and all(request.args.get(k) in (None, getattr(p, k)) for k in ("ref", "sha", "status"))
        ]
        return jsonify(found)

    @app.get("/api/v4/projects/<int:project_id>/pipelines/<int:pipeline_id>/variables")
    def pipeline_variables(project_id: int, pipeline_id: int) -> Response:
        pipeline = pipeline_or_404(project_id, pipeline_id)
        if pipeline is None:
            return error(404, "404 Not found")
        return jsonify(
            [{"key": k, "value": v, "variable_type": "env_var"} for k, v in pipeline.variables.items()]
        )

    @app.post("/api/v4/projects/<int:project_id>/hooks")
    def add_hook(project_id: int) -> Response:
        project = gl.projects.get(project_id)
        if project is None:
            return error(404, "404 Project Not Found")
        body = request.get_json(silent=True) or request.form.to_dict()
        hook = {
            "id": next(gl.ids),
            "url": body["url"],
            "pipeline_events": str(body.get("pipeline_events", "false")).lower() == "true",
            "token": body.get("token"),
        }
        project.setdefault("hooks", []).append(hook)
        response = jsonify({k: v for k, v in hook.items() if k != "token"})
        response.status_code = 201
        return response

    @app.put("/api/v4/projects/<int:project_id>/hooks/<int:hook_id>")
    def edit_hook(project_id: int, hook_id: int) -> Response:
        project = gl.projects.get(project_id)
        hook = next((h for h in (project or {}).get("hooks", []) if h["id"] == hook_id), None)
        if hook is None:
            return error(404, "404 Not found")
        body = request.get_json(silent=True) or request.form.to_dict()
        if not body.get("url"):
            return error(400, "url is missing")
        hook["url"] = body["url"]
        if "token" in body:
            hook["token"] = body["token"]
        if "pipeline_events" in body:
            hook["pipeline_events"] = str(body["pipeline_events"]).lower() == "true"
        return jsonify({k: v for k, v in hook.items() if k != "token"})

    @app.get("/api/v4/projects/<int:project_id>/hooks")
    def list_hooks(project_id: int) -> Response:
        project = gl.projects.get(project_id)
        if project is None:
            return error(404, "404 Project Not Found")
        return jsonify([{k: v for k, v in h.items() if k != "token"} for h in project.get("hooks", [])])

    # -- a source GitLab: merge requests, commit statuses, notes, users -----------------------

    def user_json(user: dict[str, Any]) -> dict[str, Any]:
        return {
            **user,
            "locked": False,
            "avatar_url": None,
            "web_url": f"{base()}/{user['username']}",
        }

    def paginated(items: list[dict[str, Any]]) -> Response:
        """One page, with GitLab's pagination headers and `Link` (python-gitlab follows it)."""
        return jobs_api.paginate(items, base())

    def merge_request_json(merge_request: dict[str, Any]) -> dict[str, Any]:
        path = gl.projects[merge_request["project_id"]]["path_with_namespace"]
        iid = merge_request["iid"]
        return {
            **{k: v for k, v in merge_request.items() if k != "author"},
            "author": user_json(merge_request["author"]),
            "assignees": [],
            "reviewers": [],
            "labels": [],
            "draft": False,
            "work_in_progress": False,
            "merge_status": "can_be_merged",
            "detailed_merge_status": "mergeable",
            "merge_commit_sha": None,
            "squash_commit_sha": None,
            "user_notes_count": sum(
                1
                for n in gl.notes
                if n["project_id"] == merge_request["project_id"] and n["noteable_iid"] == iid
            ),
            "reference": f"!{iid}",
            "references": {"short": f"!{iid}", "relative": f"!{iid}", "full": f"{path}!{iid}"},
            "web_url": f"{base()}/{path}/-/merge_requests/{iid}",
        }

    def merge_request_or_none(project_id: int, iid: int) -> dict[str, Any] | None:
        return gl.merge_requests.get((project_id, iid)) if project_id in gl.projects else None

    @app.get("/api/v4/projects/<int:project_id>/merge_requests/<int:iid>")
    def get_merge_request(project_id: int, iid: int) -> Response:
        found = merge_request_or_none(project_id, iid)
        return jsonify(merge_request_json(found)) if found else error(404, "404 Not found")

    def note_json(note: dict[str, Any]) -> dict[str, Any]:
        return {**note, "author": user_json(note["author"])}

    @app.post("/api/v4/projects/<int:project_id>/merge_requests/<int:iid>/notes")
    def create_note(project_id: int, iid: int) -> Response:
        found = merge_request_or_none(project_id, iid)
        if found is None:
            return error(404, "404 Not found")
        body = request.get_json(silent=True) or request.form.to_dict()
        if "body" not in body:
            return jsonify({"error": "body is missing"}), 400  # type: ignore[return-value]
        if not str(body["body"]).strip():
            return jsonify({"error": "body is empty"}), 400  # type: ignore[return-value]
        with gl.lock:
            note = {
                "id": next(gl.ids),
                "type": None,
                "body": str(body["body"]),
                "attachment": None,
                "author": gl.bot,
                "created_at": _now(),
                "updated_at": _now(),
                "system": False,
                "noteable_id": found["id"],
                "noteable_type": "MergeRequest",
                "noteable_iid": iid,
                "project_id": project_id,
                "resolvable": False,
                "confidential": False,
                "internal": False,
            }
            gl.notes.append(note)
        response = jsonify(note_json(note))
        response.status_code = 201
        return response

    @app.get("/api/v4/projects/<int:project_id>/merge_requests/<int:iid>/notes")
    def list_notes(project_id: int, iid: int) -> Response:
        if merge_request_or_none(project_id, iid) is None:
            return error(404, "404 Not found")
        mine = [n for n in gl.notes if n["project_id"] == project_id and n["noteable_iid"] == iid]
        return paginated([note_json(n) for n in reversed(mine)])  # newest first, as GitLab sorts

    def status_json(status: dict[str, Any]) -> dict[str, Any]:
        return {
            **{k: v for k, v in status.items() if k != "project_id"},
            "author": user_json(status["author"]),
        }

    def commit_of(project: dict[str, Any], sha: str) -> str | None:
        if not _HEX.fullmatch(sha):
            return None
        done = subprocess.run(
            ["git", "-C", str(gl.repo_dir(project)), "rev-parse", "--verify", "--quiet", f"{sha}^{{commit}}"],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        return done.stdout.strip() if done.returncode == 0 else None

    def branch_containing(project: dict[str, Any], sha: str) -> str | None:
        listed = subprocess.run(
            ["git", "-C", str(gl.repo_dir(project)), "for-each-ref", "--contains", sha,
             "--format=%(refname:short)", "refs/heads/"],
            capture_output=True, text=True, check=False,
        ).stdout.split()  # fmt: skip
        return listed[0] if listed else None

    @app.post("/api/v4/projects/<int:project_id>/statuses/<sha>")
    def create_status(project_id: int, sha: str) -> Response:
        """GitLab's commit status API: the latest pending or running status of the same name and
        ref is updated (its description and URL first, even when the transition is then refused),
        a finished one is followed by a new one."""
        project = gl.projects.get(project_id)
        if project is None:
            return error(404, "404 Project Not Found")
        body = request.get_json(silent=True) or request.form.to_dict()
        state = body.get("state")
        if state is None:
            return jsonify({"error": "state is missing"}), 400  # type: ignore[return-value]
        if state not in STATUS_EVENTS:
            return jsonify({"error": "state does not have a valid value"}), 400  # type: ignore[return-value]
        commit = commit_of(project, sha)
        if commit is None:
            return error(404, "404 Commit Not Found")
        ref = body.get("ref") or branch_containing(project, commit)
        if not ref:
            return error(404, "404 References for commit Not Found")
        name = body.get("name") or body.get("context") or "default"
        with gl.lock:
            status = next(
                (
                    s
                    for s in reversed(gl.statuses)
                    if (s["project_id"], s["sha"], s["name"], s["ref"]) == (project_id, commit, name, ref)
                    and s["status"] in ("pending", "running")
                ),
                None,
            )
            if status is None:
                status = {
                    "id": next(gl.ids),
                    "project_id": project_id,
                    "sha": commit,
                    "ref": ref,
                    "status": "created",
                    "name": name,
                    "target_url": None,
                    "description": None,
                    "created_at": _now(),
                    "started_at": None,
                    "finished_at": None,
                    "allow_failure": False,
                    "coverage": None,
                    "author": gl.bot,
                }
                gl.statuses.append(status)
            for key in ("target_url", "description", "coverage"):
                if key in body:
                    status[key] = body[key]
            steps = ["enqueue", "run"] if state == "running" and status["status"] == "created" else []
            steps = steps or [STATUS_EVENTS[state]]
            for step in steps:
                if status["status"] not in STATUS_TRANSITIONS[step]:
                    return error(
                        400,
                        f"Cannot transition status via :{step} from :{status['status']} "
                        f'(Reason(s): Status cannot transition via "{step}")',
                    )
                status["status"] = STATUS_RESULTS[step]
            if status["status"] == "running":
                status["started_at"] = _now()
            if status["status"] in ("success", "failed", "canceled"):
                status["finished_at"] = _now()
        response = jsonify(status_json(status))
        response.status_code = 201
        return response

    @app.get("/api/v4/projects/<int:project_id>/repository/commits/<sha>/statuses")
    def list_statuses(project_id: int, sha: str) -> Response:
        """The commit's statuses, only the latest of each name and ref unless `all`."""
        if project_id not in gl.projects:
            return error(404, "404 Project Not Found")
        with gl.lock:
            found = [s for s in gl.statuses if s["project_id"] == project_id and s["sha"] == sha]
        for key in ("ref", "name"):
            if request.args.get(key):
                found = [s for s in found if s[key] == request.args[key]]
        if request.args.get("all", "false").lower() != "true":
            latest = {(s["name"], s["ref"]): s for s in found}  # later ids win
            found = [s for s in found if latest[(s["name"], s["ref"])] is s]
        return paginated([status_json(s) for s in found])

    @app.get("/api/v4/users")
    def list_users() -> Response:
        wanted = request.args.get("username")
        with gl.lock:
            found = [
                u for u in gl.users.values() if wanted is None or u["username"].lower() == wanted.lower()
            ]
        return paginated([user_json(u) for u in found])

    @app.get("/api/v4/user")
    def current_user() -> Response:
        """The token's user (python-gitlab's `auth()`): every known token acts as the bot."""
        return jsonify(user_json(gl.bot))

    @app.get("/api/v4/users/<int:user_id>")
    def get_user(user_id: int) -> Response:
        user = gl.users.get(user_id)
        return jsonify(user_json(user)) if user else error(404, "404 User Not Found")

    # -- URL-encoded project paths, as GitLab accepts them everywhere ----------------------

    inner = app.wsgi_app

    def encoded_paths(environ: dict[str, Any], start_response: Any) -> Any:
        raw = environ.get("RAW_URI") or environ.get("REQUEST_URI") or ""
        prefix = "/api/v4/projects/"
        if raw.startswith(prefix):
            ident, _, rest = raw[len(prefix) :].split("?", 1)[0].partition("/")
            if "%2F" in ident.upper():
                project = gl.project_by_path(unquote(ident))
                found = project["id"] if project is not None else 0  # 0: no such project, a 404
                environ["PATH_INFO"] = f"{prefix}{found}" + (f"/{unquote(rest)}" if rest else "")
        return inner(environ, start_response)

    app.wsgi_app = encoded_paths  # type: ignore[method-assign]

    # -- controls ---------------------------------------------------------------------

    @app.get("/_stand-in/requests")
    def control_requests() -> Response:
        with gl.lock:
            return jsonify({"requests": list(gl.requests)})

    return app
