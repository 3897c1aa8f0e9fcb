"""A stand-in for the managed GitLab: the REST v4 calls the middleware makes through
python-gitlab, and real git smart HTTP through the real `git http-backend`.

It is not GitLab: no users beyond tokens, no permissions model beyond "a
known token may do anything", no runners. Projects are real bare
repositories on disk, so a real `git push` lands in a real repository; every
push records its push options (`-o ci.skip`) for tests to check. Pipelines
and jobs come in a later step.
"""

from __future__ import annotations

import datetime as dt
import itertools
import os
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from flask import Flask, Response, jsonify, request

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
        done = subprocess.run(["git", "http-backend"], input=body, env=env, capture_output=True, check=False)
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

    # -- controls ---------------------------------------------------------------------

    @app.get("/_stand-in/requests")
    def control_requests() -> Response:
        with gl.lock:
            return jsonify({"requests": list(gl.requests)})

    return app
