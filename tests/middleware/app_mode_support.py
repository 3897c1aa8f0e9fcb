"""Helpers for the App-mode tests: an App key, the middleware served on loopback so the GitHub
stand-in's hookshot can deliver to it, and App-mode settings."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from flask import Flask
from werkzeug.serving import make_server

from middleware.app import create_app
from middleware.settings import Settings
from sandbox.firecrest.server import QuietHandler
from tests.middleware.conftest import fake_resolve_users, fake_token_check, make_settings

APP_SECRET = "the-apps-one-webhook-secret-0123"


@cache
def private_key() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def app_settings(
    tmp_path: Path, database_url: str, github_url: str, app_id: int, **overrides: Any
) -> Settings:
    return make_settings(
        tmp_path,
        database_url=database_url,
        github_api_url=github_url,
        github_app_id=str(app_id),
        github_app_private_key=private_key(),
        github_app_webhook_secret=APP_SECRET,
        **overrides,
    )


def make_app_mode(settings: Settings) -> Flask:
    return create_app(settings, check_github_token=fake_token_check, resolve_github_users=fake_resolve_users)


@contextmanager
def serve(app: Flask) -> Iterator[str]:
    """The app on a loopback port; yields its base URL."""
    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=QuietHandler)
    thread = threading.Thread(target=server.serve_forever, name="middleware-under-test", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=5)
        server.server_close()
