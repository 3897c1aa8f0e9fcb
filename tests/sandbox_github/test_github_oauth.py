"""The OAuth web flow on the stand-in: the sign-in page (httpx, and a real headless browser
when one is installed), code for token (form and JSON, PyGithub's ApplicationOAuth), and
what the user tokens may do (installations, repository permissions by role)."""

from __future__ import annotations

import re
import shutil
from html.parser import HTMLParser
from urllib.parse import parse_qs, urlsplit

import pytest
from github import Auth, BadCredentialsException, GithubException

CALLBACK = "http://127.0.0.1:9/callback"


class FormReader(HTMLParser):
    """The fields of the page's form, and whether the login input has a label."""

    def __init__(self) -> None:
        super().__init__()
        self.fields: dict[str, str] = {}
        self.labels: set[str] = set()
        self.action = ""

    def handle_starttag(self, tag, attrs):
        found = dict(attrs)
        if tag == "form":
            self.action = found.get("action") or ""
        if tag == "input" and found.get("name"):
            self.fields[found["name"]] = found.get("value") or ""
        if tag == "label":
            self.labels.add(found.get("for") or "")


def read_form(html):
    reader = FormReader()
    reader.feed(html)
    return reader


def sign_in(world, client_id, login, scope="", state="xyz", redirect_uri=CALLBACK + "/github"):
    """What a user does in the browser: open the page, type the login, press Authorize."""
    params = {"client_id": client_id, "redirect_uri": redirect_uri, "state": state, "scope": scope}
    page = world.http.get(f"{world.gh.url}/login/oauth/authorize", params=params)
    assert page.status_code == 200
    assert "GitHub stand-in: sign in" in page.text
    form = read_form(page.text)
    assert "login" in form.labels
    assert 'type="submit"' in page.text
    assert ">Authorize<" in page.text
    sent = world.http.post(world.gh.url + form.action, data={**form.fields, "login": login})
    assert sent.status_code == 302
    location = urlsplit(sent.headers["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == redirect_uri
    query = parse_qs(location.query)
    assert query["state"] == [state]
    return query["code"][0]


def exchange(world, client_id, client_secret, code, accept="application/json", **extra):
    return world.http.post(
        f"{world.gh.url}/login/oauth/access_token",
        data={"client_id": client_id, "client_secret": client_secret, "code": code, **extra},
        headers={"Accept": accept},
    )


def test_an_app_users_token_sees_their_installations_and_permissions(world):
    state = world.gh.state
    inst = state.install_app(world.app_id, "octo-org", ["octo-org/hpc-code", "octo-org/secret"])
    state.set_role("octo-org/hpc-code", "alice", "maintain")
    state.set_role("octo-org/docs", "alice", "write")  # not installed: not listed
    code = sign_in(world, world.client_id, "alice")
    answer = exchange(world, world.client_id, world.client_secret, code)
    body = answer.json()
    assert body["access_token"].startswith("ghu_")
    assert body["refresh_token"].startswith("ghr_")
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 28800
    github = world.client(Auth.Token(body["access_token"]))
    me = github.get_user()
    assert me.login == "alice"
    installations = list(me.get_installations())
    assert [i.id for i in installations] == [inst.id]
    headers = {"Authorization": f"token {body['access_token']}"}
    repos = world.http.get(
        f"{world.gh.url}/user/installations/{inst.id}/repositories", headers=headers
    ).json()
    assert [r["full_name"] for r in repos["repositories"]] == [
        "octo-org/hpc-code"
    ]  # alice: no role on secret
    assert repos["repositories"][0]["permissions"]["maintain"]
    permissions = github.get_repo("octo-org/hpc-code").permissions
    assert (
        permissions.admin,
        permissions.maintain,
        permissions.push,
        permissions.triage,
        permissions.pull,
    ) == (
        False,
        True,
        True,
        True,
        True,
    )
    assert "X-OAuth-Scopes" not in world.http.get(f"{world.gh.url}/user", headers=headers).headers
    # The code was used up.
    assert (
        exchange(world, world.client_id, world.client_secret, code).json()["error"] == "bad_verification_code"
    )


def test_pygithub_trades_the_code_and_refreshes_an_expired_token(world):
    state = world.gh.state
    state.user_token_ttl = -1  # every user token is born expired: PyGithub must refresh it
    code = sign_in(world, world.client_id, "octocat")
    github = world.client(None)
    oauth = github.get_oauth_application(world.client_id, world.client_secret)
    assert oauth.get_login_url(state="s").startswith(f"{world.gh.url}/login/oauth/authorize?client_id=")
    token = oauth.get_access_token(code)
    assert token.token.startswith("ghu_")
    state.user_token_ttl = 3600
    user = world.client(oauth.get_app_user_auth(token)).get_user()
    assert user.login == "octocat"
    with pytest.raises(BadCredentialsException):
        oauth.get_access_token("not-a-code")


def test_an_oauth_apps_token_carries_its_scopes(world):
    state = world.gh.state
    state.register_oauth_app("oauth-client-1", "oauth-secret-1", name="Dashboard", callback_url=CALLBACK)
    state.set_role("octo-org/secret", "octocat", "admin")
    code = sign_in(world, "oauth-client-1", "octocat", scope="repo read:org")
    answer = exchange(world, "oauth-client-1", "oauth-secret-1", code, accept="")
    assert answer.headers["Content-Type"].startswith("application/x-www-form-urlencoded")
    body = parse_qs(answer.text)
    assert body["access_token"][0].startswith("gho_")
    assert body["scope"] == ["repo,read:org"]
    headers = {"Authorization": f"bearer {body['access_token'][0]}"}
    repo = world.http.get(f"{world.gh.url}/repos/octo-org/secret", headers=headers)
    assert repo.json()["permissions"]["admin"]
    assert repo.headers["X-OAuth-Scopes"] == "repo, read:org"
    listed = world.http.get(f"{world.gh.url}/user/installations", headers=headers)
    assert listed.status_code == 403  # only a GitHub App's user tokens list installations


def test_bad_requests_get_githubs_answers(world):
    state = world.gh.state
    url = f"{world.gh.url}/login/oauth/authorize"
    assert world.http.get(url, params={"client_id": "nobody"}).status_code == 404
    mismatch = world.http.get(
        url, params={"client_id": world.client_id, "redirect_uri": "https://evil.example/cb", "state": "s"}
    )
    assert mismatch.status_code == 302
    assert mismatch.headers["Location"].startswith(CALLBACK + "?error=redirect_uri_mismatch")
    refused = world.http.post(url, data={"client_id": world.client_id, "login": "nobody-here"})
    assert refused.status_code == 401
    assert "Incorrect username" in refused.text
    code = sign_in(world, world.client_id, "alice")
    wrong_secret = exchange(world, world.client_id, "wrong", code).json()
    assert wrong_secret["error"] == "incorrect_client_credentials"
    elsewhere = exchange(
        world, world.client_id, world.client_secret, code, redirect_uri=CALLBACK + "/other"
    ).json()
    assert elsewhere["error"] == "redirect_uri_mismatch"
    json_body = world.http.post(
        f"{world.gh.url}/login/oauth/access_token",
        json={"client_id": world.client_id, "client_secret": world.client_secret, "code": "bad"},
        headers={"Accept": "application/json"},
    )
    assert json_body.status_code == 200
    assert json_body.json()["error"] == "bad_verification_code"
    # Signed in already: the page sends the user straight back.
    state.oauth_login = "alice"
    straight = world.http.get(url, params={"client_id": world.client_id, "state": "t"})
    assert straight.status_code == 302
    assert re.match(re.escape(CALLBACK) + r"\?code=\w+&state=t$", straight.headers["Location"])
    with pytest.raises(GithubException):
        world.client(Auth.Token("ghu_" + "0" * 36)).get_user().login  # noqa: B018


def chromium():
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.mark.slow
@pytest.mark.skipif(not (chromium() and shutil.which("chromedriver")), reason="no headless Chromium here")
def test_the_sign_in_page_works_in_a_real_headless_browser(world):
    from selenium import webdriver
    from selenium.webdriver.common.by import By

    options = webdriver.ChromeOptions()
    options.binary_location = chromium()
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(argument)
    service = webdriver.ChromeService(executable_path=shutil.which("chromedriver"))
    browser = webdriver.Chrome(options=options, service=service)
    callback = f"{world.gh.url}/users/alice"  # any page of the stand-in: the browser lands there
    world.gh.state.apps[world.app_id].callback_url = world.gh.url
    try:
        browser.get(
            f"{world.gh.url}/login/oauth/authorize?client_id={world.client_id}&redirect_uri={callback}&state=b"
        )
        assert browser.title == "GitHub stand-in: sign in"
        field = browser.find_element(By.ID, "login")
        label = browser.find_element(By.CSS_SELECTOR, "label[for=login]")
        assert label.text == "Username"
        field.send_keys("alice")
        browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        landed = urlsplit(browser.current_url)
    finally:
        browser.quit()
    assert landed.path == "/users/alice"
    code = parse_qs(landed.query)["code"][0]
    token = exchange(world, world.client_id, world.client_secret, code).json()["access_token"]
    assert world.client(Auth.Token(token)).get_user().login == "alice"
