"""Puts the pages into the app: protections, blueprints, the signed-in viewer in every template,
and small HTML error pages for page routes (the API keeps its own JSON and plain errors)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Flask, Response, has_request_context, render_template
from werkzeug.exceptions import HTTPException

from middleware.errors import error_headers
from middleware.settings import Settings
from middleware.web import access, audit, auth, repositories, rights
from middleware.web.security import init_security
from middleware.web.sign_in_limit import SignInLimit

#: Serves the stylesheet and holds the templates every page blueprint renders.
assets = Blueprint(
    "web_static",
    __name__,
    static_folder="static",
    static_url_path="/assets",
    template_folder="templates",
)

HEADINGS = {
    400: ("Bad request", "The form could not be read; go back, reload the page and try again."),
    403: ("Not allowed", "You may not see or change this. Sign in with an account that may."),
    404: ("Not found", "There is nothing at this address."),
    405: ("Not allowed here", "This address does not answer that kind of request."),
    429: ("Too many attempts", "Too many sign-in attempts from your address; wait a minute and try again."),
}


def error_page(error: HTTPException) -> Response:
    """A small page for an error of a page route."""
    code = error.code or 500
    heading, message = HEADINGS.get(code, (error.name, "Something went wrong; try again later."))
    if code == 400 and "CSRF" in (error.description or ""):
        message = "The form had expired or was not sent from this site; reload the page and send it again."
    html = render_template("error.html", heading=heading, message=message)
    return Response(html, status=code, mimetype="text/html", headers=error_headers(error))


def register(app: Flask, settings: Settings) -> None:
    init_security(app, settings)
    app.extensions[auth.SIGN_IN_LIMIT] = SignInLimit(settings.redis_url or "memory://")
    app.extensions["firecrest_ci_rights"] = rights.read_with_sealed
    for blueprint in (assets, auth.bp, auth.signin, repositories.bp, audit.bp):
        app.register_blueprint(blueprint)

    @app.context_processor
    def _viewer() -> dict[str, Any]:
        return {"viewer": access.current_viewer() if has_request_context() else None}
