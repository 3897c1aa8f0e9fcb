"""What the intake reads of a webhook request (middleware/intake/incoming.py), its JSON parse
(orjson, the standard library for what orjson refuses) and gunicorn's C parser."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
from flask import Flask
from werkzeug.exceptions import ClientDisconnected, RequestEntityTooLarge
from werkzeug.test import EnvironBuilder

from middleware.intake.incoming import Incoming, read_body
from middleware.sources import headers as source_headers
from middleware.sources.base import Refusal
from middleware.sources.headers import json_body
from tests.middleware.conftest import deliver, load_payload, retarget, sign
from tests.middleware.test_webhook_intake import push_payload, runs

ROOT = Path(__file__).resolve().parents[2]
LIMIT = 5 * 1024 * 1024


class Trickle(io.RawIOBase):
    """A request body that comes at most `step` bytes per read, as a socket may give it."""

    def __init__(self, data: bytes, step: int) -> None:
        self.data, self.step, self.reads = data, step, 0

    def read(self, size: int = -1) -> bytes:  # type: ignore[override]
        self.reads += 1
        size = self.step if size < 0 else min(size, self.step)
        chunk, self.data = self.data[:size], self.data[size:]
        return chunk


class Unread(io.RawIOBase):
    def read(self, size: int = -1) -> bytes:  # type: ignore[override]
        raise AssertionError("the body was read")


def call(app: Flask, environ: dict[str, Any]) -> tuple[int, str]:
    """The app's answer to a raw WSGI environ: (status, body)."""
    statuses: list[str] = []
    body = b"".join(app(environ, lambda status, _headers, _exc=None: statuses.append(status)))
    return int(statuses[0].split()[0]), body.decode()


def signed_environ(secret: str, body: bytes, **overrides: Any) -> dict[str, Any]:
    headers = {
        "X-GitHub-Event": "push",
        "X-GitHub-Delivery": "d-incoming",
        "X-Hub-Signature-256": sign(secret, body),
    }
    environ = EnvironBuilder(
        path="/webhooks/github", method="POST", data=body, headers=headers, content_type="application/json"
    ).get_environ()
    environ.update(overrides)
    return environ


def test_deliveries_are_read_without_a_werkzeug_request(app, client, registered, svc, monkeypatch):
    made: list[object] = []
    request_class = app.request_class

    class Counted(request_class):  # type: ignore[misc,valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            made.append(self)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(app, "request_class", Counted)
    answer = deliver(client, "push", push_payload(), registered["webhook_secret"])
    assert answer.status_code == 202, answer.get_data(as_text=True)
    assert len(runs(svc)) == 2
    assert made == []
    assert client.get("/healthz").status_code == 200
    assert len(made) == 1  # Flask's own requests still have theirs


def test_headers_are_read_off_the_environ_case_insensitively():
    environ = {
        "HTTP_X_GITHUB_EVENT": "push",
        "HTTP_X_HUB_SIGNATURE_256": "sha256=ab",
        "CONTENT_TYPE": "application/json",
        "CONTENT_LENGTH": "12",
        "wsgi.input": Unread(),
    }
    incoming = Incoming.of_environ(environ, LIMIT)
    headers = incoming.headers
    assert headers.get("x-github-event") == headers.get("X-GitHub-Event") == "push"
    assert headers["X-GITHUB-EVENT"] == "push"
    assert headers.get("X-Hub-Signature-256") == "sha256=ab"
    assert headers.get("Content-Type") == "application/json" and headers["content-length"] == "12"
    assert incoming.content_type == "application/json"
    assert headers.get("X-GitHub-Delivery") is None and headers.get("X-GitHub-Delivery", "") == ""
    with pytest.raises(KeyError):
        headers["X-GitHub-Delivery"]


def test_the_body_is_read_whole_however_it_trickles_in():
    data = bytes(range(256)) * 40
    stream = Trickle(data, 1000)
    environ = {"CONTENT_LENGTH": str(len(data)), "wsgi.input": stream}
    assert read_body(environ, LIMIT) == data
    assert stream.reads == 11
    assert read_body({"CONTENT_LENGTH": "0", "wsgi.input": Unread()}, LIMIT) == b""


def test_a_body_shorter_than_announced_or_over_the_limit_is_refused_as_werkzeug_refuses_it():
    with pytest.raises(ClientDisconnected):
        read_body({"CONTENT_LENGTH": "100", "wsgi.input": Trickle(b"x" * 60, 25)}, LIMIT)
    with pytest.raises(RequestEntityTooLarge):
        read_body({"CONTENT_LENGTH": str(LIMIT + 1), "wsgi.input": Unread()}, LIMIT)
    # Without a usable length: werkzeug's stream (an input the server ends itself, or nothing).
    terminated = {"wsgi.input_terminated": True, "wsgi.input": io.BytesIO(b"chunked body")}
    assert read_body(terminated, LIMIT) == b"chunked body"
    assert read_body({"CONTENT_LENGTH": "twelve", "wsgi.input": io.BytesIO(b"ignored")}, LIMIT) == b""


