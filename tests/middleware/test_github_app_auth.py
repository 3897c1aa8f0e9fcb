"""The App's identity through the unmodified PyGithub against the GitHub stand-in: installation
tokens minted once and reused until shortly before they expire, never logged; where the App
is installed."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from github import Auth, Github, GithubException

from middleware.sources.github import app_auth
from middleware.sources.github.app_auth import GitHubApp
from sandbox.github.server import GitHubHandle, run_github
from tests.middleware.app_mode_support import app_settings, private_key


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[GitHubHandle, GitHubApp, int]]:
    with run_github() as gh:
        registered = gh.state.register_app("firecrest-ci", private_key(), owner="octo-org")
        gh.state.add_repo("octo-org/hpc-code")
        gh.state.add_repo("octo-org/elsewhere")
        settings = app_settings(tmp_path, f"sqlite:///{tmp_path / 'mw.db'}", gh.url, registered.id)
        yield gh, GitHubApp(settings), registered.id


def _mints(gh: GitHubHandle) -> int:
    return sum(1 for r in gh.state.requests if r["method"] == "POST" and r["path"].endswith("/access_tokens"))


def test_token_is_minted_once_and_works_and_is_never_logged(world, caplog):
    gh, app, app_id = world
    inst = gh.state.install_app(app_id, "octo-org", ["octo-org/hpc-code"])
    caplog.set_level(logging.DEBUG)
    token = app.installation_token(inst.id)
    assert token.startswith("ghs_")
    assert app.installation_token(inst.id) == token
    assert _mints(gh) == 1
    client = Github(base_url=gh.url, auth=Auth.Token(token), retry=None)
    assert client.get_repo("octo-org/hpc-code").full_name == "octo-org/hpc-code"
    assert token not in caplog.text


def test_token_is_minted_again_shortly_before_it_expires(world, monkeypatch):
    gh, app, app_id = world
    inst = gh.state.install_app(app_id, "octo-org", ["octo-org/hpc-code"])
    gh.state.installation_token_ttl = app_auth.REFRESH_MARGIN + 1.0  # renewed one second from now
    first = app.installation_token(inst.id)
    assert app.installation_token(inst.id) == first
    time.sleep(1.2)
    second = app.installation_token(inst.id)
    assert second != first
    assert _mints(gh) == 2


def test_concurrent_callers_share_one_mint(world):
    gh, app, app_id = world
    inst = gh.state.install_app(app_id, "octo-org", ["octo-org/hpc-code"])
    found: list[str] = []
    threads = [
        threading.Thread(target=lambda: found.append(app.installation_token(inst.id))) for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(found)) == 1 and len(found) == 8
    assert _mints(gh) == 1


def test_repository_installation_answers_once_installed(world):
    gh, app, app_id = world
    assert app.repository_installation("octo-org/hpc-code") is None
    inst = gh.state.install_app(app_id, "octo-org", ["octo-org/hpc-code"])
    repo_id = gh.state.find_repo("octo-org/hpc-code")["id"]
    assert app.repository_installation("octo-org/hpc-code") == (inst.id, repo_id)
    assert app.repository_installation("octo-org/elsewhere") is None  # not selected
    assert app.repository_installation("octo-org/no-such-repo") is None


def test_removed_installation_gives_no_token(world):
    gh, app, app_id = world
    inst = gh.state.install_app(app_id, "octo-org", ["octo-org/hpc-code"])
    app.installation_token(inst.id)
    gh.state.uninstall_app(inst.id)
    app.forget(inst.id)
    with pytest.raises(GithubException) as raised:
        app.installation_token(inst.id)
    assert raised.value.status == 404


def test_token_mode_has_no_app(tmp_path):
    from tests.middleware.conftest import make_settings

    with pytest.raises(ValueError, match="token mode"):
        GitHubApp(make_settings(tmp_path))
