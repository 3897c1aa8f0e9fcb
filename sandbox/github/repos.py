"""The stand-in's user and repository endpoints: users, repositories, pull requests, commit
statuses (recorded for tests and the demo to show), collaborators and issue comments.

Every repository route goes through `web.repo_for`, so each kind of token (classic with
scopes, fine-grained, App installation, App or OAuth user) is held to what it may do there.
"""

from __future__ import annotations

import time
from typing import Any

from flask import Blueprint, Response, jsonify, request

from sandbox.github import web
from sandbox.github.records import iso
from sandbox.github.render import bot_json, repo_json, user_json

STATES = ("error", "failure", "pending", "success")

bp = Blueprint("github_repos", __name__)


def actor_json() -> dict[str, Any]:
    """Who a write is recorded as: the signed-in user, or the App's bot for an installation."""
    gh, who = web.state(), web.caller()
    if who.app is not None and who.kind == "installation":
        return bot_json(web.base(), who.app.slug, who.app.id)
    return user_json(web.base(), gh.users[who.login or ""])


@bp.get("/users/<login>")
def get_user(login: str) -> Response:
    user = web.state().users.get(login.lower())
    return jsonify(user_json(web.base(), user)) if user else web.error(404, "Not Found")


@bp.get("/user")
def authenticated_user() -> Response:
    who = web.caller()
    if who.kind == "installation":
        return web.error(403, "Resource not accessible by integration")
    if not who.is_user:
        return web.error(401, "Bad credentials" if who.kind == "unknown" else "Requires authentication")
    return jsonify(user_json(web.base(), web.state().users[who.login or ""]))


@bp.get("/repos/<owner>/<name>")
def get_repo(owner: str, name: str) -> Response:
    repo = web.repo_for(owner, name)
    if isinstance(repo, Response):
        return repo
    return jsonify(repo_json(web.state(), web.base(), repo, web.user_permissions(repo)))


def pull_json(repo: dict[str, Any], pull: dict[str, Any]) -> dict[str, Any]:
    gh, base = web.state(), web.base()
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
            "id": repo["id"] if head_repo == full else 7,
            "name": head_repo.split("/")[1],
            "full_name": head_repo,
            "owner": user_json(base, owner),
            "url": f"{base}/repos/{head_repo}",
        }
    number = pull["number"]
    return {
        "id": number * 1000,
        "number": number,
        "state": pull.get("state", "open"),
        "title": pull.get("title", f"Pull request {number}"),
        "user": user_json(base, author),
        "html_url": f"https://github.com/{full}/pull/{number}",
        "url": f"{base}/repos/{full}/pulls/{number}",
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
            "repo": repo_json(gh, base, repo),
        },
    }


@bp.get("/repos/<owner>/<name>/pulls/<int:number>")
def get_pull(owner: str, name: str, number: int) -> Response:
    repo = web.repo_for(owner, name, "pull_requests")
    if isinstance(repo, Response):
        return repo
    pull = web.state().pulls.get((repo["full_name"].lower(), number))
    if pull is None:
        return web.error(404, "Not Found")
    return jsonify(pull_json(repo, pull))


@bp.get("/repos/<owner>/<name>/pulls")
def list_pulls(owner: str, name: str) -> Response:
    repo = web.repo_for(owner, name, "pull_requests")
    if isinstance(repo, Response):
        return repo
    wanted = request.args.get("state", "open")
    found = [
        pull_json(repo, p)
        for (full, _n), p in sorted(web.state().pulls.items())
        if full == repo["full_name"].lower() and wanted in ("all", p.get("state", "open"))
    ]
    return web.paginate(found)


@bp.get("/repos/<owner>/<name>/commits/<ref>")
def get_commit(owner: str, name: str, ref: str) -> Response:
    repo = web.repo_for(owner, name, "contents")
    if isinstance(repo, Response):
        return repo
    full = repo["full_name"]
    return jsonify(
        {
            "sha": ref,
            "node_id": f"C_{ref}",
            "url": f"{web.base()}/repos/{full}/commits/{ref}",
            "html_url": f"https://github.com/{full}/commit/{ref}",
            "commit": {"message": "", "tree": {"sha": ref}},
            "parents": [],
            "files": [],
        }
    )


