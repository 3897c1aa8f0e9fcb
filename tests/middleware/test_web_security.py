"""The pages' protections: CSRF on forms only, session cookies, the sign-in rate limit, headers."""

from __future__ import annotations

import datetime as dt
import uuid
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from middleware.services import EXTENSION
from middleware.web.security import session_key
from tests.conftest import service_url
from tests.middleware.conftest import ADMIN, SECRET_KEY, admin, make_app, repository_body
from tests.middleware.web_helpers import csrf_token, pages_app, post_form, register_api, sign_in_operator


@pytest.fixture
def app(tmp_path: Path) -> Any:
    application = pages_app(tmp_path, github_url="https://github.example.org")
    yield application
    application.extensions[EXTENSION].db.dispose()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def test_the_session_key_is_derived_for_its_purpose_never_the_key_itself(app):
    key = app.config["SECRET_KEY"]
    assert key == session_key(SECRET_KEY)
    assert SECRET_KEY.encode() not in key and key != SECRET_KEY
    assert session_key(SECRET_KEY + "x") != key


def test_every_page_has_a_strict_content_security_policy(client):
    sign_in = client.get("/sign-in")
    policy = sign_in.headers["Content-Security-Policy"]
    assert policy == (
        "default-src 'none'; style-src 'self'; img-src 'self'; "
        "form-action 'self' https://github.example.org; frame-ancestors 'none'; base-uri 'none'"
    )
    assert sign_in.headers["X-Content-Type-Options"] == "nosniff"
    assert sign_in.headers["Referrer-Policy"] == "same-origin"
    assert "<script" not in sign_in.get_data(as_text=True)
    sign_in_operator(client)
    repo = register_api(client)
    for path in ("/repositories", f"/repositories/{repo['id']}", "/repositories/new", "/audit", "/nowhere"):
        answer = client.get(path)
        if path != "/nowhere":
            assert answer.headers["Content-Security-Policy"] == policy, path
        assert answer.headers["X-Content-Type-Options"] == "nosniff", path
    css = client.get("/assets/pages.css")
    assert css.status_code == 200 and "focus-visible" in css.get_data(as_text=True)


def test_session_cookies_are_secure_httponly_lax_and_expire(tmp_path):
    application = pages_app(tmp_path, session_cookie_secure=True, session_lifetime=600)
    client = application.test_client()
    page = client.get("/sign-in", base_url="https://localhost").get_data(as_text=True)
    token = page.split('name="csrf_token" value="')[1].split('"')[0]
    answer = client.post(
        "/sign-in",
        data={"admin_token": ADMIN, "csrf_token": token},
        base_url="https://localhost",
        headers={"Referer": "https://localhost/sign-in"},  # Flask-WTF checks it over HTTPS
    )
    assert answer.status_code == 302, answer.get_data(as_text=True)
    cookie = next(v for v in answer.headers.getlist("Set-Cookie") if v.startswith("firecrest_ci_session="))
    assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    expires = parsedate_to_datetime(cookie.split("Expires=")[1].split(";")[0])
    assert 590 <= (expires - dt.datetime.now(dt.UTC)).total_seconds() <= 601
    assert ADMIN not in cookie


def test_forms_without_their_csrf_token_are_refused(client):
    refused = client.post("/sign-in", data={"admin_token": ADMIN})
    assert refused.status_code == 400
    assert "reload the page" in refused.get_data(as_text=True)
    assert client.get("/repositories").status_code == 302  # not signed in
    sign_in_operator(client)
    repo = register_api(client)
    for path, data in (
        (f"/repositories/{repo['id']}/settings", {"default_account": "stolen", "firecrest_client_id": "x"}),
        (f"/repositories/{repo['id']}/webhook-secret", {}),
        (f"/repositories/{repo['id']}/pipelines", {"name": "evil", "entrypoint": "a.yml", "system": "s"}),
        ("/sign-out", {}),
    ):
        assert client.post(path, data=data).status_code == 400, path
        assert client.post(path, data={**data, "csrf_token": "forged"}).status_code == 400, path
    again = client.get(f"/api/repositories/{repo['id']}", headers=admin()).get_json()
    assert again["default_account"] == "proj42" and [p["name"] for p in again["pipelines"]] == ["cpu"]
    assert client.get("/repositories").status_code == 200  # still signed in


