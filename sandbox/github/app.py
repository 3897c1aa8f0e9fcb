"""A stand-in for the parts of GitHub's REST API v3 the middleware uses.

No GitHub is reachable here, so tests and the demo point the unmodified
PyGithub client at this. It answers with GitHub's paths, fields, status
codes, error bodies (`{"message", "documentation_url"}`) and Link
pagination for: the token's user, repositories, pull requests, commit
statuses (recorded for tests and the demo to show), collaborators and issue
comments. It is not GitHub: no rate limits, no apps, no GraphQL, no events.
"""

from __future__ import annotations

import datetime as dt
import itertools
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from flask import Flask, Response, jsonify, request

DOCS = "https://docs.github.com/rest"
STATES = ("error", "failure", "pending", "success")


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class GitHubState:
    """Users, tokens, repositories, PRs and what was posted; thread-safe."""

    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)
    repos: dict[str, dict[str, Any]] = field(default_factory=dict)
    pulls: dict[tuple[str, int], dict[str, Any]] = field(default_factory=dict)
    statuses: list[dict[str, Any]] = field(default_factory=list)
    comments: list[dict[str, Any]] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    down_until: float = 0.0
    #: Seconds every API answer waits before it is sent (a slow or hanging GitHub).
    delay: float = 0.0
    #: The next N commit statuses are recorded, then answered 502 (an answer lost on the way).
    lose_status_answers: int = 0
    lock: threading.RLock = field(default_factory=threading.RLock)
    ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1000))

    def add_user(self, login: str, token: str | None = None) -> int:
        """Add (or find) a user; returns its numeric id."""
        with self.lock:
            user = self.users.setdefault(login.lower(), {"login": login, "id": next(self.ids)})
            if token:
                self.tokens[token] = login.lower()
            return int(user["id"])

    def add_repo(self, full_name: str, **fields: Any) -> None:
        owner = full_name.split("/")[0]
        if owner.lower() not in self.users:
            self.add_user(owner)
        with self.lock:
            self.repos[full_name.lower()] = {
                "full_name": full_name,
                "id": next(self.ids),
                "private": bool(fields.get("private", False)),
                "default_branch": fields.get("default_branch", "main"),
                "clone_url": fields.get("clone_url", f"https://github.com/{full_name}.git"),
                "collaborators": {k.lower(): v for k, v in dict(fields.get("collaborators", {})).items()},
            }

    def add_pull(self, full_name: str, number: int, **fields: Any) -> None:
        with self.lock:
            self.pulls[(full_name.lower(), number)] = {"number": number, **fields}


def user_json(base: str, user: dict[str, Any]) -> dict[str, Any]:
    login = user["login"]
    return {
        "login": login,
        "id": user["id"],
        "node_id": f"U_{user['id']}",
        "type": "User",
        "site_admin": False,
        "url": f"{base}/users/{login}",
        "html_url": f"https://github.com/{login}",
    }


