"""Slow clients cannot starve the webhook: the deployed middleware (gunicorn's sync workers,
PostgreSQL, Redis, a Celery worker) behind the nginx front of deploy/nginx. 100 connections
send their headers and half a body and then hold; a real signed push is still answered 202
within a second through the front. The same connections sent straight to gunicorn hold
every worker, and the signed push gets no answer: the front is what fixes it."""

from __future__ import annotations

import json
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import httpx
import pytest

from middleware.sources.github.signature import sign
from sandbox.front import Front
from tests.conftest import service_url
from tests.middleware.conftest import postgres_database
from tests.middleware.test_service_e2e import Service, github, push, register, start_service  # noqa: F401

SLOW = 100
#: How long a push may take through the front while the slow clients hold on.
ANSWER_WITHIN = 1.0
#: How long the push waits straight at gunicorn before it counts as starved.
STARVED_AFTER = 3.0


@pytest.fixture(scope="module")
def service(tmp_path_factory, github) -> Iterator[Service]:  # noqa: F811
    redis_url = service_url("TEST_REDIS_URL").rsplit("/", 1)[0] + "/6"
    subprocess.run(["redis-cli", "-u", redis_url, "FLUSHDB"], check=True, capture_output=True)
    with postgres_database() as database_url:
        yield from start_service(
            tmp_path_factory.mktemp("slow"), database_url, {"REDIS_URL": redis_url}, github
        )


@pytest.fixture(scope="module")
def front(service) -> Iterator[Front]:
    with Front(service.env["BIND"]) as running:
        yield running


@pytest.fixture(scope="module")
def repo(service) -> dict:
    return register(service)


@contextmanager
def slow_clients(port: int, count: int = SLOW) -> Iterator[list[socket.socket]]:
    """`count` connections that send a delivery's headers and half its body, then hold."""
    body = b'{"zen": "' + b"s" * 4000 + b'"}'
    with ExitStack() as stack:
        held = []
        for index in range(count):
            sock = stack.enter_context(socket.create_connection(("127.0.0.1", port), timeout=5))
            head = (
                "POST /webhooks/github HTTP/1.1\r\nHost: ci.example.org\r\n"
                "Content-Type: application/json\r\nX-GitHub-Event: push\r\n"
                f"X-GitHub-Delivery: slow-{index}\r\nX-Hub-Signature-256: sha256={'0' * 64}\r\n"
                f"Content-Length: {len(body)}\r\n\r\n"
            ).encode()
            sock.sendall(head + body[: len(body) // 2])
            held.append(sock)
        time.sleep(0.3)  # let the server take them up
        yield held


def signed_push(url: str, repo: dict, timeout: float) -> tuple[int | None, float]:
    """One real signed push delivery: (status or None when nothing answered in time, seconds)."""
    body = json.dumps(push(uuid.uuid4().hex + "5107c11e")).encode()
    headers = {
        "X-GitHub-Event": "push",
        "X-GitHub-Delivery": str(uuid.uuid4()),
        "X-Hub-Signature-256": sign(repo["webhook_secret"], body),
        "Content-Type": "application/json",
    }
    with httpx.Client(timeout=timeout) as client:  # made before the clock starts: it loads certificates
        started = time.monotonic()
        try:
            answer = client.post(f"{url}/webhooks/github", content=body, headers=headers)
        except httpx.TimeoutException:
            return None, time.monotonic() - started
        return answer.status_code, time.monotonic() - started


def test_behind_the_front_a_signed_push_is_answered_while_100_slow_clients_hold(front, repo):
    assert signed_push(front.url, repo, timeout=10)[0] == 202  # warm: the workers have met PostgreSQL
    with slow_clients(front.port):
        status, took = signed_push(front.url, repo, timeout=10)
    print(f"\nthrough nginx with {SLOW} slow clients: {status} in {took * 1000:.0f} ms")
    assert status == 202
    assert took < ANSWER_WITHIN


def test_straight_to_gunicorn_the_same_slow_clients_starve_it(service, repo):
    port = int(service.env["BIND"].rsplit(":", 1)[1])
    with slow_clients(port):
        status, took = signed_push(service.url, repo, timeout=STARVED_AFTER)
    print(f"\nstraight to gunicorn with {SLOW} slow clients: {status} after {took:.1f} s")
    assert status is None  # every sync worker is stuck reading half a body
    # Once they are gone, the workers are free again.
    deadline = time.monotonic() + 15
    while (answer := signed_push(service.url, repo, timeout=5))[0] != 202 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert answer[0] == 202
