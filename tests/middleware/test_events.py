"""Real GitHub payloads (octokit/webhooks) and hostile ones through parse_event."""

from __future__ import annotations

import contextlib
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from middleware.domain import CommentEvent, OtherEvent, PingEvent, PullRequestEvent, PushEvent, RerunEvent
from middleware.sources.github.events import MalformedPayload, parse_event, repository_full_name
from tests.middleware.conftest import WEBHOOKS

EVENTS = {
    "push": PushEvent,
    "pull_request": PullRequestEvent,
    "issue_comment": CommentEvent,
    "ping": PingEvent,
}
FILES = sorted(p for p in WEBHOOKS.glob("*/*.json"))


@pytest.mark.parametrize("path", FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_real_payload_parses_to_its_event(path):
    event_name = path.parent.name
    payload = json.loads(path.read_text())
    event = parse_event(event_name, payload)
    rerun = event_name in ("check_run", "check_suite") and payload.get("action") == "rerequested"
    assert isinstance(event, RerunEvent if rerun else EVENTS.get(event_name, OtherEvent))
    if isinstance(event, PushEvent):
        assert (event.ref, event.after, event.deleted) == (
            payload["ref"],
            payload["after"],
            payload["deleted"],
        )
        assert event.repository == payload["repository"]["full_name"]
    if isinstance(event, PullRequestEvent):
        pr = payload["pull_request"]
        assert (event.number, event.author, event.head_sha, event.base_ref) == (
            pr["number"],
            pr["user"]["login"],
            pr["head"]["sha"],
            pr["base"]["ref"],
        )
    if isinstance(event, CommentEvent):
        assert event.author == payload["comment"]["user"]["login"]
        assert event.is_pull_request == ("pull_request" in payload["issue"])
        assert event.body == (payload["comment"]["body"] or "")


def test_a_bool_is_not_a_pull_request_number():
    payload = json.loads((WEBHOOKS / "pull_request" / "opened.payload.json").read_text())
    payload["pull_request"]["number"] = True
    with pytest.raises(MalformedPayload) as error:
        parse_event("pull_request", payload)
    assert "pull_request.number must be a positive integer" in str(error.value)


def test_fork_detection_uses_the_head_repository():
    payload = json.loads((WEBHOOKS / "pull_request" / "opened.payload.json").read_text())
    payload["pull_request"]["head"]["repo"] = None
    event = parse_event("pull_request", payload)
    assert event.head_repository is None
    assert event.from_fork


@pytest.mark.parametrize(
    ("event", "payload", "needle"),
    [
        ("push", [], "JSON object"),
        ("push", {"repository": {"full_name": "a/b"}}, "ref"),
        ("push", {"repository": {"full_name": "a/b"}, "ref": 5, "after": "x"}, "ref must be a string"),
        ("issue_comment", {"repository": {"full_name": "a/b"}, "action": "created", "issue": "x"}, "issue"),
        ("push", {"ref": "refs/heads/main", "after": "a" * 40}, "repository.full_name"),
    ],
)
def test_hostile_payloads_are_malformed(event, payload, needle):
    with pytest.raises(MalformedPayload) as error:
        parse_event(event, payload)
    assert needle in str(error.value)


@pytest.mark.parametrize(
    "payload",
    [
        None,
        [],
        "x",
        {"repository": None},
        {"repository": {"full_name": 3}},
        {"repository": {"full_name": "no-slash"}},
    ],
)
def test_repository_lookup_key_never_raises(payload):
    assert repository_full_name(payload) is None


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=5)
    ),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None)
@given(
    event=st.sampled_from(["push", "pull_request", "issue_comment", "ping", "create", "delete"]),
    payload=json_values,
    full_name=st.sampled_from(["a/b", None]),
)
def test_arbitrary_json_gives_an_event_or_malformed(event, payload, full_name):
    if full_name and isinstance(payload, dict):
        payload["repository"] = {"full_name": full_name}
    with contextlib.suppress(MalformedPayload):  # any other exception fails the test
        parse_event(event, payload)
    repository_full_name(payload)
