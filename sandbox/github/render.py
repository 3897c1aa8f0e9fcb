"""GitHub's JSON shapes for the stand-in's users, repositories, Apps, installations and checks.

One place for them, because the REST answers and the webhook payloads the stand-in sends
must describe the same objects the same way. `base` is the API root URL to link to.
"""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING, Any

from sandbox.github.records import ROLES, App, CheckRun, CheckSuite, Installation

if TYPE_CHECKING:
    from sandbox.github.state import GitHubState


def node_id(kind: str, number: int) -> str:
    """Opaque-looking node ids, stable per object (GitHub's are base64 too)."""
    return base64.b64encode(f"0:{kind}{number}".encode()).decode().rstrip("=")


def user_json(base: str, user: dict[str, Any]) -> dict[str, Any]:
    login = user["login"]
    return {
        "login": login,
        "id": user["id"],
        "node_id": f"U_{user['id']}",
        "type": user.get("type", "User"),
        "site_admin": False,
        "url": f"{base}/users/{login}",
        "html_url": f"https://github.com/{login}",
    }


def bot_json(base: str, slug: str, app_id: int) -> dict[str, Any]:
    """The user an App's installation acts as: `slug[bot]`."""
    login = f"{slug}[bot]"
    return {
        "login": login,
        "id": 10_000_000 + app_id,
        "node_id": f"BOT_{app_id}",
        "type": "Bot",
        "site_admin": False,
        "url": f"{base}/users/{login}",
        "html_url": f"https://github.com/apps/{slug}",
    }


def account_json(gh: GitHubState, base: str, login: str) -> dict[str, Any]:
    """A user or organization by login; an App's `slug[bot]` is its bot."""
    user = gh.users.get(login.lower())
    if user is None and login.endswith("[bot]"):
        app = next((a for a in gh.apps.values() if a.slug == login[: -len("[bot]")]), None)
        if app is not None:
            return bot_json(base, app.slug, app.id)
    return user_json(base, user or {"login": login, "id": 0})


def role_permissions(role: str | None) -> dict[str, bool]:
    """The `permissions` object of a repository for a user holding `role` (None: public reader)."""
    rank = ROLES.index(role) if role in ROLES else 0
    return {
        "admin": rank >= 4,
        "maintain": rank >= 3,
        "push": rank >= 2,
        "triage": rank >= 1,
        "pull": True,
    }


def repo_json(
    gh: GitHubState, base: str, repo: dict[str, Any], permissions: dict[str, bool] | None = None
) -> dict[str, Any]:
    full = repo["full_name"]
    owner, name = full.split("/", 1)
    body: dict[str, Any] = {
        "id": repo["id"],
        "node_id": f"R_{repo['id']}",
        "name": name,
        "full_name": full,
        "private": repo["private"],
        "visibility": "private" if repo["private"] else "public",
        "fork": False,
        "description": repo.get("description"),
        "owner": account_json(gh, base, owner),
        "html_url": f"https://github.com/{full}",
        "url": f"{base}/repos/{full}",
        "clone_url": repo["clone_url"],
        "default_branch": repo["default_branch"],
    }
    if permissions is not None:
        body["permissions"] = permissions
    return body


def repo_brief(repo: dict[str, Any]) -> dict[str, Any]:
    """The short repository entries of `installation` and `installation_repositories` payloads."""
    return {
        "id": repo["id"],
        "node_id": f"R_{repo['id']}",
        "name": repo["full_name"].split("/", 1)[1],
        "full_name": repo["full_name"],
        "private": repo["private"],
    }


def app_json(gh: GitHubState, base: str, app: App) -> dict[str, Any]:
    installations = sum(1 for i in gh.installations.values() if i.app_id == app.id)
    return {
        "id": app.id,
        "slug": app.slug,
        "node_id": node_id("App", app.id),
        "client_id": app.client_id,
        "owner": account_json(gh, base, app.owner),
        "name": app.name,
        "description": app.description,
        "external_url": app.external_url,
        "html_url": f"https://github.com/apps/{app.slug}",
        "created_at": app.created_at,
        "updated_at": app.created_at,
        "permissions": dict(app.permissions),
        "events": list(app.events),
        "installations_count": installations,
    }


def installation_json(gh: GitHubState, base: str, inst: Installation) -> dict[str, Any]:
    app = gh.apps[inst.app_id]
    account = gh.users.get(inst.account) or {"login": inst.account, "id": 0}
    suspended_by = gh.users.get(inst.suspended_by or "")
    return {
        "id": inst.id,
        "client_id": app.client_id,
        "account": user_json(base, account),
        "repository_selection": inst.repository_selection,
        "access_tokens_url": f"{base}/app/installations/{inst.id}/access_tokens",
        "repositories_url": f"{base}/installation/repositories",
        "html_url": f"https://github.com/settings/installations/{inst.id}",
        "app_id": app.id,
        "app_slug": app.slug,
        "target_id": account["id"],
        "target_type": account.get("type", "User"),
        "permissions": dict(inst.permissions),
        "events": list(inst.events),
        "created_at": inst.created_at,
        "updated_at": inst.updated_at,
        "single_file_name": None,
        "has_multiple_single_files": False,
        "single_file_paths": [],
        "suspended_at": inst.suspended_at,
        "suspended_by": user_json(base, suspended_by) if suspended_by else None,
    }