@bp.post("/repos/<owner>/<name>/statuses/<sha>")
def create_status(owner: str, name: str, sha: str) -> Response:
    repo = web.repo_for(owner, name, "statuses", "write")
    if isinstance(repo, Response):
        return repo
    gh, base = web.state(), web.base()
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
        return web.validation_failed(errors=problems)
    full = repo["full_name"]
    creator = actor_json()
    with gh.lock:
        status_id = next(gh.ids)
        now = iso(time.time())
        record = {
            "id": status_id,
            "node_id": f"S_{status_id}",
            "url": f"{base}/repos/{full}/statuses/{sha}",
            "state": body["state"],
            "description": body.get("description"),
            "target_url": body.get("target_url"),
            "context": body.get("context") or "default",
            "created_at": now,
            "updated_at": now,
            "creator": creator,
            "repository": full,
            "sha": sha,
            "received_at": time.time(),
        }
        gh.statuses.append(record)
        lose = gh.lose_status_answers > 0
        gh.lose_status_answers -= int(lose)
    if lose:
        return web.error(502, "Server Error")
    return web.answer({k: v for k, v in record.items() if k not in ("repository", "sha", "received_at")}, 201)


def statuses_for(full: str, sha: str) -> list[dict[str, Any]]:
    gh = web.state()
    with gh.lock:
        found = [s for s in gh.statuses if s["repository"] == full and s["sha"] == sha]
    return [
        {k: v for k, v in s.items() if k not in ("repository", "sha", "received_at")} for s in reversed(found)
    ]


@bp.get("/repos/<owner>/<name>/statuses/<ref>")
@bp.get("/repos/<owner>/<name>/commits/<ref>/statuses")
def list_statuses(owner: str, name: str, ref: str) -> Response:
    repo = web.repo_for(owner, name, "statuses")
    return repo if isinstance(repo, Response) else web.paginate(statuses_for(repo["full_name"], ref))


@bp.get("/repos/<owner>/<name>/commits/<ref>/status")
def combined_status(owner: str, name: str, ref: str) -> Response:
    repo = web.repo_for(owner, name, "statuses")
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
            "repository": repo_json(web.state(), web.base(), repo),
        }
    )


#: The coarse `permission` GitHub reports beside the precise `role_name`.
COARSE = {"admin": "admin", "maintain": "write", "write": "write", "triage": "read", "read": "read"}


@bp.get("/repos/<owner>/<name>/collaborators/<login>/permission")
def collaborator_permission(owner: str, name: str, login: str) -> Response:
    repo = web.repo_for(owner, name)
    if isinstance(repo, Response):
        return repo
    gh = web.state()
    role = gh.role_of(repo, login) or "none"
    user = gh.users.get(login.lower()) or {"login": login, "id": 3}
    return jsonify(
        {"permission": COARSE.get(role, "none"), "role_name": role, "user": user_json(web.base(), user)}
    )


@bp.get("/repos/<owner>/<name>/collaborators/<login>")
def is_collaborator(owner: str, name: str, login: str) -> Response | tuple[str, int]:
    repo = web.repo_for(owner, name)
    if isinstance(repo, Response):
        return repo
    return ("", 204) if login.lower() in repo["collaborators"] else web.error(404, "Not Found")


@bp.get("/repos/<owner>/<name>/collaborators")
def collaborators(owner: str, name: str) -> Response:
    repo = web.repo_for(owner, name)
    if isinstance(repo, Response):
        return repo
    gh = web.state()
    users = [
        user_json(web.base(), gh.users.get(login) or {"login": login, "id": 4})
        for login in sorted(repo["collaborators"])
    ]
    return web.paginate(users)


@bp.get("/repos/<owner>/<name>/issues/<int:number>")
def get_issue(owner: str, name: str, number: int) -> Response:
    repo = web.repo_for(owner, name, ("issues", "pull_requests"))
    if isinstance(repo, Response):
        return repo
    full = repo["full_name"]
    base = web.base()
    return jsonify(
        {
            "id": number,
            "number": number,
            "title": f"Issue {number}",
            "state": "open",
            "url": f"{base}/repos/{full}/issues/{number}",
            "html_url": f"https://github.com/{full}/issues/{number}",
            "repository_url": f"{base}/repos/{full}",
            "user": user_json(base, {"login": "ghost", "id": 1}),
        }
    )


@bp.post("/repos/<owner>/<name>/issues/<int:number>/comments")
def create_comment(owner: str, name: str, number: int) -> Response:
    repo = web.repo_for(owner, name, ("issues", "pull_requests"), "write")
    if isinstance(repo, Response):
        return repo
    gh = web.state()
    body = request.get_json(silent=True) or {}
    author = actor_json()
    with gh.lock:
        comment_id = next(gh.ids)
        full = repo["full_name"]
        record = {
            "id": comment_id,
            "body": str(body.get("body", "")),
            "user": author,
            "created_at": iso(time.time()),
            "url": f"{web.base()}/repos/{full}/issues/comments/{comment_id}",
            "html_url": f"https://github.com/{full}/pull/{number}#issuecomment-{comment_id}",
            "issue_number": number,
        }
        gh.comments.append(record)
    return web.answer(record, 201)
