"""The stand-in's GitHub App endpoints: the App itself and its installations (JWT), installation
access tokens, an installation's repositories (installation token), and a user's
installations (a GitHub App's user token).
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, request

from sandbox.github import web
from sandbox.github.records import Installation, iso
from sandbox.github.render import app_json, installation_json, repo_json, role_permissions
from sandbox.github.state import Refused

bp = Blueprint("github_apps", __name__)

NOT_AN_APP_USER = (
    "You must authenticate with an access token authorized to a GitHub App in order to list installations"
)


def own_installation(installation_id: int) -> Installation:
    """The JWT's App's installation, or GitHub's 404 (another App's installations are not seen)."""
    app = web.jwt_app()
    inst = web.state().installations.get(installation_id)
    if inst is None or inst.app_id != app.id:
        raise Refused(404, "Not Found")
    return inst


@bp.get("/app")
def get_app() -> Response:
    return jsonify(app_json(web.state(), web.base(), web.jwt_app()))


@bp.get("/apps/<slug>")
def get_app_by_slug(slug: str) -> Response:
    gh = web.state()
    web.caller()  # bad credentials are refused here too, as everywhere on GitHub
    app = next((a for a in gh.apps.values() if a.slug == slug), None)
    return jsonify(app_json(gh, web.base(), app)) if app else web.error(404, "Not Found")


@bp.get("/app/installations")
def list_installations() -> Response:
    app = web.jwt_app()
    gh = web.state()
    with gh.lock:
        found = [
            installation_json(gh, web.base(), i) for i in gh.installations.values() if i.app_id == app.id
        ]
    return web.paginate(found)


@bp.get("/app/installations/<int:installation_id>")
def get_installation(installation_id: int) -> Response:
    inst = own_installation(installation_id)
    return jsonify(installation_json(web.state(), web.base(), inst))


@bp.delete("/app/installations/<int:installation_id>")
def delete_installation(installation_id: int) -> tuple[str, int]:
    inst = own_installation(installation_id)
    web.state().uninstall_app(inst.id, sender=web.state().apps[inst.app_id].owner)
    return "", 204


@bp.put("/app/installations/<int:installation_id>/suspended")
def suspend_installation(installation_id: int) -> tuple[str, int]:
    inst = own_installation(installation_id)
    web.state().suspend_installation(inst.id, sender=web.state().apps[inst.app_id].owner)
    return "", 204


@bp.delete("/app/installations/<int:installation_id>/suspended")
def unsuspend_installation(installation_id: int) -> tuple[str, int]:
    inst = own_installation(installation_id)
    web.state().unsuspend_installation(inst.id, sender=web.state().apps[inst.app_id].owner)
    return "", 204


@bp.post("/app/installations/<int:installation_id>/access_tokens")
def create_access_token(installation_id: int) -> Response:
    inst = own_installation(installation_id)
    gh = web.state()
    body = request.get_json(silent=True) or {}
    names, ids, permissions = body.get("repositories"), body.get("repository_ids"), body.get("permissions")
    if (
        (names is not None and not (isinstance(names, list) and all(isinstance(n, str) for n in names)))
        or (ids is not None and not (isinstance(ids, list) and all(isinstance(n, int) for n in ids)))
        or (permissions is not None and not isinstance(permissions, dict))
    ):
        return web.error(422, "Invalid request.")
    token = gh.issue_installation_token(
        inst.id, permissions=permissions, repositories=names, repository_ids=ids
    )
    answer: dict[str, Any] = {
        "token": token.token,
        "expires_at": iso(token.expires_at),
        "permissions": token.permissions,
        "repository_selection": "selected" if token.repo_ids is not None else inst.repository_selection,
    }
    if token.repo_ids is not None:
        answer["repositories"] = [
            repo_json(gh, web.base(), r) for r in gh.installation_repos(inst) if r["id"] in token.repo_ids
        ]
    return web.answer(answer, 201)


def _installation_on(account: str, organization: bool) -> Response:
    app = web.jwt_app()
    gh = web.state()
    user = gh.users.get(account.lower())
    if user is None or (organization and user.get("type") != "Organization"):
        return web.error(404, "Not Found")
    inst = next(
        (i for i in gh.installations.values() if i.app_id == app.id and i.account == account.lower()), None
    )
    return jsonify(installation_json(gh, web.base(), inst)) if inst else web.error(404, "Not Found")


@bp.get("/orgs/<org>/installation")
def org_installation(org: str) -> Response:
    return _installation_on(org, organization=True)


@bp.get("/users/<login>/installation")
def user_installation(login: str) -> Response:
    return _installation_on(login, organization=False)


@bp.get("/repos/<owner>/<name>/installation")
def repo_installation(owner: str, name: str) -> Response:
    app = web.jwt_app()
    gh = web.state()
    full = f"{owner}/{name}".lower()
    repo = gh.find_repo(full) or (gh.repo_by_id(gh.redirects[full]) if full in gh.redirects else None)
    inst = gh.installation_for(app.id, repo) if repo else None
    return jsonify(installation_json(gh, web.base(), inst)) if inst else web.error(404, "Not Found")


@bp.get("/installation/repositories")
def installation_repositories() -> Response:
    who = web.caller()
    if who.kind != "installation" or who.installation is None or who.installation_token is None:
        return web.error(403, "This endpoint requires you to be authenticated as an installation.")
    gh = web.state()
    narrowed = who.installation_token.repo_ids
    repos = [r for r in gh.installation_repos(who.installation) if narrowed is None or r["id"] in narrowed]
    selection = "selected" if narrowed is not None else who.installation.repository_selection
    return web.paginate(
        [repo_json(gh, web.base(), r) for r in repos], wrap="repositories", repository_selection=selection
    )


@bp.delete("/installation/token")
def revoke_installation_token() -> tuple[str, int] | Response:
    who = web.caller()
    if who.kind != "installation" or who.installation_token is None:
        return web.error(401, "Bad credentials")
    gh = web.state()
    with gh.lock:
        gh.installation_tokens.pop(who.installation_token.token, None)
    return "", 204


def _user_installations() -> list[tuple[Installation, list[dict[str, Any]]]]:
    """The App's installations the user may see, each with the repositories the user can access."""
    who = web.caller()
    if who.kind != "app_user" or who.app is None or who.login is None:
        raise Refused(403, NOT_AN_APP_USER)
    gh = web.state()
    found = []
    with gh.lock:
        for inst in gh.installations.values():
            if inst.app_id != who.app.id:
                continue
            repos = [r for r in gh.installation_repos(inst) if gh.role_of(r, who.login) is not None]
            if repos or inst.account == who.login:
                found.append((inst, repos))
    return found


@bp.get("/user/installations")
def user_installations() -> Response:
    gh = web.state()
    found = [installation_json(gh, web.base(), inst) for inst, _repos in _user_installations()]
    return web.paginate(found, wrap="installations")


@bp.get("/user/installations/<int:installation_id>/repositories")
def user_installation_repositories(installation_id: int) -> Response:
    gh = web.state()
    who = web.caller()
    for inst, repos in _user_installations():
        if inst.id == installation_id:
            shown = [repo_json(gh, web.base(), r, role_permissions(gh.role_of(r, who.login))) for r in repos]
            return web.paginate(shown, wrap="repositories", repository_selection=inst.repository_selection)
    return web.error(404, "Not Found")