def test_such_bodies_get_flasks_400_and_413_and_store_nothing(app, registered, svc):
    secret = registered["webhook_secret"]
    body = json.dumps(push_payload()).encode()
    short = signed_environ(
        secret, body, CONTENT_LENGTH=str(len(body) + 10), **{"wsgi.input": io.BytesIO(body)}
    )
    status, text = call(app, short)
    assert (status, text) == (400, f"{ClientDisconnected.description}\n")
    large = signed_environ(secret, body, CONTENT_LENGTH=str(LIMIT + 1))
    large["wsgi.input"] = Unread()
    assert call(app, large) == (413, "the body is larger than 5 MB\n")
    assert runs(svc) == []
    # What is refused on its path alone is refused unread, whatever its size.
    unknown = signed_environ(
        secret, body, PATH_INFO="/webhooks/source/sourceforge", CONTENT_LENGTH=str(LIMIT + 1)
    )
    unknown["wsgi.input"] = Unread()
    status, text = call(app, unknown)
    assert status == 404 and text.startswith("no source provider 'sourceforge' here")
    # And the same body, whole, is accepted.
    assert call(app, signed_environ(secret, body))[0] == 202
    assert len(runs(svc)) == 2


@pytest.mark.parametrize(
    "text",
    [
        b'{"a": "\\ud800"}',  # a lone surrogate escape
        b'{"a": NaN, "b": Infinity}',
        b'{"a": 1e400}',
        b'\xef\xbb\xbf{"a": 1}',  # a byte order mark
        '{"a": "é"}'.encode("utf-16"),
    ],
)
def test_what_orjson_refuses_reads_as_the_standard_library_reads_it(text):
    refused = False
    try:
        orjson.loads(text)
    except orjson.JSONDecodeError:
        refused = True
    assert refused
    payload, _nul = json_body(text)
    assert repr(payload) == repr(json.loads(text))


def test_orjson_reads_what_it_can(monkeypatch):
    def refuse(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("the standard library's parser was used")

    payload = push_payload()
    body = json.dumps(payload).encode()
    monkeypatch.setattr(source_headers.json, "loads", refuse)
    assert json_body(body) == (payload, False)
    assert json_body(b'{"a": "\\u0000"}') == ({"a": "\x00"}, True)


@pytest.mark.parametrize("text", [b"", b"{", b"[1,]", b"\xff\xfe\xfd", b"[" * 100_000])
def test_invalid_json_is_a_400_either_way(text):
    with pytest.raises(Refusal) as refused:
        json_body(text)
    assert refused.value.status == 400
    assert re.fullmatch(r"the body is not valid JSON \(\w+\)", refused.value.text)


def _refused_by_orjson(_body: bytes) -> Any:
    raise orjson.JSONDecodeError("refused", "", 0)


@pytest.mark.parametrize(("event", "field"), [("pull_request", "number"), ("push", "id")])
def test_an_integer_past_64_bits_means_what_it_meant(client, registered, svc, monkeypatch, event, field):
    """orjson reads one as a float. A number the sources read must be an integer in range,
    which refuses both readings with the same text (a pull request's number); one they do
    not read (the repository's id in token mode) changes nothing either way."""
    if event == "push":
        payload = push_payload()
        payload["repository"][field] = 10**30
    else:
        payload = retarget(load_payload("pull_request", "opened.payload.json"))
        payload["pull_request"][field] = 10**30
    body = json.dumps(payload).encode()
    secret = registered["webhook_secret"]
    now = deliver(client, event, body, secret)
    stored = [(r.pipeline_name, r.sha, r.pr_number) for r in runs(svc)]
    with monkeypatch.context() as patched:  # the standard library's reading, as before orjson
        patched.setattr(source_headers.orjson, "loads", _refused_by_orjson)
        before = deliver(client, event, body, secret)
    assert now.status_code == before.status_code == (400 if event == "pull_request" else 202)
    text, text_before = now.get_data(as_text=True), before.get_data(as_text=True)
    if event == "pull_request":
        assert (
            text
            == text_before
            == "malformed pull_request payload: field pull_request.number must be a positive integer\n"
        )
        assert stored == [] == runs(svc)
    else:
        assert text.startswith("queued: ") and text_before.startswith("queued: ") and len(stored) == 2


def test_gunicorn_requires_its_c_parser():
    """The configuration asks for the C parser ("fast": gunicorn refuses to start without it,
    so every test that starts gunicorn with it uses it) and the lock and the image's build
    stage have it."""
    conf = (ROOT / "middleware" / "gunicorn.conf.py").read_text()
    assert re.search(r'^http_parser = "fast"$', conf, re.M)
    subprocess.run([sys.executable, "-c", "import gunicorn_h1c"], check=True)
    assert re.search(r"^gunicorn-h1c==\S+ \\$", (ROOT / "requirements" / "middleware.txt").read_text(), re.M)
    build = (ROOT / "Dockerfile.middleware").read_text().split("\nFROM ")[1]
    assert "gcc" in build and build.index("gcc") < build.index("--require-hashes")
