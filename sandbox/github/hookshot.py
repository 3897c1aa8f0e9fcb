"""The stand-in's hookshot: it POSTs webhooks to a GitHub App's webhook URL, as GitHub does.

Each attempt carries GitHub's headers and HMAC signatures and is recorded in the state with
what was sent and what came back; a receiver that cannot be reached is a failed delivery,
never an exception, so the state methods that trigger webhooks cannot fail on it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
import uuid
from typing import TYPE_CHECKING, Any

import httpx

from sandbox.github.records import App, Delivery, iso

if TYPE_CHECKING:
    from sandbox.github.state import GitHubState

USER_AGENT = "GitHub-Hookshot/stand-in"

_client: httpx.Client | None = None
_client_lock = threading.Lock()


def client() -> httpx.Client:
    """One shared client (making one costs tens of milliseconds); no keep-alive, no proxies."""
    global _client
    with _client_lock:
        if _client is None:
            _client = httpx.Client(trust_env=False, limits=httpx.Limits(max_keepalive_connections=0))
        return _client


def signatures(secret: str, body: bytes) -> dict[str, str]:
    """GitHub's two signature headers: the HMAC of the raw body with the webhook secret."""
    key = secret.encode()
    return {
        "X-Hub-Signature": "sha1=" + hmac.new(key, body, hashlib.sha1).hexdigest(),
        "X-Hub-Signature-256": "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest(),
    }


def send(
    gh: GitHubState,
    app: App,
    event: str,
    payload: dict[str, Any],
    *,
    guid: str | None = None,
    redelivery: bool = False,
) -> Delivery:
    """POST one delivery to the App's webhook URL and record how it went (never raises)."""
    url = app.webhook_url or ""
    body = json.dumps(payload).encode()
    guid = guid or str(uuid.uuid4())
    headers = {
        "Accept": "*/*",
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "X-GitHub-Delivery": guid,
        "X-GitHub-Event": event,
        "X-GitHub-Hook-ID": str(app.hook_id),
        "X-GitHub-Hook-Installation-Target-ID": str(app.id),
        "X-GitHub-Hook-Installation-Target-Type": "integration",
    }
    if app.webhook_secret:
        headers.update(signatures(app.webhook_secret, body))
    sent_at = time.time()
    started = time.monotonic()
    response_headers: dict[str, str] = {}
    response_body = ""
    try:
        response = client().post(url, content=body, headers=headers, timeout=gh.hook_timeout)
        code = response.status_code
        status = "OK" if 200 <= code < 300 else f"Invalid HTTP Response: {code}"
        response_headers = dict(response.headers)
        response_body = response.text
    except httpx.TimeoutException:
        code, status = 0, "timed out"
    except (httpx.HTTPError, httpx.InvalidURL):
        code, status = 0, "failed to connect to host"
    installation = payload.get("installation")
    repository = payload.get("repository")
    with gh.lock:
        delivery = Delivery(
            id=next(gh.ids),
            guid=guid,
            app_id=app.id,
            event=event,
            action=payload.get("action") if isinstance(payload.get("action"), str) else None,
            installation_id=installation.get("id") if isinstance(installation, dict) else None,
            repository_id=repository.get("id") if isinstance(repository, dict) else None,
            url=url,
            delivered_at=iso(sent_at),
            redelivery=redelivery,
            duration=round(time.monotonic() - started, 3),
            status=status,
            status_code=code,
            request_headers=headers,
            payload=payload,
            response_headers=response_headers,
            response_body=response_body,
        )
        gh.deliveries.append(delivery)
    return delivery
