"""The OAuth web flow on the GitHub stand-in, for GitHub Apps (`ghu_` user tokens, refreshable)
and classic OAuth Apps (`gho_` tokens with scopes).

`/login/oauth/authorize` shows a plain HTML sign-in form (no JavaScript, so any browser or
form-posting client can drive it) whose "Authorize" button redirects to the client's
redirect URI with a one-time code; `/login/oauth/access_token` trades the code, answering
errors with 200 and an `error` field as GitHub does.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from flask import Blueprint, Response, jsonify, request
from markupsafe import escape

from sandbox.github import web
from sandbox.github.records import OAuthCode, UserToken

bp = Blueprint("github_oauth", __name__)

CODE_TTL = 600.0
REFRESH_TTL = 15_897_600.0
TROUBLESHOOTING = "https://docs.github.com/apps/oauth-apps/maintaining-oauth-apps/troubleshooting-oauth-app-access-token-request-errors"


@dataclass(frozen=True)
class Client:
    """Who asks for the user's consent: a GitHub App (app_id set) or a classic OAuth App."""

    client_id: str
    client_secret: str
    name: str
    callback_url: str | None
    app_id: int | None


def find_client(client_id: str) -> Client | None:
    gh = web.state()
    app = gh.app_by_client_id(client_id)
    if app is not None:
        return Client(app.client_id, app.client_secret, app.name, app.callback_url, app.id)
    oauth_app = gh.oauth_apps.get(client_id)
    if oauth_app is not None:
        return Client(
            oauth_app.client_id, oauth_app.client_secret, oauth_app.name, oauth_app.callback_url, None
        )
    return None


def page(title: str, body: str, status: int = 200) -> Response:
    html = (
        '<!doctype html>\n<html lang="en">\n<head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title></head>\n<body>\n<main>\n<h1>{escape(title)}</h1>\n{body}\n</main>\n"
        "</body>\n</html>\n"
    )
    return Response(html, status=status, mimetype="text/html")


def found(location: str) -> Response:
    """A 302 to `location` (Flask's `redirect` is typed as Werkzeug's response)."""
    return Response(status=302, headers={"Location": location})


def with_query(url: str, params: dict[str, str]) -> str:
    return f"{url}{'&' if '?' in url else '?'}{urlencode(params)}"


def scopes_of(raw: str | None) -> list[str]:
    return [s for s in (raw or "").replace(",", " ").split() if s]


def resolve_redirect(client: Client, given: str | None, state: str | None) -> str | Response:
    """The URI to send the user back to, or the answer for a bad one (GitHub's mismatch redirect)."""
    if not given:
        return client.callback_url or page("GitHub stand-in: no callback URL", "<p>No redirect URI.</p>", 400)
    if client.callback_url and not given.startswith(client.callback_url):
        params = {
            "error": "redirect_uri_mismatch",
            "error_description": "The redirect_uri is not under the application's callback URL.",
            "error_uri": TROUBLESHOOTING,
        }
        if state:
            params["state"] = state
        return found(with_query(client.callback_url, params))
    return given


def issue_code(client: Client, login: str, redirect_uri: str | None, scopes: list[str]) -> str:
    gh = web.state()
    code = secrets.token_hex(10)
    with gh.lock:
        gh.oauth_codes[code] = OAuthCode(
            code, client.client_id, login, redirect_uri, scopes, time.time() + CODE_TTL
        )
    return code


def sign_in_form(client: Client, params: dict[str, str], problem: str = "", status: int = 200) -> Response:
    hidden = "\n".join(
        f'<input type="hidden" name="{escape(k)}" value="{escape(v)}">'
        for k, v in params.items()
        if k != "login"
    )
    note = f'<p role="alert">{escape(problem)}</p>\n' if problem else ""
    scopes = scopes_of(params.get("scope"))
    asks = f" with the scopes {escape(', '.join(scopes))}" if scopes else ""
    body = (
        f"<p>Sign in to authorize <strong>{escape(client.name)}</strong> to act for you{asks}.</p>\n{note}"
        '<form method="post" action="/login/oauth/authorize">\n'
        '<label for="login">Username</label>\n'
        f'<input id="login" name="login" type="text" autocomplete="username" required '
        f'value="{escape(params.get("login", ""))}">\n'
        f"{hidden}\n"
        '<button type="submit">Authorize</button>\n'
        "</form>"
    )
    return page("GitHub stand-in: sign in", body, status)


