"""Shared pieces for the GitHub stand-in's App tests: one RSA key, a webhook receiver, and a
world with users, repositories and a registered App whose webhooks reach the receiver."""

from __future__ import annotations

import functools
import json
import threading
from dataclasses import dataclass, field
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from github import Auth, Github, GithubIntegration
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from sandbox.firecrest.server import QuietHandler
from sandbox.github.server import GitHubHandle, run_github

APP_ID = 424242
WEBHOOK_SECRET = "stand-in-webhook-secret"
OWNER_TOKEN = "ghp_ownertoken000000000000000000000001"


@pytest.fixture(scope="session")
def private_key() -> str:
    """One 2048-bit key for the session: generating one per test would cost more than the tests."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


@pytest.fixture(scope="session")
def http():
    """One httpx client for all tests: making a client costs tens of milliseconds (its TLS setup)."""
    with httpx.Client(trust_env=False) as client:
        yield client


@dataclass
class Receiver:
    """A webhook receiver on loopback: records every POST, answers `status` (a failing receiver: 5xx)."""

    url: str = ""
    status: int = 200
    received: list[dict[str, Any]] = field(default_factory=list)

    def events(self, event: str) -> list[dict[str, Any]]:
        return [r["payload"] for r in self.received if r["headers"].get("X-Github-Event") == event]


@pytest.fixture
def receiver():
    found = Receiver()

    @Request.application
    def app(request: Request) -> Response:
        body = request.get_data()
        found.received.append(
            {"headers": dict(request.headers), "body": body, "payload": json.loads(body or b"null")}
        )
        return Response("thanks" if found.status < 300 else "nope", status=found.status)

    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=QuietHandler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    found.url = f"http://127.0.0.1:{server.server_port}/webhooks"
    yield found
    server.shutdown()
    thread.join(timeout=5)
    server.server_close()


@dataclass
class World:
    gh: GitHubHandle
    receiver: Receiver
    private_key: str
    http: httpx.Client
    app_id: int
    client_id: str
    client_secret: str
    webhook_secret: str = WEBHOOK_SECRET
    owner_token: str = OWNER_TOKEN

    def app_auth(self, **options: Any) -> Auth.AppAuth:
        """PyGithub's App auth, signing with the key loaded once: PyGithub's own signer parses the
        PEM for every JWT, a fifth of a second each on a busy machine (one test keeps it)."""
        key = self.signing_key
        return Auth.AppAuth(self.app_id, sign_func=lambda claims: jwt.encode(claims, key, "RS256"), **options)

    @functools.cached_property
    def signing_key(self) -> Any:
        return serialization.load_pem_private_key(self.private_key.encode(), None)

    def integration(self, **options: Any) -> GithubIntegration:
        return GithubIntegration(
            auth=self.app_auth(**options),
            base_url=self.gh.url,
            retry=None,
            seconds_between_requests=0,
            seconds_between_writes=0,
        )

    def client(self, auth: Auth.Auth | None) -> Github:
        return Github(
            base_url=self.gh.url, auth=auth, retry=None, seconds_between_requests=0, seconds_between_writes=0
        )


@pytest.fixture
def world(receiver, private_key, http):
    """octo-org (an organization) with two public repositories and a private one; octocat owns
    octocat/dotfiles; the `firecrest-ci` App is registered with its webhook on the receiver."""
    with run_github() as gh:
        state = gh.state
        state.add_org("octo-org")
        state.add_user("octocat", OWNER_TOKEN)
        state.add_user("alice")
        state.add_repo("octo-org/hpc-code")
        state.add_repo("octo-org/docs")
        state.add_repo("octo-org/secret", private=True)
        state.add_repo("octocat/dotfiles")
        state.add_pull(
            "octo-org/hpc-code", 7, head_sha="a" * 40, head_ref="fix", base_ref="main", author="alice"
        )
        app = state.register_app(
            "firecrest-ci",
            private_key,
            app_id=APP_ID,
            name="FirecREST CI",
            webhook_url=receiver.url,
            webhook_secret=WEBHOOK_SECRET,
            callback_url="http://127.0.0.1:9/callback",
        )
        yield World(gh, receiver, private_key, http, app.id, app.client_id, app.client_secret)
