"""Bitbucket Cloud webhook requests -> Delivery -> Events, and the signature, on the real payloads
(data/webhooks/bitbucket, MIT) and on hostile copies of them."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from werkzeug.datastructures import Headers

from middleware.domain import (
    CommentEvent,
    OtherEvent,
    PipelineConfig,
    PullRequestEvent,
    PushEvent,
    RepositoryConfig,
    TriggerKind,
)
from middleware.policy import decide
from middleware.sources.base import Delivery, MalformedPayload, Refusal
from middleware.sources.bitbucket import events
from middleware.sources.bitbucket.provider import BitbucketSource
from middleware.sources.bitbucket.signature import sign, verify

PAYLOADS = Path(__file__).resolve().parents[2] / "data" / "webhooks" / "bitbucket"
REPO = "team_name/repo_name"
EMMA = "{a54f16da-24e9-4d7f-a3a7-b1ba2cd98aa3}"
#: The event key Bitbucket sends with each shared payload.
KEYS = {
    "repo-push": "repo:push",
    "repo-fork": "repo:fork",
    "pull-request-created": "pullrequest:created",
    "pull-request-updated": "pullrequest:updated",
    "pull-request-merged": "pullrequest:fulfilled",
    "pull-request-declined": "pullrequest:rejected",
    "pull-request-comment-created": "pullrequest:comment_created",
    "pull-request-comment-updated": "pullrequest:comment_updated",
}


def load(name: str) -> dict:
    return json.loads((PAYLOADS / f"{name}.json").read_text())


def headers(event: str = "repo:push", request_id: str = "9a3c1e2e-5b7d-4f1a-8c6e-0d2b4f6a8c1e") -> dict:
    return {"X-Event-Key": event, "X-Request-UUID": request_id, "X-Hook-UUID": "{hook}"}


def delivery(event: str, payload: object) -> Delivery:
    body = json.dumps(payload).encode()
    return events.read(headers(event), body, "application/json")


def parsed(event: str, payload: object) -> list:
    return events.parse(delivery(event, payload))


def pull_request(action: str) -> PullRequestEvent:
    return PullRequestEvent(
        repository=REPO,
        action=action,
        number=1,
        author="Emma",
        head_sha="d3022fc0ca3d",
        head_ref="branch2",
        head_repository=REPO,
        base_ref="master",
        sender="Emma",
        author_id=EMMA,
    )


def comment(action: str) -> CommentEvent:
    return CommentEvent(
        repository=REPO,
        action=action,
        issue_number=1,
        is_pull_request=True,
        author="Emma",
        body="Comment text",
        author_id=EMMA,
        created_at="2015-04-06T16:52:29.982346+00:00",
    )


EXPECTED = {
    "repo-push": [
        PushEvent(
            repository=REPO,
            ref="refs/heads/name-of-branch",
            after="709d658dc5b6d6afcd46049c2f332ee3f515a67d",
            before="1e65c05c1d5171631d92438a13901ca7dae9618c",
            deleted=False,
            sender="Emma",
        )
    ],
    "repo-fork": [OtherEvent(repository=REPO, name="repo:fork")],
    "pull-request-created": [pull_request("opened")],
    "pull-request-updated": [pull_request("synchronize")],
    "pull-request-merged": [pull_request("closed")],
    "pull-request-declined": [pull_request("closed")],
    "pull-request-comment-created": [comment("created")],
    "pull-request-comment-updated": [comment("edited")],
}


def test_every_shared_payload_is_covered():
    assert sorted(p.stem for p in PAYLOADS.glob("*.json")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_shared_payloads_parse_to_the_expected_events(name):
    body = (PAYLOADS / f"{name}.json").read_bytes()
    got = events.read(headers(KEYS[name]), body, "application/json")
    assert (got.event, got.repository, got.may_hold_nul) == (KEYS[name], REPO, False)
    assert got.id == "9a3c1e2e-5b7d-4f1a-8c6e-0d2b4f6a8c1e"
    assert events.parse(got) == EXPECTED[name]
    assert BitbucketSource().parse(got) == EXPECTED[name]


@pytest.mark.parametrize(
    ("key", "action"),
    [
        ("pullrequest:created", "opened"),
        ("pullrequest:updated", "synchronize"),
        ("pullrequest:fulfilled", "closed"),
        ("pullrequest:rejected", "closed"),
    ],
)
def test_pull_request_actions_become_the_services_words(key, action):
    (event,) = parsed(key, load("pull-request-created"))
    assert isinstance(event, PullRequestEvent)
    assert event.action == action


@pytest.mark.parametrize(
    "key",
    ["pullrequest:approved", "pullrequest:comment_deleted", "repo:commit_status_updated", "issue:created"],
)
def test_other_event_keys_are_other_events(key):
    assert parsed(key, load("pull-request-created")) == [OtherEvent(repository=REPO, name=key)]


def test_a_fork_pull_request_names_its_source_repository():
    payload = load("pull-request-created")
    payload["pullrequest"]["source"]["repository"]["full_name"] = "mallory/repo_name"
    (event,) = parsed("pullrequest:created", payload)
    assert event.head_repository == "mallory/repo_name"
    assert event.repository == REPO
    assert event.from_fork


def test_a_deleted_fork_leaves_no_source_repository_and_counts_as_a_fork():
    payload = load("pull-request-updated")
    payload["pullrequest"]["source"]["repository"] = None
    (event,) = parsed("pullrequest:updated", payload)
    assert event.head_repository is None
    assert event.from_fork


def test_the_author_falls_back_to_the_nickname_then_the_uuid():
    payload = load("pull-request-created")
    del payload["pullrequest"]["author"]["display_name"]
    assert parsed("pullrequest:created", payload)[0].author == "emmap1"
    del payload["pullrequest"]["author"]["nickname"]
    assert parsed("pullrequest:created", payload)[0].author == EMMA


def test_a_comments_own_user_wins_over_the_actor():
    payload = load("pull-request-comment-created")
    payload["comment"]["user"] = {
        "display_name": "Bob",
        "uuid": "{00000000-1111-2222-3333-444444444444}",
    }
    payload["comment"]["content"]["raw"] = "firecrest-ci run cpu"
    (event,) = parsed("pullrequest:comment_created", payload)
    assert (event.author, event.author_id, event.body) == (
        "Bob",
        "{00000000-1111-2222-3333-444444444444}",
        "firecrest-ci run cpu",
    )


def push_payload(changes: list) -> dict:
    payload = load("repo-push")
    payload["push"]["changes"] = changes
    return payload


def change(new: dict | None, old: dict | None) -> dict:
    return {"new": new, "old": old, "created": old is None, "closed": new is None, "forced": False}


def ref(kind: str, name: str, sha: str) -> dict:
    return {"type": kind, "name": name, "target": {"type": "commit", "hash": sha}}


A, B, C = "a" * 40, "b" * 40, "c" * 40


def test_a_push_of_several_refs_is_one_event_per_ref():
    payload = push_payload(
        [
            change(ref("branch", "main", B), ref("branch", "main", A)),
            change(ref("tag", "v1.0", C), None),
            change(None, ref("branch", "old-feature", A)),
            change(ref("branch", "short", "abc1234"), None),
        ]
    )
    got = parsed("repo:push", payload)
    assert got == [
        PushEvent(REPO, "refs/heads/main", B, A, False, "Emma"),
        PushEvent(REPO, "refs/tags/v1.0", C, "", False, "Emma"),
        PushEvent(REPO, "refs/heads/old-feature", "0" * 40, A, True, "Emma"),
        PushEvent(REPO, "refs/heads/short", "abc1234", "", False, "Emma"),  # left for `complete`
    ]
    assert [e.branch for e in got] == ["main", None, "old-feature", "short"]
    assert got[1].tag == "v1.0"


def test_a_push_without_changes_runs_nothing():
    (event,) = parsed("repo:push", push_payload([]))
    assert isinstance(event, OtherEvent)
    assert (event.name, event.action) == ("repo:push", "no changes")


def test_parsed_events_drive_the_policy_with_bitbucket_ids():
    repo = RepositoryConfig(
        id=7,
        full_name=REPO,
        trusted_users=frozenset({EMMA}),
        branches=("master", "name-of-branch"),
        pipelines=(PipelineConfig(name="cpu", entrypoint="ci/run.sh", system="daint"),),
    )
    (push,) = parsed("repo:push", load("repo-push"))
    (trigger,) = decide(push, repo).triggers
    assert (trigger.ref, trigger.sha, trigger.kind) == ("name-of-branch", push.after, TriggerKind.PUSH)

    payload = load("pull-request-created")
    payload["pullrequest"]["source"]["repository"]["full_name"] = "emma/repo_name"
    payload["pullrequest"]["source"]["commit"]["hash"] = "d" * 40  # as `complete` leaves it
    (pull,) = parsed("pullrequest:created", payload)
    assert decide(pull, repo).triggers[0].ref == "pr-1"  # a fork, but by a trusted UUID
    payload["pullrequest"]["author"]["uuid"] = "{99999999-1111-2222-3333-444444444444}"
    (stranger,) = parsed("pullrequest:created", payload)
    assert decide(stranger, repo).empty
    assert "not trusted" in decide(stranger, repo).reason


# -- hostile payloads ---------------------------------------------------------------------------


def mutated(name: str, edit) -> dict:
    payload = copy.deepcopy(load(name))
    edit(payload)
    return payload


def _set(path: str, value):
    def edit(payload: dict) -> None:
        *parents, last = path.split(".")
        current = payload
        for part in parents:
            current = current[part]
        current[last] = value

    return edit


def _delete(path: str):
    def edit(payload: dict) -> None:
        *parents, last = path.split(".")
        current = payload
        for part in parents:
            current = current[part]
        del current[last]

    return edit


@pytest.mark.parametrize(
    ("key", "name", "edit", "words"),
    [
        ("pullrequest:created", "pull-request-created", _set("pullrequest.id", True), "pullrequest.id"),
        ("pullrequest:created", "pull-request-created", _set("pullrequest.id", "1"), "pullrequest.id"),
        ("pullrequest:created", "pull-request-created", _set("pullrequest.id", -3), "positive integer"),
        ("pullrequest:created", "pull-request-created", _set("pullrequest.id", 2**40), "pullrequest.id"),
        (
            "pullrequest:created",
            "pull-request-created",
            _set("pullrequest.source.commit.hash", "HEAD~1"),
            "pullrequest.source.commit.hash must be a commit hash",
        ),
        (
            "pullrequest:created",
            "pull-request-created",
            _set("pullrequest.source.commit.hash", ["d3022fc0ca3d"]),
            "pullrequest.source.commit.hash must be a string",
        ),
        (
            "pullrequest:updated",
            "pull-request-updated",
            _delete("pullrequest.source.branch"),
            "missing field pullrequest.source.branch.name",
        ),
        (
            "pullrequest:updated",
            "pull-request-updated",
            _set("pullrequest.destination.branch.name", 12),
            "pullrequest.destination.branch.name must be a string",
        ),
        (
            "pullrequest:updated",
            "pull-request-updated",
            _set("pullrequest.source.branch.name", "x" * 301),
            "too long",
        ),
        (
            "pullrequest:created",
            "pull-request-created",
            _set("pullrequest.author.uuid", 12345),
            "pullrequest.author.uuid must be a string",
        ),
        (
            "pullrequest:created",
            "pull-request-created",
            _set("pullrequest.author.uuid", "emmap1"),
            "account UUID",
        ),
        (
            "pullrequest:created",
            "pull-request-created",
            _set("pullrequest.source.repository", "team_name/repo_name"),
            "pullrequest.source.repository must be an object or null",
        ),
        ("pullrequest:created", "pull-request-created", _set("pullrequest.source", []), "pullrequest.source"),
        ("pullrequest:created", "pull-request-created", _delete("repository"), "repository.full_name"),
        (
            "pullrequest:created",
            "pull-request-created",
            _set("repository.full_name", "a/b/c"),
            "repository.full_name",
        ),
        ("repo:push", "repo-push", _set("push.changes", {"new": None}), "push.changes must be a list"),
        ("repo:push", "repo-push", _set("push.changes", ["main"]), "push.changes[0] must be an object"),
        ("repo:push", "repo-push", _set("push.changes", [{"new": None, "old": None}]), "neither new nor old"),
        ("repo:push", "repo-push", _set("push.changes", [{"new": "main"}]), "push.changes[0].new must be"),
        (
            "repo:push",
            "repo-push",
            _set("push.changes", [change(ref("bookmark", "main", A), None)]),
            "push.changes[0].new.type must be branch or tag",
        ),
        (
            "repo:push",
            "repo-push",
            _set("push.changes", [change(ref("branch", "main", A), ref("branch", "main", "zz"))]),
            "push.changes[0].old.target.hash must be a commit hash",
        ),
        (
            "repo:push",
            "repo-push",
            _set("push.changes", [change(ref("branch", "main", A.upper()), None)]),
            "push.changes[0].new.target.hash",
        ),
        ("repo:push", "repo-push", _delete("push"), "missing field push.changes"),
        (
            "pullrequest:comment_created",
            "pull-request-comment-created",
            _set("comment", "firecrest-ci run"),
            "field comment must be an object",
        ),
        (
            "pullrequest:comment_created",
            "pull-request-comment-created",
            _set("comment.user", {"display_name": "Bob"}),
            "missing field comment.user.uuid",
        ),
        (
            "pullrequest:comment_created",
            "pull-request-comment-created",
            _delete("actor"),
            "missing field actor.uuid",
        ),
        (
            "pullrequest:comment_created",
            "pull-request-comment-created",
            _set("comment.content.raw", {"text": "run"}),
            "comment.content.raw must be a string or null",
        ),
    ],
)
def test_hostile_shapes_are_refused_with_readable_text(key, name, edit, words):
    with pytest.raises(MalformedPayload) as caught:
        parsed(key, mutated(name, edit))
    assert words in str(caught.value)


@pytest.mark.parametrize("payload", [[], "push", 3, None])
def test_a_payload_that_is_not_an_object_is_malformed(payload):
    with pytest.raises(MalformedPayload, match="must be a JSON object"):
        parsed("repo:push", payload)


def test_an_unknown_event_needs_no_repository():
    assert parsed("repo:imported", {"something": 1}) == [OtherEvent(repository=None, name="repo:imported")]


# -- the request: headers and body --------------------------------------------------------------


@pytest.mark.parametrize(
    "given",
    [
        {"X-Request-UUID": "abc"},
        {"X-Event-Key": "repo:push"},
        {"X-Event-Key": "repo:push", "X-Hook-UUID": "{hook}"},  # the hook's id names no delivery
        {"X-Event-Key": "  ", "X-Request-UUID": "abc"},
    ],
)
def test_both_headers_are_required(given):
    with pytest.raises(Refusal) as caught:
        events.read(given, b"{}", "application/json")
    assert (caught.value.status, caught.value.outcome) == (400, "malformed")
    assert "X-Event-Key and X-Request-UUID headers are required" in caught.value.text


@pytest.mark.parametrize(
    "given",
    [
        headers(event="r" * 51),
        headers(request_id="1" * 101),
        headers(event="repo:pushé"),
        headers(request_id="a b"),
        headers(request_id="abc\x00"),
    ],
)
def test_header_values_must_be_short_printable_ascii(given):
    with pytest.raises(Refusal) as caught:
        events.read(given, b"{}", "application/json")
    assert caught.value.status == 400
    assert "printable ASCII" in caught.value.text


def test_the_longest_header_values_pass_and_any_case_is_read():
    got = events.read(
        {"x-event-key": "r" * 50, "x-request-uuid": "1" * 100}, b'{"repository": {}}', "application/json"
    )
    assert (got.event, got.id, got.repository) == ("r" * 50, "1" * 100, None)
    werkzeug = Headers([("X-EVENT-KEY", "repo:push"), ("x-request-uuid", "id-1")])
    assert events.read(werkzeug, b"{}", "application/json").id == "id-1"


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b"{not json", "JSONDecodeError"),
        (b"\xff\xfe{}", "not valid JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "RecursionError"),
        (b"", "not valid JSON"),
    ],
)
def test_a_body_that_is_not_json_is_refused(body, words):
    with pytest.raises(Refusal) as caught:
        events.read(headers(), body, "application/json")
    assert (caught.value.status, caught.value.outcome) == (400, "malformed")
    assert words in caught.value.text


def test_a_form_encoded_body_is_refused():
    with pytest.raises(Refusal, match="JSON"):
        events.read(headers(), b"payload=%7B%7D", "application/x-www-form-urlencoded")


def test_a_nul_escape_is_flagged_for_cleaning():
    body = json.dumps({"repository": {"full_name": REPO}, "x": "a\x00b"}).encode()
    assert b"\\u0000" in body
    assert events.read(headers(), body, "application/json").may_hold_nul
    assert not events.read(headers(), b'{"x": "no nul here"}', "application/json").may_hold_nul


@pytest.mark.parametrize(
    ("repository", "expected"),
    [
        ({"full_name": REPO}, REPO),
        ({"full_name": "a/b/c"}, None),
        ({"full_name": "/repo"}, None),
        ({"full_name": "ws/"}, None),
        ({"full_name": 12}, None),
        ({"full_name": "w/" + "s" * 200}, None),
        ({}, None),
        ("team_name/repo_name", None),
    ],
)
def test_the_repository_name_is_read_only_when_it_is_one(repository, expected):
    body = json.dumps({"repository": repository}).encode()
    assert events.read(headers(), body, "application/json").repository == expected


# -- the signature ------------------------------------------------------------------------------

SECRET = "bitbucket-webhook-secret"
BODY = (PAYLOADS / "repo-push.json").read_bytes()


def test_a_good_signature_passes():
    assert verify({"X-Hub-Signature": sign(BODY, SECRET)}, BODY, SECRET)
    assert verify({"x-hub-signature": sign(BODY, SECRET).upper().replace("SHA256=", "sha256=")}, BODY, SECRET)
    assert BitbucketSource().verify(Headers([("X-HUB-SIGNATURE", sign(BODY, SECRET))]), BODY, SECRET)


@pytest.mark.parametrize(
    "given",
    [
        {},
        {"X-Hub-Signature": ""},
        {"X-Hub-Signature": sign(BODY, "another-secret")},
        {"X-Hub-Signature": sign(BODY + b" ", SECRET)},
        {"X-Hub-Signature": sign(BODY, SECRET)[:-1]},
        {"X-Hub-Signature": sign(BODY, SECRET) + "0"},
        {"X-Hub-Signature": sign(BODY, SECRET).removeprefix("sha256=")},
        {"X-Hub-Signature": "sha1=" + "0" * 40},
        {"X-Hub-Signature": "sha512=" + sign(BODY, SECRET).removeprefix("sha256=")},
        {"X-Hub-Signature-256": sign(BODY, SECRET)},  # GitHub's header is not Bitbucket's
    ],
)
def test_a_bad_missing_or_weaker_signature_fails(given):
    assert not verify(given, BODY, SECRET)


def test_a_sha1_signature_fails_even_when_correct():
    import hashlib
    import hmac

    sha1 = "sha1=" + hmac.new(SECRET.encode(), BODY, hashlib.sha1).hexdigest()
    assert not verify({"X-Hub-Signature": sha1}, BODY, SECRET)


def test_an_empty_secret_never_verifies():
    assert not verify({"X-Hub-Signature": sign(BODY, "")}, BODY, "")