def test_the_json_api_and_machine_routes_need_no_csrf_token(client):
    sign_in_operator(client)  # a browser session does not change what the API needs
    made = client.post("/api/repositories", json=repository_body(), headers=admin())
    assert made.status_code == 201
    assert (
        client.patch(
            f"/api/repositories/{made.get_json()['id']}", json={"default_account": "p2"}, headers=admin()
        ).status_code
        == 200
    )
    assert client.get("/openapi.json").status_code == 200
    assert client.get("/healthz").status_code == 200
    hook = client.post("/webhooks/github", data=b"{}", headers={"Content-Type": "application/json"})
    assert hook.status_code != 400 or b"CSRF" not in hook.data
    missing = client.get("/api/repositories/999999", headers=admin())
    assert missing.status_code == 404 and missing.is_json  # the API keeps its JSON errors


def test_sign_in_with_a_wrong_credential_says_so_without_echoing_it(client, caplog, capsys):
    caplog.set_level("DEBUG")
    answer = post_form(client, "/sign-in", {"admin_token": "wrong-guess-123"})
    assert "wrong-guess-123" not in caplog.text + "".join(capsys.readouterr())
    assert answer.status_code == 401
    html = answer.get_data(as_text=True)
    assert "not the admin credential" in html and "wrong-guess-123" not in html
    assert 'id="admin_token-error"' in html


def test_sign_in_is_rate_limited_per_address_with_a_readable_page(client):
    for _ in range(10):
        assert post_form(client, "/sign-in", {"admin_token": "guess"}).status_code == 401
    limited = post_form(client, "/sign-in", {"admin_token": ADMIN})
    assert limited.status_code == 429
    html = limited.get_data(as_text=True)
    assert "<h1>Too many attempts</h1>" in html and "<title>" in html
    assert 1 <= int(limited.headers["Retry-After"]) <= 60
    assert client.get("/repositories").status_code == 302  # the right credential did not get in
    other = client.post(
        "/sign-in",
        data={"admin_token": ADMIN, "csrf_token": csrf_token(client)},
        environ_base={"REMOTE_ADDR": "192.0.2.7"},
    )
    assert other.status_code == 302  # another address is not held back
    assert client.get("/api/repositories", headers=admin()).status_code == 200


def _guess_until_limited(client: FlaskClient, address: str) -> int:
    """Wrong guesses from `address` until the 429; how many were answered before it."""
    for tried in range(20):
        answer = client.post(
            "/sign-in",
            data={"admin_token": "guess", "csrf_token": csrf_token(client)},
            environ_base={"REMOTE_ADDR": address},
        )
        if answer.status_code == 429:
            return tried
        assert answer.status_code == 401
    raise AssertionError("never limited")


def test_web_replicas_share_one_sign_in_count_in_redis(tmp_path):
    redis_url = service_url("TEST_REDIS_URL").rsplit("/", 1)[0] + "/9"
    address = f"198.51.100.{uuid.uuid4().int % 250 + 1}-{uuid.uuid4().hex[:6]}"  # a count of its own
    replicas = [
        pages_app(tmp_path / name, redis_url=redis_url, data_dir=tmp_path / name) for name in ("a", "b")
    ]
    one, two = (replica.test_client() for replica in replicas)
    for _ in range(6):
        guess = one.post(
            "/sign-in",
            data={"admin_token": "guess", "csrf_token": csrf_token(one)},
            environ_base={"REMOTE_ADDR": address},
        )
        assert guess.status_code == 401
    assert _guess_until_limited(two, address) == 4  # the other replica counted those six
    for replica in replicas:
        replica.extensions[EXTENSION].db.dispose()


def test_sign_in_keeps_its_limit_while_redis_is_away(tmp_path, capfd):
    application = pages_app(tmp_path, redis_url="redis://127.0.0.1:9/0")  # nothing listens there
    client = application.test_client()
    assert _guess_until_limited(client, "192.0.2.9") == 10
    assert "sign-in limit: Redis is away, counting in this process" in capfd.readouterr().err
    assert client.get("/healthz").status_code == 200
    application.extensions[EXTENSION].db.dispose()


