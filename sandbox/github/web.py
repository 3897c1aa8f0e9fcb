"""Request helpers every route module of the GitHub stand-in shares.

GitHub's error body, Link pagination, the caller (resolved once per request) and the
repository lookup with its access check and rename redirects live here, so each route
module only says what its endpoints need.
"""

from __future__ import annotations

from typing import Any, cast
from urllib.parse import urlencode

from flask import Response, current_app, g, jsonify, request

from sandbox.github import auth
from sandbox.github.records import App
from sandbox.github.render import role_permissions
from sandbox.github.state import GitHubState, Refused

DOCS = "https://docs.github.com/rest"
REDIRECT_DOCS = "https://docs.github.com/rest/guides/best-practices-for-using-the-rest-api#follow-redirects"


#: Where each server puts its state in the WSGI environ (the routing app is shared).
STATE_KEY = "sandbox.github.state"


def state() -> GitHubState:
    found = request.environ.get(STATE_KEY)
    return cast(GitHubState, found if found is not None else current_app.extensions["github_state"])


def base() -> str:
    return request.host_url.rstrip("/")


def error(status: int, message: str, **extra: Any) -> Response:
    response = jsonify({"message": message, "documentation_url": DOCS, **extra})
    response.status_code = status
    return response


def refused(refusal: Refused) -> Response:
    return error(refusal.status, refusal.message)


def answer(body: Any, status: int = 200) -> Response:
    response = jsonify(body)
    response.status_code = status
    return response


def validation_failed(message: str = "Validation Failed", **extra: Any) -> Response:
    return error(422, message, **extra)


def caller() -> auth.Caller:
    """The request's credentials; raises Refused for bad ones (answered by the app's handler)."""
    if "caller" not in g:
        g.caller = auth.identify(state(), request.headers.get("Authorization", ""))
    return cast(auth.Caller, g.caller)


def jwt_app() -> App:
    """The App authenticating with a JWT; other credentials get GitHub's 401."""
    who = caller()
    if who.kind != "app" or who.app is None:
        raise Refused(401, auth.UNDECODABLE)
    return who.app


def int_arg(name: str, default: int, low: int = 1, high: int = 100) -> int:
    try:
        value = int(request.args.get(name, default))
    except ValueError:
        value = default
    return max(low, min(value, high))


def paginate(items: list[dict[str, Any]], wrap: str | None = None, **extra: Any) -> Response:
    """One page of `items`, with GitHub's Link header; `wrap` names the list in an object body."""
    per_page = int_arg("per_page", 30)
    page = int_arg("page", 1, high=10**6)
    chunk = items[(page - 1) * per_page : page * per_page]
    body: Any = {"total_count": len(items), **extra, wrap: chunk} if wrap else chunk
    response = jsonify(body)
    last = max(1, -(-len(items) // per_page))
    links = []
    kept = [(k, v) for k, v in request.args.items(multi=True) if k not in ("page", "per_page")]
    url = f"{base()}{request.path}?{urlencode([*kept, ('per_page', per_page)])}"
    if page < last:
        links.append(f'<{url}&page={page + 1}>; rel="next"')
        links.append(f'<{url}&page={last}>; rel="last"')
    if page > 1:
        links.append(f'<{url}&page={page - 1}>; rel="prev"')
        links.append(f'<{url}&page=1>; rel="first"')
    if links:
        response.headers["Link"] = ", ".join(links)
    return response


def repo_for(
    owner: str, name: str, permissions: str | tuple[str, ...] = "metadata", level: str = "read"
) -> dict[str, Any] | Response:
    """The repository if the caller may use it so, else GitHub's answer (404, 403, or a redirect).

    An old name of a renamed or transferred repository answers 301 (GET) or 307 (other
    methods) to `/repositories/{id}/…`, as GitHub's API does.
    """
    gh = state()
    needed = (permissions,) if isinstance(permissions, str) else permissions
    g.accepted_scopes = auth.accepted_scopes(needed)
    who = caller()
    full = f"{owner}/{name}"
    repo = gh.find_repo(full)
    moved = (
        gh.repo_by_id(gh.redirects[full.lower()]) if repo is None and full.lower() in gh.redirects else None
    )
    target = repo or moved
    if target is None:
        return error(404, "Not Found")
    try:
        auth.check_repo(gh, who, target, needed, "read" if moved else level)
    except Refused as refusal:
        return refused(refusal)
    if moved is not None:
        rest = request.path.split("/", 4)[4] if request.path.count("/") >= 4 else ""
        location = f"{base()}/repositories/{moved['id']}{'/' + rest if rest else ''}"
        if request.query_string:
            location += f"?{request.query_string.decode()}"
        status, message = (
            (301, "Moved Permanently") if request.method == "GET" else (307, "Temporary Redirect")
        )
        response = jsonify({"message": message, "url": location, "documentation_url": REDIRECT_DOCS})
        response.status_code = status
        response.headers["Location"] = location
        return response
    return target


def user_permissions(repo: dict[str, Any]) -> dict[str, bool] | None:
    """The `permissions` object a repository carries for a signed-in user (none for others)."""
    who = caller()
    if not who.is_user:
        return None
    return role_permissions(state().role_of(repo, who.login))