def pull_refs(gh: GitHubState, base: str, repo: dict[str, Any], head_sha: str) -> list[dict[str, Any]]:
    """The open pull requests of `repo` whose head is `head_sha`, in the checks API's short form."""
    full = repo["full_name"]
    short_repo = {"id": repo["id"], "url": f"{base}/repos/{full}", "name": full.split("/", 1)[1]}
    return [
        {
            "url": f"{base}/repos/{full}/pulls/{number}",
            "id": number * 1000,
            "number": number,
            "head": {"ref": pull.get("head_ref", "feature"), "sha": head_sha, "repo": short_repo},
            "base": {
                "ref": pull.get("base_ref", repo["default_branch"]),
                "sha": pull.get("base_sha", "0" * 40),
                "repo": short_repo,
            },
        }
        for (name, number), pull in sorted(gh.pulls.items())
        if name == full.lower() and pull.get("head_sha") == head_sha and pull.get("state", "open") == "open"
    ]


def check_suite_json(gh: GitHubState, base: str, suite: CheckSuite) -> dict[str, Any]:
    repo = gh.repo_by_id(suite.repo_id)
    assert repo is not None
    full = repo["full_name"]
    runs = [r for r in gh.check_runs.values() if r.suite_id == suite.id]
    status, conclusion = suite_outcome(runs)
    url = f"{base}/repos/{full}/check-suites/{suite.id}"
    return {
        "id": suite.id,
        "node_id": node_id("CheckSuite", suite.id),
        "head_branch": suite.head_branch,
        "head_sha": suite.head_sha,
        "status": status,
        "conclusion": conclusion,
        "url": url,
        "before": None,
        "after": suite.head_sha,
        "pull_requests": pull_refs(gh, base, repo, suite.head_sha),
        "app": app_json(gh, base, gh.apps[suite.app_id]),
        "repository": repo_json(gh, base, repo),
        "created_at": suite.created_at,
        "updated_at": suite.updated_at,
        "rerequestable": True,
        "runs_rerequestable": True,
        "latest_check_runs_count": len(runs),
        "check_runs_url": f"{url}/check-runs",
        "head_commit": {"id": suite.head_sha, "tree_id": suite.head_sha, "message": ""},
    }


#: A suite's conclusion is its runs' worst, in this order (the stand-in's reading of GitHub).
WORST_FIRST = (
    "action_required",
    "cancelled",
    "timed_out",
    "failure",
    "stale",
    "neutral",
    "skipped",
    "success",
)


def suite_outcome(runs: list[CheckRun]) -> tuple[str, str | None]:
    if not runs:
        return "queued", None
    if any(r.status != "completed" for r in runs):
        return ("in_progress" if any(r.status == "in_progress" for r in runs) else "queued"), None
    found = {r.conclusion for r in runs}
    return "completed", next((c for c in WORST_FIRST if c in found), None)


def check_run_json(gh: GitHubState, base: str, run: CheckRun) -> dict[str, Any]:
    repo = gh.repo_by_id(run.repo_id)
    assert repo is not None
    full = repo["full_name"]
    url = f"{base}/repos/{full}/check-runs/{run.id}"
    suite = gh.check_suites[run.suite_id]
    output = run.output
    return {
        "id": run.id,
        "node_id": node_id("CheckRun", run.id),
        "name": run.name,
        "head_sha": run.head_sha,
        "external_id": run.external_id or "",
        "url": url,
        "html_url": f"https://github.com/{full}/runs/{run.id}",
        "details_url": run.details_url or f"https://github.com/{full}/runs/{run.id}",
        "status": run.status,
        "conclusion": run.conclusion,
        "started_at": run.started_at,
        "completed_at": run.completed_at,
        "output": {
            "title": output.get("title"),
            "summary": output.get("summary"),
            "text": output.get("text"),
            "annotations_count": len(run.annotations),
            "annotations_url": f"{url}/annotations",
        },
        "check_suite": {"id": suite.id},
        "app": app_json(gh, base, gh.apps[run.app_id]),
        "pull_requests": pull_refs(gh, base, repo, run.head_sha),
    }


def annotation_json(base: str, full: str, run: CheckRun, annotation: dict[str, Any]) -> dict[str, Any]:
    return {
        "path": annotation["path"],
        "blob_href": f"https://github.com/{full}/blob/{run.head_sha}/{annotation['path']}",
        "start_line": annotation["start_line"],
        "end_line": annotation["end_line"],
        "start_column": annotation.get("start_column"),
        "end_column": annotation.get("end_column"),
        "annotation_level": annotation["annotation_level"],
        "title": annotation.get("title", ""),
        "message": annotation["message"],
        "raw_details": annotation.get("raw_details", ""),
    }
