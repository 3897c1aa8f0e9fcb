"""A stand-in for the parts of GitHub's REST API v3 the middleware uses.

No GitHub is reachable here, so tests and the demo point the unmodified PyGithub client at
this. It answers with GitHub's paths, fields, status codes, error bodies (`{"message",
"documentation_url"}`) and Link pagination for: users, repositories (also by numeric id,
with redirects after a rename), pull requests, commit statuses, collaborators and issue
comments (repos.py); GitHub Apps, installations and their tokens (apps.py); the Checks API
(checks.py); the App's webhook deliveries (hooks.py, sent by hookshot.py); and the OAuth
web flow (oauth.py). Tokens are told apart as GitHub does (auth.py). It is not GitHub: no
rate limits, no GraphQL, no git, no events besides the webhooks the state sends.

This module wires the pieces into one Flask app, shared by every stand-in in the process
(each server hands its own state to the requests it serves), and keeps the loopback controls.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from flask import Flask, Response, g, jsonify, request

from sandbox.github import apps, checks, hooks, oauth, repos, web
from sandbox.github.render import user_json
from sandbox.github.state import GitHubState, Refused

__all__ = ["DOCS", "STATES", "GitHubState", "create_app", "user_json"]

DOCS = web.DOCS
STATES = repos.STATES

REPOSITORY_ID = re.compile(r"^/repositories/(\d+)(/.*)?$")

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class RepositoryIds:
    """Hand each request its server's state, and serve `/repositories/{id}/…` as
    `/repos/{owner}/{name}/…` (ids survive renames)."""

    def __init__(self, wsgi: WSGIApp, gh: GitHubState) -> None:
        self.wsgi = wsgi
        self.gh = gh

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        environ[web.STATE_KEY] = self.gh
        path = environ.get("PATH_INFO", "")
        found = REPOSITORY_ID.match(path)
        if found:
            environ["sandbox.github.path"] = path
            repo = self.gh.repo_by_id(int(found[1]))
            if repo is not None:
                environ["PATH_INFO"] = f"/repos/{repo['full_name']}{found[2] or ''}"
        return self.wsgi(environ, start_response)


_routes: Flask | None = None
_routes_lock = threading.Lock()


def routes() -> Flask:
    """The routing app, built once per process and shared by every stand-in: Werkzeug compiles
    each rule when it is added, which made starting a stand-in per test cost a quarter second."""
    global _routes
    with _routes_lock:
        if _routes is None:
            _routes = _build_routes()
        return _routes


def create_app(state: GitHubState | None = None) -> Flask:
    """A stand-in serving `state` (a new one if None); the state is in `app.extensions["github_state"]`."""
    app = Flask("sandbox.github")
    gh = state or GitHubState()
    app.extensions["github_state"] = gh
    app.wsgi_app = RepositoryIds(routes().wsgi_app, gh)  # type: ignore[method-assign]
    return app


def _build_routes() -> Flask:
    app = Flask("sandbox.github")
    for blueprint in (repos.bp, apps.bp, checks.bp, hooks.bp, oauth.bp):
        app.register_blueprint(blueprint)

    @app.errorhandler(Refused)
    def _refused(refusal: Refused) -> Response:
        return web.refused(refusal)

    @app.errorhandler(404)
    def _not_found(_error: Exception) -> Response:
        return web.error(404, "Not Found")

    @app.errorhandler(405)
    def _not_allowed(_error: Exception) -> Response:
        return web.error(404, "Not Found")

    @app.before_request
    def _outage() -> Response | None:
        if request.path.startswith("/_stand-in/"):
            return None
        gh = web.state()
        path = request.environ.get("sandbox.github.path", request.path)
        with gh.lock:
            gh.requests.append({"method": request.method, "path": path, "time": time.time()})
        if gh.delay > 0:
            time.sleep(gh.delay)
        if time.time() < gh.down_until:
            return web.error(503, "Service Unavailable")
        return None

    @app.after_request
    def _headers(response: Response) -> Response:
        if request.path.startswith(("/_stand-in/", "/login/")):
            return response
        response.headers["X-GitHub-Request-Id"] = f"STANDIN:{len(web.state().requests)}"
        response.headers["X-RateLimit-Limit"] = "5000"
        response.headers["X-RateLimit-Remaining"] = "4999"
        response.headers["X-RateLimit-Reset"] = str(int(time.time()) + 3600)
        who = g.get("caller")
        if who is not None and who.has_scopes:
            response.headers["X-OAuth-Scopes"] = ", ".join(who.scopes)
            response.headers["X-Accepted-OAuth-Scopes"] = g.get("accepted_scopes", "")
        return response

    # -- controls (loopback, no auth) --------------------------------------------------

    @app.post("/_stand-in/users")
    def control_user() -> tuple[str, int]:
        body = request.get_json(force=True)
        web.state().add_user(body["login"], body.get("token"))
        return "", 204

    @app.post("/_stand-in/repos")
    def control_repo() -> tuple[str, int]:
        body = dict(request.get_json(force=True))
        web.state().add_repo(body.pop("full_name"), **body)
        return "", 204

    @app.post("/_stand-in/repos/<owner>/<name>/pulls")
    def control_pull(owner: str, name: str) -> tuple[str, int]:
        body = dict(request.get_json(force=True))
        web.state().add_pull(f"{owner}/{name}", int(body.pop("number")), **body)
        return "", 204

    @app.get("/_stand-in/statuses")
    def control_statuses() -> Response:
        gh = web.state()
        with gh.lock:
            return jsonify({"statuses": list(gh.statuses)})

    @app.get("/_stand-in/requests")
    def control_requests() -> Response:
        gh = web.state()
        with gh.lock:
            return jsonify({"requests": list(gh.requests)})

    @app.get("/_stand-in/deliveries")
    def control_deliveries() -> Response:
        gh = web.state()
        with gh.lock:
            return jsonify({"deliveries": [hooks.delivery_json(d) for d in gh.deliveries_for()]})

    @app.patch("/_stand-in/config")
    def control_config() -> Response:
        gh = web.state()
        body = request.get_json(force=True)
        if "down_for" in body:
            gh.down_until = time.time() + float(body["down_for"])
        if "down_until" in body:
            gh.down_until = float(body["down_until"])
        if "delay" in body:
            gh.delay = float(body["delay"])
        if "deliveries_down" in body:
            gh.deliveries_down = bool(body["deliveries_down"])
        return jsonify(
            {"down_until": gh.down_until, "delay": gh.delay, "deliveries_down": gh.deliveries_down}
        )

    return app
