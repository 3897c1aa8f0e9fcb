"""A stand-in for the managed GitLab: the REST v4 calls the middleware makes through
python-gitlab, and real git smart HTTP through the real `git http-backend`.

It is not GitLab: no users beyond tokens, no permissions model beyond "a
known token may do anything", no runners. Projects are real bare
repositories on disk, so a real `git push` lands in a real repository; every
push records its push options (`-o ci.skip`) for tests to check. Pipelines
and jobs come in a later step.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import os
import random
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import httpx
from flask import Flask, Response, jsonify, request

from sandbox.gitlab.pipelines import Pipeline, PipelineConfigError, PipelineRunner, git_show, load_jobs

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

    def group_by_path(self, full_path: str) -> dict[str, Any] | None:
        return next((g for g in self.groups.values() if g["full_path"] == full_path), None)

    def project_by_path(self, full_path: str) -> dict[str, Any] | None:
        return next((p for p in self.projects.values() if p["path_with_namespace"] == full_path), None)

    def repo_dir(self, project: dict[str, Any]) -> Path:
        return self.root / f"{project['path_with_namespace']}.git"


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
            if not authorised():
                return error(401, "401 Unauthorized")
        return None

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
        project = gl.projects[pipeline.project_id]
        return {
            "id": pipeline.id,
            "iid": pipeline.id,
            "project_id": pipeline.project_id,
            "sha": pipeline.sha,
            "ref": pipeline.ref,
            "status": pipeline.status,
            "source": "api",
            "tag": False,
            "yaml_errors": None,
            "created_at": pipeline.created_at,
            "updated_at": pipeline.updated_at,
            "web_url": f"{base()}/{project['path_with_namespace']}/-/pipelines/{pipeline.id}",
        }

    def job_json(pipeline: Pipeline, job: Any) -> dict[str, Any]:
        project = gl.projects[pipeline.project_id]
        return {
            "id": job.id,
            "name": job.name,
            "stage": job.stage,
            "status": job.status,
            "started_at": job.started_at,
            "finished_at": job.finished_at,
            "web_url": f"{base()}/{project['path_with_namespace']}/-/jobs/{job.id}",
            "pipeline": {
                "id": pipeline.id,
                "project_id": pipeline.project_id,
                "ref": pipeline.ref,
                "sha": pipeline.sha,
                "status": pipeline.status,
            },
        }

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
                {"id": j.id, "name": j.name, "stage": j.stage, "status": j.status} for j in pipeline.jobs
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

    runner = PipelineRunner(notify)
    pipelines: dict[int, Pipeline] = {}
    app.extensions["gitlab_pipelines"] = pipelines

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
        runner.start(pipeline, stages, repo, env)
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

    @app.post("/api/v4/projects/<int:project_id>/pipelines/<int:pipeline_id>/cancel")
    def cancel_pipeline(project_id: int, pipeline_id: int) -> Response:
        pipeline = pipeline_or_404(project_id, pipeline_id)
        if pipeline is None:
            return error(404, "404 Not found")
        if pipeline.status not in ("success", "failed", "canceled", "skipped"):
            runner.cancel(pipeline)
        return jsonify(pipeline_json(pipeline))

    @app.get("/api/v4/projects/<int:project_id>/pipelines/<int:pipeline_id>/jobs")
    def pipeline_jobs(project_id: int, pipeline_id: int) -> Response:
        pipeline = pipeline_or_404(project_id, pipeline_id)
        return (
            jsonify([job_json(pipeline, j) for j in pipeline.jobs])
            if pipeline
            else error(404, "404 Not found")
        )

    @app.get("/api/v4/projects/<int:project_id>/jobs/<int:job_id>/trace")
    def job_trace(project_id: int, job_id: int) -> Response:
        for pipeline in pipelines.values():
            if pipeline.project_id != project_id:
                continue
            for job in pipeline.jobs:
                if job.id == job_id:
                    return Response(job.trace, mimetype="text/plain")
        return error(404, "404 Not found")

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