def create_app(state: GitHubState | None = None) -> Flask:
    app = Flask("sandbox.github")
    gh = state or GitHubState()
    app.extensions["github_state"] = gh

    def base() -> str:
        return request.host_url.rstrip("/")

    def error(status: int, message: str, **extra: Any) -> Response:
        response = jsonify({"message": message, "documentation_url": DOCS, **extra})
        response.status_code = status
        return response

    def caller() -> str | None:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() not in ("token", "bearer"):
            return None
        return gh.tokens.get(token.strip())

    def repo_or_404(owner: str, name: str) -> dict[str, Any] | Response:
        repo = gh.repos.get(f"{owner}/{name}".lower())
        if repo is None or (repo["private"] and caller() is None):
            return error(404, "Not Found")
        return repo

    def repo_json(repo: dict[str, Any]) -> dict[str, Any]:
        full = repo["full_name"]
        owner = gh.users[full.split("/")[0].lower()]
        login = caller()
        permission = repo["collaborators"].get(login or "", "read")
        return {
            "id": repo["id"],
            "node_id": f"R_{repo['id']}",
            "name": full.split("/")[1],
            "full_name": full,
            "private": repo["private"],
            "owner": user_json(base(), owner),
            "html_url": f"https://github.com/{full}",
            "url": f"{base()}/repos/{full}",
            "clone_url": repo["clone_url"],
            "default_branch": repo["default_branch"],
            "permissions": {
                "admin": permission == "admin",
                "maintain": permission in ("admin", "maintain"),
                "push": permission in ("admin", "maintain", "write"),
                "triage": permission != "read",
                "pull": True,
            },
        }

    def paginate(items: list[dict[str, Any]]) -> Response:
        per_page = max(1, min(int(request.args.get("per_page", 30)), 100))
        page = max(1, int(request.args.get("page", 1)))
        chunk = items[(page - 1) * per_page : page * per_page]
        response = jsonify(chunk)
        last = max(1, -(-len(items) // per_page))
        links = []
        url = f"{base()}{request.path}"
        if page < last:
            links.append(f'<{url}?per_page={per_page}&page={page + 1}>; rel="next"')
            links.append(f'<{url}?per_page={per_page}&page={last}>; rel="last"')
        if page > 1:
            links.append(f'<{url}?per_page={per_page}&page={page - 1}>; rel="prev"')
            links.append(f'<{url}?per_page={per_page}&page=1>; rel="first"')
        if links:
            response.headers["Link"] = ", ".join(links)
        return response

    @app.before_request
    def _outage() -> Response | None:
        if request.path.startswith("/_stand-in/"):
            return None
        with gh.lock:
            gh.requests.append({"method": request.method, "path": request.path, "time": time.time()})
        if gh.delay > 0:
            time.sleep(gh.delay)
        if time.time() < gh.down_until:
            return error(503, "Service Unavailable")
        return None

    @app.after_request
    def _headers(response: Response) -> Response:
        if not request.path.startswith("/_stand-in/"):
            response.headers["X-GitHub-Request-Id"] = f"STANDIN:{len(gh.requests)}"
            response.headers["X-RateLimit-Limit"] = "5000"
            response.headers["X-RateLimit-Remaining"] = "4999"
            response.headers["X-RateLimit-Reset"] = str(int(time.time()) + 3600)
            response.headers["X-OAuth-Scopes"] = "repo:status, public_repo"
        return response

    @app.get("/users/<login>")
    def get_user(login: str) -> Response:
        user = gh.users.get(login.lower())
        return jsonify(user_json(base(), user)) if user else error(404, "Not Found")

    @app.get("/user")
    def authenticated_user() -> Response:
        login = caller()
        if login is None:
            return error(401, "Bad credentials")
        return jsonify(user_json(base(), gh.users[login]))

    @app.get("/repos/<owner>/<name>")
    def get_repo(owner: str, name: str) -> Response:
        repo = repo_or_404(owner, name)
        return repo if isinstance(repo, Response) else jsonify(repo_json(repo))

    def pull_json(repo: dict[str, Any], pull: dict[str, Any]) -> dict[str, Any]:
        full = repo["full_name"]
        author = gh.users.get(str(pull.get("author", "")).lower()) or {
            "login": pull.get("author", "ghost"),
            "id": 1,
        }
        head_repo = pull.get("head_repo", full)
        head_repo_json = None
        if head_repo is not None:
            owner_login = head_repo.split("/")[0]
            owner = gh.users.get(owner_login.lower()) or {"login": owner_login, "id": 2}
            head_repo_json = {
                "id": 7,
                "name": head_repo.split("/")[1],
                "full_name": head_repo,
                "owner": user_json(base(), owner),
                "url": f"{base()}/repos/{head_repo}",
            }
        number = pull["number"]
        return {
            "id": number * 1000,
            "number": number,
            "state": pull.get("state", "open"),
            "title": pull.get("title", f"Pull request {number}"),
            "user": user_json(base(), author),
            "html_url": f"https://github.com/{full}/pull/{number}",
            "url": f"{base()}/repos/{full}/pulls/{number}",
            "merged": bool(pull.get("merged", False)),
            "draft": bool(pull.get("draft", False)),
            "head": {
                "sha": pull["head_sha"],
                "ref": pull.get("head_ref", "feature"),
                "label": "",
                "repo": head_repo_json,
            },
            "base": {
                "sha": pull.get("base_sha", "0" * 40),
                "ref": pull.get("base_ref", repo["default_branch"]),
                "label": "",
                "repo": repo_json(repo),
            },
        }

    @app.get("/repos/<owner>/<name>/pulls/<int:number>")
    def get_pull(owner: str, name: str, number: int) -> Response:
        repo = repo_or_404(owner, name)
        if isinstance(repo, Response):
            return repo
        pull = gh.pulls.get((repo["full_name"].lower(), number))
        if pull is None:
            return error(404, "Not Found")
        return jsonify(pull_json(repo, pull))

    @app.get("/repos/<owner>/<name>/pulls")
    def list_pulls(owner: str, name: str) -> Response:
        repo = repo_or_404(owner, name)
        if isinstance(repo, Response):
            return repo
        wanted = request.args.get("state", "open")
        found = [
            pull_json(repo, p)
            for (full, _n), p in sorted(gh.pulls.items())
            if full == repo["full_name"].lower() and wanted in ("all", p.get("state", "open"))
        ]
        return paginate(found)

    @app.get("/repos/<owner>/<name>/commits/<ref>")
    def get_commit(owner: str, name: str, ref: str) -> Response:
        repo = repo_or_404(owner, name)
        if isinstance(repo, Response):
            return repo
        full = repo["full_name"]
        return jsonify(
            {
                "sha": ref,
                "node_id": f"C_{ref}",
                "url": f"{base()}/repos/{full}/commits/{ref}",
                "html_url": f"https://github.com/{full}/commit/{ref}",
                "commit": {"message": "", "tree": {"sha": ref}},
                "parents": [],
                "files": [],
            }
        )

    @app.post("/repos/<owner>/<name>/statuses/<sha>")
    def create_status(owner: str, name: str, sha: str) -> Response:
        repo = repo_or_404(owner, name)
        if isinstance(repo, Response):
            return repo
        login = caller()
        if login is None:
            return error(401, "Bad credentials")
        body = request.get_json(silent=True) or {}
        problems = []
        if body.get("state") not in STATES:
            problems.append(
                {
                    "resource": "Status",
                    "code": "custom",
                    "field": "state",
                    "message": "state is not included in the list",
                }
            )
        if len(str(body.get("description") or "")) > 140:
            problems.append(
                {
                    "resource": "Status",
                    "code": "custom",
                    "field": "description",
                    "message": "description is too long (maximum is 140 characters)",
                }
            )
        if problems:
            return error(422, "Validation Failed", errors=problems)
        full = repo["full_name"]
        with gh.lock:
            status_id = next(gh.ids)
            record = {
                "id": status_id,
                "node_id": f"S_{status_id}",
                "url": f"{base()}/repos/{full}/statuses/{sha}",
                "state": body["state"],
                "description": body.get("description"),
                "target_url": body.get("target_url"),
                "context": body.get("context") or "default",
                "created_at": _now(),
                "updated_at": _now(),
                "creator": user_json(base(), gh.users[login]),
                "repository": full,
                "sha": sha,
                "received_at": time.time(),
            }
            gh.statuses.append(record)
            lose = gh.lose_status_answers > 0
            gh.lose_status_answers -= int(lose)
        if lose:
            return error(502, "Server Error")
        response = jsonify({k: v for k, v in record.items() if k not in ("repository", "sha", "received_at")})
        response.status_code = 201
        return response

    def statuses_for(full: str, sha: str) -> list[dict[str, Any]]:
        with gh.lock:
            found = [s for s in gh.statuses if s["repository"] == full and s["sha"] == sha]
        return [
            {k: v for k, v in s.items() if k not in ("repository", "sha", "received_at")}
            for s in reversed(found)
        ]

    @app.get("/repos/<owner>/<name>/statuses/<ref>")
    @app.get("/repos/<owner>/<name>/commits/<ref>/statuses")
    def list_statuses(owner: str, name: str, ref: str) -> Response:
        repo = repo_or_404(owner, name)
        return repo if isinstance(repo, Response) else paginate(statuses_for(repo["full_name"], ref))

    @app.get("/repos/<owner>/<name>/commits/<ref>/status")
    def combined_status(owner: str, name: str, ref: str) -> Response:
        repo = repo_or_404(owner, name)
        if isinstance(repo, Response):
            return repo
        latest: dict[str, dict[str, Any]] = {}
        for status in reversed(statuses_for(repo["full_name"], ref)):
            latest[status["context"]] = status
        states = {s["state"] for s in latest.values()}
        overall = (
            "failure"
            if states & {"failure", "error"}
            else "pending"
            if "pending" in states or not states
            else "success"
        )
        return jsonify(
            {
                "state": overall,
                "sha": ref,
                "total_count": len(latest),
                "statuses": list(latest.values()),
                "repository": repo_json(repo),
            }
        )

    @app.get("/repos/<owner>/<name>/collaborators/<login>/permission")
    def collaborator_permission(owner: str, name: str, login: str) -> Response:
        repo = repo_or_404(owner, name)
        if isinstance(repo, Response):
            return repo
        permission = repo["collaborators"].get(login.lower(), "none")
        user = gh.users.get(login.lower()) or {"login": login, "id": 3}
        return jsonify({"permission": permission, "role_name": permission, "user": user_json(base(), user)})

    @app.get("/repos/<owner>/<name>/collaborators/<login>")
    def is_collaborator(owner: str, name: str, login: str) -> Response | tuple[str, int]:
        repo = repo_or_404(owner, name)
        if isinstance(repo, Response):
            return repo
        return ("", 204) if login.lower() in repo["collaborators"] else error(404, "Not Found")

    @app.get("/repos/<owner>/<name>/collaborators")
    def collaborators(owner: str, name: str) -> Response:
        repo = repo_or_404(owner, name)
        if isinstance(repo, Response):
            return repo
        users = [
            user_json(base(), gh.users.get(login) or {"login": login, "id": 4})
            for login in sorted(repo["collaborators"])
        ]
        return paginate(users)

    @app.get("/repos/<owner>/<name>/issues/<int:number>")
    def get_issue(owner: str, name: str, number: int) -> Response:
        repo = repo_or_404(owner, name)
        if isinstance(repo, Response):
            return repo
        full = repo["full_name"]
        return jsonify(
            {
                "id": number,
                "number": number,
                "title": f"Issue {number}",
                "state": "open",
                "url": f"{base()}/repos/{full}/issues/{number}",
                "html_url": f"https://github.com/{full}/issues/{number}",
                "repository_url": f"{base()}/repos/{full}",
                "user": user_json(base(), {"login": "ghost", "id": 1}),
            }
        )

    @app.post("/repos/<owner>/<name>/issues/<int:number>/comments")
    def create_comment(owner: str, name: str, number: int) -> Response:
        repo = repo_or_404(owner, name)
        if isinstance(repo, Response):
            return repo
        login = caller()
        if login is None:
            return error(401, "Bad credentials")
        body = request.get_json(silent=True) or {}
        with gh.lock:
            comment_id = next(gh.ids)
            record = {
                "id": comment_id,
                "body": str(body.get("body", "")),
                "user": user_json(base(), gh.users[login]),
                "created_at": _now(),
                "url": f"{base()}/repos/{repo['full_name']}/issues/comments/{comment_id}",
                "html_url": f"https://github.com/{repo['full_name']}/pull/{number}#issuecomment-{comment_id}",
                "issue_number": number,
            }
            gh.comments.append(record)
        response = jsonify(record)
        response.status_code = 201
        return response

    # -- controls (loopback, no auth) --------------------------------------------------

    @app.post("/_stand-in/users")
    def control_user() -> tuple[str, int]:
        body = request.get_json(force=True)
        gh.add_user(body["login"], body.get("token"))
        return "", 204

    @app.post("/_stand-in/repos")
    def control_repo() -> tuple[str, int]:
        body = dict(request.get_json(force=True))
        gh.add_repo(body.pop("full_name"), **body)
        return "", 204

    @app.post("/_stand-in/repos/<owner>/<name>/pulls")
    def control_pull(owner: str, name: str) -> tuple[str, int]:
        body = dict(request.get_json(force=True))
        gh.add_pull(f"{owner}/{name}", int(body.pop("number")), **body)
        return "", 204

    @app.get("/_stand-in/statuses")
    def control_statuses() -> Response:
        with gh.lock:
            return jsonify({"statuses": list(gh.statuses)})

    @app.get("/_stand-in/requests")
    def control_requests() -> Response:
        with gh.lock:
            return jsonify({"requests": list(gh.requests)})

    @app.patch("/_stand-in/config")
    def control_config() -> Response:
        body = request.get_json(force=True)
        if "down_for" in body:
            gh.down_until = time.time() + float(body["down_for"])
        if "down_until" in body:
            gh.down_until = float(body["down_until"])
        if "delay" in body:
            gh.delay = float(body["delay"])
        return jsonify({"down_until": gh.down_until, "delay": gh.delay})

    return app
