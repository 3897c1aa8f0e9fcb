"""The nginx front of deploy/nginx, run by sandbox/front.py exactly as deployed, in front of a
small recording upstream: the configuration passes `nginx -t`, bodies are read whole before the
upstream sees them, the size limit is the middleware's (413 from nginx above it), the
X-Forwarded-* headers are nginx's own, and upstream connections are kept alive."""

from __future__ import annotations

import http.server
import re
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import pytest

from middleware.settings import MAX_WEBHOOK_BYTES
from sandbox.front import SNIPPETS, TEMPLATE, Front, render


@dataclass
class Seen:
    """One request as the upstream received it."""

    peer: tuple[str, int]
    version: str
    headers: dict[str, str]
    body: bytes
    at: float = field(default_factory=time.monotonic)


class Recorder(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as gunicorn's threaded workers answer
    disable_nagle_algorithm = True  # headers and body go in two writes
    seen: list[Seen]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.server.seen.append(  # type: ignore[attr-defined]
            Seen(
                self.client_address,
                self.request_version,
                {k.lower(): v for k, v in self.headers.items()},
                body,
            )
        )
        self.send_response(202)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", "3")
        self.end_headers()
        self.wfile.write(b"ok\n")

    def log_message(self, format, *args):
        return


@pytest.fixture(scope="module")
def upstream() -> Iterator[http.server.ThreadingHTTPServer]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    server.daemon_threads = True
    server.seen = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def front(upstream) -> Iterator[Front]:
    host, port = upstream.server_address[:2]
    with Front(f"{host}:{port}") as running:
        yield running


@pytest.fixture
def seen(upstream) -> list[Seen]:
    upstream.seen.clear()
    return upstream.seen


def test_nginx_t_accepts_the_deployed_configuration():
    front = Front("127.0.0.1:9")
    try:
        report = front.check()
    finally:
        front.stop()
    assert "syntax is ok" in report and "test is successful" in report


def test_the_body_limit_is_the_middlewares():
    (size,) = re.findall(r"^client_max_body_size (\d+)m;", (SNIPPETS / "firecrest-ci.conf").read_text(), re.M)
    assert int(size) * 1024 * 1024 == MAX_WEBHOOK_BYTES
    assert "${FIRECREST_CI_UPSTREAM}" in TEMPLATE.read_text()


@pytest.mark.skipif(shutil.which("envsubst") is None, reason="envsubst (Debian: gettext-base) is missing")
def test_envsubst_renders_the_template_as_the_tests_do():
    """What the README's host set-up and the official image's template step make is what the tests run."""
    rendered = subprocess.run(
        ["envsubst", "$FIRECREST_CI_UPSTREAM $FIRECREST_CI_LISTEN"],
        input=TEMPLATE.read_text(),
        env={"FIRECREST_CI_UPSTREAM": "127.0.0.1:8080", "FIRECREST_CI_LISTEN": "80"},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert rendered == render("127.0.0.1:8080", "80")
    assert "server 127.0.0.1:8080;" in rendered and "listen 80;" in rendered


def raw_exchange(front: Front, head: bytes) -> tuple[bytes, bytes]:
    """Send `head` as is and read one answer: (status line and headers, body)."""
    with socket.create_connection(("127.0.0.1", front.port), timeout=5) as sock:
        sock.sendall(head)
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = sock.recv(65536)
            assert chunk, f"nginx closed the connection after {answer!r}"
            answer += chunk
        headers, body = answer.split(b"\r\n\r\n", 1)
        length = int(re.search(rb"(?im)^content-length: *(\d+)", headers).group(1))
        while len(body) < length:
            chunk = sock.recv(65536)
            assert chunk
            body += chunk
        return headers, body


def test_over_the_limit_nginx_answers_413_without_reading_or_forwarding(front, seen):
    head = (
        "POST /webhooks/github HTTP/1.1\r\nHost: ci.example.org\r\nContent-Type: application/json\r\n"
        f"Content-Length: {MAX_WEBHOOK_BYTES + 1}\r\n\r\n"
    ).encode()
    headers, body = raw_exchange(front, head)  # no body sent: the header alone decides
    assert headers.startswith(b"HTTP/1.1 413"), headers
    assert body == b"the body is larger than 5 MB\n"  # what the middleware itself answers
    assert seen == []


def test_a_body_of_exactly_the_limit_goes_through_buffered_on_disk(front, seen):
    body = b"y" * MAX_WEBHOOK_BYTES  # above client_body_buffer_size: nginx's worker writes a temp file
    answer = httpx.post(f"{front.url}/webhooks/github", content=body, timeout=30)
    assert answer.status_code == 202, answer.text
    assert [len(s.body) for s in seen] == [MAX_WEBHOOK_BYTES]


def test_the_upstream_sees_a_request_only_once_its_body_is_whole(front, seen):
    body = b'{"zen": "' + b"z" * 4000 + b'"}'
    head = (
        "POST /webhooks/github HTTP/1.1\r\nHost: ci.example.org\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", front.port), timeout=5) as sock:
        sock.sendall(head + body[: len(body) // 2])
        time.sleep(0.5)
        assert seen == []  # half a body is nginx's business, not the upstream's
        sent_rest = time.monotonic()
        sock.sendall(body[len(body) // 2 :])
        assert sock.recv(65536).startswith(b"HTTP/1.1 202")
    assert len(seen) == 1 and seen[0].body == body and seen[0].at >= sent_rest


def test_forwarded_headers_are_nginxs_and_no_version_is_shown(front, seen):
    answer = httpx.post(
        f"{front.url}/webhooks/github",
        content=b"{}",
        headers={"X-Forwarded-For": "203.0.113.9", "X-Real-IP": "203.0.113.9", "Host": "ci.example.org"},
    )
    assert answer.status_code == 202
    assert answer.headers["server"] == "nginx"  # server_tokens off
    (request,) = seen
    assert request.headers["x-forwarded-for"] == "127.0.0.1"  # a client cannot pose as another address
    assert request.headers["x-real-ip"] == "127.0.0.1"
    assert request.headers["x-forwarded-proto"] == "http"
    assert request.headers["x-forwarded-host"] == "ci.example.org"
    assert request.headers["host"] == "ci.example.org"


def test_upstream_connections_are_http_1_1_and_reused(front, seen):
    with httpx.Client(timeout=5) as client:
        for _ in range(20):
            assert client.post(f"{front.url}/webhooks/github", content=b"{}").status_code == 202
    assert {s.version for s in seen} == {"HTTP/1.1"}
    assert all(s.headers.get("connection", "") != "close" for s in seen)
    assert len({s.peer for s in seen}) < 5  # 20 requests over a few kept-alive connections