def _consent(params: dict[str, str], login: str | None) -> Response:
    client = find_client(params.get("client_id", ""))
    if client is None:
        return page("GitHub stand-in: not found", "<p>No application has this client ID.</p>", 404)
    target = resolve_redirect(client, params.get("redirect_uri"), params.get("state"))
    if isinstance(target, Response):
        return target
    if login is None:
        return sign_in_form(client, params)
    if login.lower() not in web.state().users:
        return sign_in_form(client, params, "Incorrect username.", 401)
    code = issue_code(
        client, login.lower(), params.get("redirect_uri") or None, scopes_of(params.get("scope"))
    )
    answer = {"code": code, **({"state": params["state"]} if params.get("state") else {})}
    return found(with_query(target, answer))


FIELDS = ("client_id", "redirect_uri", "state", "scope", "login")


@bp.get("/login/oauth/authorize")
def authorize() -> Response:
    """The consent page; someone already signed in (`state.oauth_login`) goes straight back."""
    params = {k: request.args[k] for k in FIELDS if k in request.args}
    return _consent(params, web.state().oauth_login)


@bp.post("/login/oauth/authorize")
def authorize_submit() -> Response:
    params = {k: request.form[k] for k in FIELDS if k in request.form}
    return _consent(params, params.get("login", "").strip() or None)


def token_answer(body: dict[str, Any]) -> Response:
    """JSON when asked for it, else form-encoded, as GitHub's token endpoint answers."""
    if "application/json" in request.headers.get("Accept", ""):
        return jsonify(body)
    return Response(
        urlencode({k: str(v) for k, v in body.items()}), mimetype="application/x-www-form-urlencoded"
    )


def oauth_error(code: str, description: str) -> Response:
    return token_answer({"error": code, "error_description": description, "error_uri": TROUBLESHOOTING})


def user_token(client: Client, login: str, scopes: list[str]) -> dict[str, Any]:
    """Mint a user token for `client`: a GitHub App's expires and comes with a refresh token."""
    gh = web.state()
    with gh.lock:
        if client.app_id is None:
            token = UserToken(
                f"gho_{secrets.token_urlsafe(27)[:36]}", login, client.client_id, None, scopes, None
            )
            gh.user_tokens[token.token] = token
            return {"access_token": token.token, "scope": ",".join(scopes), "token_type": "bearer"}
        now = time.time()
        token = UserToken(
            f"ghu_{secrets.token_urlsafe(27)[:36]}",
            login,
            client.client_id,
            client.app_id,
            [],
            now + gh.user_token_ttl,
        )
        refresh = UserToken(
            f"ghr_{secrets.token_urlsafe(60)[:76]}",
            login,
            client.client_id,
            client.app_id,
            [],
            now + REFRESH_TTL,
        )
        gh.user_tokens[token.token] = token
        gh.refresh_tokens[refresh.token] = refresh
        return {
            "access_token": token.token,
            "expires_in": int(gh.user_token_ttl),
            "refresh_token": refresh.token,
            "refresh_token_expires_in": int(REFRESH_TTL),
            "scope": "",
            "token_type": "bearer",
        }


@bp.post("/login/oauth/access_token")
def access_token() -> Response:
    body = request.get_json(silent=True) if request.is_json else None
    params: dict[str, Any] = {**request.args, **request.form, **(body if isinstance(body, dict) else {})}
    client = find_client(str(params.get("client_id", "")))
    if client is None or not secrets.compare_digest(
        str(params.get("client_secret", "")), client.client_secret
    ):
        return oauth_error(
            "incorrect_client_credentials", "The client_id and/or client_secret are not right."
        )
    gh = web.state()
    if params.get("grant_type") == "refresh_token":
        with gh.lock:
            refresh = gh.refresh_tokens.pop(str(params.get("refresh_token", "")), None)
        if (
            refresh is None
            or refresh.client_id != client.client_id
            or (refresh.expires_at or 0) <= time.time()
        ):
            return oauth_error("bad_refresh_token", "The refresh token is not right or has expired.")
        return token_answer(user_token(client, refresh.login, []))
    with gh.lock:
        grant = gh.oauth_codes.pop(str(params.get("code", "")), None)
    if grant is None or grant.client_id != client.client_id or grant.expires_at <= time.time():
        return oauth_error("bad_verification_code", "The code is not right or has expired.")
    redirect_uri = params.get("redirect_uri")
    if redirect_uri and grant.redirect_uri and redirect_uri != grant.redirect_uri:
        return oauth_error(
            "redirect_uri_mismatch", "The redirect_uri differs from the one the code was sent to."
        )
    return token_answer(user_token(client, grant.login, grant.scopes))
