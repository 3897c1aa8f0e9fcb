"""Signing in and out: operators with the admin credential, everyone else with GitHub (OAuth).

`signin` holds the routes that try credentials or codes; its hook counts every attempt per
client address (sign_in_limit) and answers 429 with Retry-After once they are used up. The
OAuth `state` is checked against the session, and a fresh session is started on every sign-in.
"""

from __future__ import annotations

import hmac
import secrets

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from werkzeug.exceptions import TooManyRequests
from werkzeug.wrappers import Response as BaseResponse

from middleware.logs import logger
from middleware.services import services
from middleware.web import access
from middleware.web.github_signin import SignInFailed, authorize_url, exchange_code, signed_in_user
from middleware.web.rights import managed_repository_ids

bp = Blueprint("web_auth", __name__)
signin = Blueprint("web_signin", __name__)

#: The app extension holding the SignInLimit (set by middleware.web.pages).
SIGN_IN_LIMIT = "firecrest_ci_sign_in_limit"
_STATE = "oauth_state"
_NEXT = "oauth_next"


def safe_next(target: str | None) -> str:
    """Where to go after signing in: a path on this site only, never elsewhere."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return url_for("web_repositories.index")


def _github_enabled() -> bool:
    settings = services().settings
    return bool(settings.github_oauth_client_id and settings.github_oauth_client_secret)


def _callback_url() -> str:
    return services().settings.public_url.rstrip("/") + url_for("web_signin.github_callback")


def _form(problem: str = "", github_problem: str = "", status: int = 200) -> Response:
    html = render_template(
        "sign_in.html",
        problem=problem,
        github_problem=github_problem,
        github=_github_enabled(),
        next=safe_next(request.values.get("next")),
    )
    return Response(html, status=status, mimetype="text/html")


@signin.before_request
def _count_attempt() -> None:
    wait = current_app.extensions[SIGN_IN_LIMIT].hit(request.remote_addr or "")
    if wait is not None:
        raise TooManyRequests(retry_after=wait)


@bp.get("/sign-in")
def sign_in() -> Response:
    return _form()


@signin.post("/sign-in")
def sign_in_operator() -> BaseResponse:
    given = request.form.get("admin_token", "")
    expected = services().settings.admin_token
    if not given or not hmac.compare_digest(given.encode(), expected.encode()):
        logger().info("operator sign-in refused", extra={"address": request.remote_addr})
        return _form(problem="That is not the admin credential.", status=401)
    access.start_session(access.Viewer("operator", "operator", None))
    return redirect(safe_next(request.form.get("next")))


@signin.post("/sign-in/github")
def github_start() -> BaseResponse:
    if not _github_enabled():
        abort(404)
    state = secrets.token_urlsafe(24)
    session[_STATE] = state
    session[_NEXT] = safe_next(request.form.get("next"))
    return redirect(authorize_url(services().settings, _callback_url(), state))


@signin.get("/sign-in/github/callback")
def github_callback() -> BaseResponse:
    if not _github_enabled():
        abort(404)
    expected = session.pop(_STATE, None)
    target = safe_next(session.pop(_NEXT, None))
    state = request.args.get("state", "")
    if not isinstance(expected, str) or not hmac.compare_digest(state.encode(), expected.encode()):
        return _form(
            github_problem="The GitHub sign-in expired or was not started here; try again.", status=400
        )
    if request.args.get("error") or not request.args.get("code"):
        return _form(github_problem="GitHub did not sign you in (the request was denied).", status=400)
    svc = services()
    try:
        token = exchange_code(svc.settings, request.args["code"], _callback_url())
        user = signed_in_user(svc.settings, token)
        managed = managed_repository_ids(token)
    except SignInFailed as error:
        return _form(github_problem=str(error), status=502)
    access.start_session(
        access.Viewer("github", user.login, user.user_id), token_sealed=svc.box.seal(token), managed=managed
    )
    logger().info("GitHub sign-in", extra={"login": user.login, "user_id": user.user_id})
    return redirect(target)


@bp.post("/sign-out")
def sign_out() -> BaseResponse:
    access.end_session()
    return redirect(url_for("web_auth.sign_in"))