def _guesses_behind_a_front(client: FlaskClient, forwarded_for: str) -> int:
    """Wrong guesses that reach the app from nginx's address for one client, until the 429."""
    for tried in range(20):
        answer = client.post(
            "/sign-in",
            data={"admin_token": "guess", "csrf_token": csrf_token(client)},
            # Over HTTPS Flask-WTF wants a same-origin Referer, as browsers send one.
            headers={
                "X-Forwarded-For": forwarded_for,
                "X-Forwarded-Proto": "https",
                "Referer": "https://localhost/sign-in",
            },
            environ_base={"REMOTE_ADDR": "127.0.0.1"},
        )
        if answer.status_code == 429:
            return tried
        assert answer.status_code == 401
    raise AssertionError("never limited")


def test_behind_the_front_the_sign_in_limit_counts_each_client_not_nginx(tmp_path):
    application = pages_app(tmp_path, proxy_count=1)
    client = application.test_client()
    assert _guesses_behind_a_front(client, "203.0.113.5") == 10
    # Another client behind the same nginx still has all its attempts.
    assert _guesses_behind_a_front(client, "203.0.113.6") == 10
    application.extensions[EXTENSION].db.dispose()


def test_without_a_front_a_forged_forwarded_for_does_not_reset_the_count(client):
    assert _guesses_behind_a_front(client, "203.0.113.5") == 10
    assert _guesses_behind_a_front(client, "203.0.113.99") == 0  # still nginx's (the peer's) count


def test_webhooks_and_the_api_carry_no_session_cookie_and_pay_for_none(client, monkeypatch):
    from flask.sessions import SecureCookieSessionInterface

    built: list[str] = []
    real = SecureCookieSessionInterface.get_signing_serializer
    monkeypatch.setattr(
        SecureCookieSessionInterface,
        "get_signing_serializer",
        lambda self, app: built.append("signer") or real(self, app),
    )
    hook = client.post("/webhooks/github", data=b"{}", headers={"Content-Type": "application/json"})
    listed = client.get("/api/repositories", headers=admin())
    assert listed.status_code == 200
    for answer in (hook, listed):
        assert "Set-Cookie" not in answer.headers and "Cookie" not in answer.headers.get("Vary", "")
        assert "X-RateLimit-Limit" not in answer.headers
    assert built == []  # no request without a cookie built the signer
    sign_in_operator(client)
    assert client.get("/repositories").status_code == 200 and built  # the pages' sessions still work


def test_sign_out_ends_the_session(client):
    sign_in_operator(client)
    assert client.get("/repositories").status_code == 200
    out = post_form(client, "/sign-out", {}, page="/repositories")
    assert out.status_code == 302
    answer = client.get("/repositories")
    assert answer.status_code == 302 and "/sign-in" in answer.headers["Location"]


def test_after_sign_in_it_goes_back_only_to_a_page_of_this_site(client):
    for target, expected in (
        ("/audit", "/audit"),
        ("//evil.example/x", "/"),
        ("https://evil.example/", "/"),
        ("/\\evil.example", "/"),
    ):
        answer = post_form(client, "/sign-in", {"admin_token": ADMIN, "next": target})
        assert answer.headers["Location"] == expected, target


def test_error_pages_are_small_html_pages(client):
    sign_in_operator(client)
    missing = client.get("/repositories/424242")
    assert missing.status_code == 404 and missing.mimetype == "text/html"
    assert "<h1>Not found</h1>" in missing.get_data(as_text=True)


def test_nobody_signed_in_is_sent_to_the_sign_in_page(client):
    for path in ("/", "/repositories", "/repositories/1", "/repositories/new", "/audit"):
        answer = client.get(path)
        assert answer.status_code == 302 and answer.headers["Location"].startswith("/sign-in"), path
    assert client.post("/repositories/1/settings", data={"csrf_token": csrf_token(client)}).status_code == 302


def test_the_app_without_pages_settings_still_builds(tmp_path):
    application = make_app(tmp_path, f"sqlite:///{tmp_path / 'x.db'}")
    assert application.config["SESSION_COOKIE_SECURE"] is True
