"""GitLab webhook requests through the GitLab source: the real payloads (data/webhooks/gitlab),
the header rules, the action mapping, forks, trust by the author's id, and hostile shapes."""

from __future__ import annotations

import copy
import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from werkzeug.datastructures import Headers

from middleware.domain import (
    CommentEvent,
    OtherEvent,
    PipelineConfig,
    PullRequestEvent,
    PushEvent,
    RepositoryConfig,
)
from middleware.policy import decide
from middleware.sources.base import Delivery, MalformedPayload, Refusal
from middleware.sources.gitlab import events, signature
from middleware.sources.gitlab.provider import GitLabSource

PAYLOADS = Path(__file__).resolve().parents[2] / "data" / "webhooks" / "gitlab"
#: Each shared payload with the `X-Gitlab-Event` GitLab sends it under.
EVENT_NAMES = {
    "push-event.json": "Push Hook",
    "tag-event.json": "Tag Push Hook",
    "merge-request-event.json": "Merge Request Hook",
    "comment-merge-request-event.json": "Note Hook",
    "pipeline-event.json": "Pipeline Hook",
    "job-event.json": "Job Hook",
}
ZERO = "0" * 40


def load(name: str) -> dict[str, Any]:
    return json.loads((PAYLOADS / name).read_text())


def headers(event: str = "Push Hook", **extra: str) -> dict[str, str]:
    return {"X-Gitlab-Event": event, "X-Gitlab-Event-UUID": "0f7d2b9e-uuid", **extra}


def parse_one(event: str, payload: Any) -> Any:
    (parsed,) = events.parse(Delivery(event, "id-1", events.project_path(payload), payload))
    return parsed


def mr(**attributes: Any) -> dict[str, Any]:
    """The shared merge request payload with `object_attributes` changed."""
    payload = load("merge-request-event.json")
    payload["object_attributes"].update(attributes)
    return payload


def test_every_shared_payload_file_is_covered():
    assert sorted(p.name for p in PAYLOADS.glob("*.json")) == sorted(EVENT_NAMES)


@pytest.mark.parametrize("name", sorted(EVENT_NAMES))
def test_every_shared_payload_reads_and_parses(name):
    body = (PAYLOADS / name).read_bytes()
    delivery = events.read(headers(EVENT_NAMES[name]), body, "application/json")
    payload = json.loads(body)
    assert delivery.event == EVENT_NAMES[name]
    assert delivery.id == "0f7d2b9e-uuid"
    assert delivery.payload == payload
    assert delivery.may_hold_nul is False
    project = payload.get("project", {}).get("path_with_namespace")
    assert delivery.repository == project  # the job event names no project: None
    (event,) = events.parse(delivery)
    kind = {
        "Push Hook": PushEvent,
        "Tag Push Hook": PushEvent,
        "Merge Request Hook": PullRequestEvent,
        "Note Hook": CommentEvent,
    }.get(EVENT_NAMES[name], OtherEvent)
    assert isinstance(event, kind)
    assert event.repository == project


def test_push_and_tag_push_payloads():
    push = parse_one("Push Hook", load("push-event.json"))
    assert push == PushEvent(
        repository="mike/diaspora",
        ref="refs/heads/master",
        after="da1560886d4f094c3e6c9ef40349f7d38b5d27d7",
        before="95790bf891e76fee5e1747ab589903a6a1f80f22",
        deleted=False,
        sender="",  # this sample predates `user_username`
    )
    tag = parse_one("Tag Push Hook", load("tag-event.json"))
    assert (tag.ref, tag.tag, tag.before, tag.deleted) == ("refs/tags/v1.0.0", "v1.0.0", ZERO, False)


def test_push_sender_is_the_username_and_a_zero_after_is_a_deletion():
    payload = load("push-event.json")
    payload.update(user_username="jsmith", after=ZERO, checkout_sha=None)
    event = parse_one("Push Hook", payload)
    assert (event.sender, event.deleted, event.branch) == ("jsmith", True, "master")


def test_merge_request_payload():
    event = parse_one("Merge Request Hook", load("merge-request-event.json"))
    assert event == PullRequestEvent(
        repository="gitlabhq/gitlab-test",
        action="opened",
        number=1,
        author="root",
        head_sha="da1560886d4f094c3e6c9ef40349f7d38b5d27d7",
        head_ref="ms-viewport",
        head_repository="awesome_space/awesome_project",
        base_ref="master",
        sender="root",
        author_id=51,
    )
    assert event.from_fork  # its source project is not the target project


@pytest.mark.parametrize(
    ("action", "oldrev", "expected"),
    [
        ("open", None, "opened"),
        ("reopen", None, "reopened"),
        ("close", None, "closed"),
        ("merge", None, "closed"),
        ("update", "95790bf891e76fee5e1747ab589903a6a1f80f22", "synchronize"),
        ("update", None, "edited"),
        ("approved", None, "approved"),
        ("unapproved", None, "unapproved"),
    ],
)
def test_merge_request_actions_become_githubs_words(action, oldrev, expected):
    attributes: dict[str, Any] = {"action": action}
    if oldrev is not None:
        attributes["oldrev"] = oldrev
    assert parse_one("Merge Request Hook", mr(**attributes)).action == expected


def test_an_update_without_oldrev_key_is_an_edit_and_an_odd_oldrev_is_refused():
    payload = mr(action="update")
    payload["object_attributes"].pop("oldrev", None)
    assert parse_one("Merge Request Hook", payload).action == "edited"
    with pytest.raises(MalformedPayload, match=r"^field object_attributes\.oldrev must be a string or null$"):
        parse_one("Merge Request Hook", mr(action="update", oldrev=5))


def test_same_project_fork_and_deleted_fork():
    same = mr()
    same["object_attributes"]["source"]["path_with_namespace"] = "gitlabhq/gitlab-test"
    assert parse_one("Merge Request Hook", same).from_fork is False
    nested = mr()
    nested["project"]["path_with_namespace"] = "hpc/team/sub/app"
    nested["object_attributes"]["source"]["path_with_namespace"] = "hpc/team/sub/app"
    event = parse_one("Merge Request Hook", nested)
    assert (event.repository, event.from_fork) == ("hpc/team/sub/app", False)
    gone = mr(source=None)
    event = parse_one("Merge Request Hook", gone)
    assert event.head_repository is None and event.from_fork


def test_trust_follows_the_merge_request_authors_id_not_whoever_triggered_the_event():
    """The sample's event is by user 1 (root) on a fork merge request authored by user 51."""
    event = parse_one("Merge Request Hook", load("merge-request-event.json"))
    trusting_root = RepositoryConfig(
        id=1,
        full_name="gitlabhq/gitlab-test",
        trusted_users=frozenset({1}),
        branches=("master",),
        pipelines=(PipelineConfig("cpu", "ci/cpu.yml", "daint"),),
    )
    assert decide(event, trusting_root).empty
    trusting_author = RepositoryConfig(**{**trusting_root.__dict__, "trusted_users": frozenset({51})})
    (trigger,) = decide(event, trusting_author).triggers
    assert (trigger.ref, trigger.sha, trigger.pr_number) == ("pr-1", event.head_sha, 1)


def test_an_author_username_in_the_payload_is_used_for_display():
    payload = mr(author={"id": 51, "username": "contributor"})
    event = parse_one("Merge Request Hook", payload)
    assert (event.author, event.sender, event.author_id) == ("contributor", "root", 51)


def test_a_closed_merge_request_without_last_commit_still_parses():
    event = parse_one("Merge Request Hook", mr(action="close", last_commit=None))
    assert (event.action, event.head_sha) == ("closed", "")


def test_note_on_a_merge_request():
    event = parse_one("Note Hook", load("comment-merge-request-event.json"))
    assert event == CommentEvent(
        repository="gitlab-org/gitlab-test",
        action="created",
        issue_number=1,
        is_pull_request=True,
        author="root",
        body="This MR needs work.",
        author_id=1,
        created_at="2015-05-17T18:21:36+00:00",
    )


def test_note_created_at_is_iso_8601_for_the_approval_check():
    payload = load("comment-merge-request-event.json")
    for sent, expected in [
        ("2015-05-17 18:21:36 UTC", "2015-05-17T18:21:36+00:00"),
        ("2015-05-17T20:21:36.120+02:00", "2015-05-17T20:21:36.120000+02:00"),
        ("2015-05-17T18:21:36Z", "2015-05-17T18:21:36+00:00"),
        ("2015-05-17 18:21:36", "2015-05-17T18:21:36+00:00"),
    ]:
        payload["object_attributes"]["created_at"] = sent
        made = parse_one("Note Hook", payload).created_at
        assert made == expected
        assert dt.datetime.fromisoformat(made).tzinfo is not None
    payload["object_attributes"]["created_at"] = "yesterday"  # kept: the approval check refuses it
    assert parse_one("Note Hook", payload).created_at == "yesterday"


def test_note_actions_ids_and_noteables():
    payload = load("comment-merge-request-event.json")
    payload["object_attributes"]["action"] = "update"
    assert parse_one("Note Hook", payload).action == "edited"
    payload["object_attributes"]["action"] = "create"
    assert parse_one("Note Hook", payload).action == "created"
    payload["object_attributes"]["action"] = "delete"
    assert parse_one("Note Hook", payload).action == "delete"  # never "created": the policy ignores it
    # the note's author id first, the event user's id only when the note names none
    payload["object_attributes"]["action"] = "create"
    payload["object_attributes"]["author_id"] = 77
    payload["user"]["id"] = 5
    assert parse_one("Note Hook", payload).author_id == 77
    del payload["object_attributes"]["author_id"]
    assert parse_one("Note Hook", payload).author_id == 5
    del payload["user"]["id"]
    with pytest.raises(MalformedPayload, match=r"missing field object_attributes\.author_id"):
        parse_one("Note Hook", payload)
    issue = load("comment-merge-request-event.json")
    issue["object_attributes"]["noteable_type"] = "Issue"
    issue["issue"] = {"iid": 17, "title": "x"}
    event = parse_one("Note Hook", issue)
    assert (event.is_pull_request, event.issue_number) == (False, 17)
    on_commit = load("comment-merge-request-event.json")
    on_commit["object_attributes"]["noteable_type"] = "Commit"
    event = parse_one("Note Hook", on_commit)
    assert (event.is_pull_request, event.issue_number) == (False, 0)


def _set(payload: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    payload = copy.deepcopy(payload)
    *parents, last = path.split(".")
    target = payload
    for part in parents:
        target = target[part]
    if value is _DELETE:
        del target[last]
    else:
        target[last] = value
    return payload


_DELETE = object()


@pytest.mark.parametrize(
    ("event", "sample", "path", "value", "message"),
    [
        ("Merge Request Hook", "merge-request-event.json", "object_attributes.iid", True,
         "object_attributes.iid must be a positive integer"),
        ("Merge Request Hook", "merge-request-event.json", "object_attributes.iid", "1",
         "object_attributes.iid must be a positive integer"),
        ("Merge Request Hook", "merge-request-event.json", "object_attributes.author_id", -3,
         "object_attributes.author_id must be a positive integer"),
        ("Merge Request Hook", "merge-request-event.json", "object_attributes.author_id", _DELETE,
         "missing field object_attributes.author_id"),
        ("Merge Request Hook", "merge-request-event.json", "object_attributes.last_commit.id", 12,
         "object_attributes.last_commit.id must be a string or null"),
        ("Merge Request Hook", "merge-request-event.json", "object_attributes.source_branch", _DELETE,
         "missing field object_attributes.source_branch"),
        ("Merge Request Hook", "merge-request-event.json", "object_attributes.target_branch", ["master"],
         "object_attributes.target_branch must be a string"),
        ("Merge Request Hook", "merge-request-event.json", "object_attributes.action", None,
         "object_attributes.action must be a string"),
        ("Merge Request Hook", "merge-request-event.json", "object_attributes.source", "fork",
         "object_attributes.source must be an object or null"),
        ("Merge Request Hook", "merge-request-event.json", "object_attributes.source.path_with_namespace",
         "../etc", "object_attributes.source.path_with_namespace is not a GitLab project path"),
        ("Merge Request Hook", "merge-request-event.json", "object_attributes", [],
         "object_attributes must be an object"),
        ("Merge Request Hook", "merge-request-event.json", "user", None, "missing field user.username"),
        ("Merge Request Hook", "merge-request-event.json", "object_attributes.source_branch", "b" * 301,
         "object_attributes.source_branch is too long"),
        ("Push Hook", "push-event.json", "ref", 7, "field ref must be a string"),
        ("Push Hook", "push-event.json", "after", _DELETE, "missing field after"),
        ("Push Hook", "push-event.json", "after", "a" * 65, "field after is too long"),
        ("Push Hook", "push-event.json", "user_username", {"x": 1}, "user_username must be a string or null"),
        ("Push Hook", "push-event.json", "project.path_with_namespace", "solo",
         "project.path_with_namespace is not a GitLab project path"),
        ("Push Hook", "push-event.json", "project.path_with_namespace", "a//b",
         "project.path_with_namespace is not a GitLab project path"),
        ("Push Hook", "push-event.json", "project.path_with_namespace", 42,
         "project.path_with_namespace must be a string"),
        ("Push Hook", "push-event.json", "project", _DELETE, "missing field project.path_with_namespace"),
        ("Note Hook", "comment-merge-request-event.json", "object_attributes.noteable_type", 1,
         "object_attributes.noteable_type must be a string"),
        ("Note Hook", "comment-merge-request-event.json", "merge_request", None,
         "merge_request must be an object"),
        ("Note Hook", "comment-merge-request-event.json", "merge_request.iid", 0,
         "merge_request.iid must be a positive integer"),
        ("Note Hook", "comment-merge-request-event.json", "object_attributes.note", ["run"],
         "object_attributes.note must be a string or null"),
        ("Note Hook", "comment-merge-request-event.json", "object_attributes.author_id", 2**63,
         "object_attributes.author_id must be a positive integer"),
        ("Note Hook", "comment-merge-request-event.json", "user.username", None,
         "user.username must be a string"),
    ],
)  # fmt: skip
def test_hostile_shapes_are_refused_with_a_readable_reason(event, sample, path, value, message):
    payload = _set(load(sample), path, value)
    with pytest.raises(MalformedPayload) as refused:
        events.parse(Delivery(event, "id-1", events.project_path(payload), payload))
    assert message in str(refused.value)


@pytest.mark.parametrize("payload", [[], "push", 3, None])
def test_a_payload_that_is_no_object_is_refused(payload):
    with pytest.raises(MalformedPayload, match="must be a JSON object"):
        events.parse(Delivery("Push Hook", "id-1", None, payload))


def test_events_the_service_does_not_act_on_are_other_events():
    pipeline = load("pipeline-event.json")
    assert parse_one("Pipeline Hook", pipeline) == OtherEvent("gitlab-org/gitlab-test", "Pipeline Hook", None)
    issue = {
        "object_kind": "issue",
        "project": {"path_with_namespace": "g/p"},
        "object_attributes": {"action": "open"},
    }
    assert parse_one("Issue Hook", issue) == OtherEvent("g/p", "Issue Hook", "open")
    assert parse_one("Issue Hook", {"object_attributes": {"action": 3}}) == OtherEvent(
        None, "Issue Hook", None
    )


# -- reading the request ------------------------------------------------------------------------


def test_the_idempotency_key_is_the_delivery_id_when_sent():
    body = (PAYLOADS / "push-event.json").read_bytes()
    both = events.read(headers(**{"Idempotency-Key": "f0e1-key"}), body, "application/json")
    assert both.id == "f0e1-key"
    assert events.read(headers(), body, "application/json").id == "0f7d2b9e-uuid"
    lower = {"x-gitlab-event": "Push Hook", "idempotency-key": "k-1"}
    assert (events.read(lower, body, "").event, events.read(lower, body, "").id) == ("Push Hook", "k-1")
    werkzeug = Headers([("X-GITLAB-EVENT", "Push Hook"), ("X-GITLAB-EVENT-UUID", "u-2")])
    assert events.read(werkzeug, body, "application/json").id == "u-2"


@pytest.mark.parametrize(
    ("sent", "message"),
    [
        ({"X-Gitlab-Event-UUID": "u"},
         "X-Gitlab-Event and Idempotency-Key or X-Gitlab-Event-UUID headers are required"),
        ({"X-Gitlab-Event": "Push Hook"}, "headers are required"),
        ({"X-Gitlab-Event": "  ", "X-Gitlab-Event-UUID": "u"}, "headers are required"),
        ({"X-Gitlab-Event": "Push Hook", "X-Gitlab-Event-UUID": "u" * 101}, "must be printable ASCII"),
        ({"X-Gitlab-Event": "Push Hook", "X-Gitlab-Event-UUID": "a b"}, "without spaces"),
        ({"X-Gitlab-Event": "Push Hook", "Idempotency-Key": "k\u00e9y"}, "printable ASCII"),
        ({"X-Gitlab-Event": "P" * 51, "X-Gitlab-Event-UUID": "u"}, "up to 50 characters"),
        ({"X-Gitlab-Event": "Push\x00Hook", "X-Gitlab-Event-UUID": "u"}, "printable ASCII"),
    ],
)  # fmt: skip
def test_header_rules(sent, message):
    with pytest.raises(Refusal) as refused:
        events.read(sent, b"{}", "application/json")
    assert (refused.value.status, refused.value.outcome) == (400, "malformed")
    assert message in refused.value.text


def test_the_longest_allowed_headers_pass():
    delivery = events.read({"X-Gitlab-Event": "E" * 50, "X-Gitlab-Event-UUID": "u" * 100}, b"{}", "")
    assert (len(delivery.event), len(delivery.id)) == (50, 100)


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b"payload=%7B%7D", "JSONDecodeError"),
        (b"", "JSONDecodeError"),
        (b"\xff\xfe{", "UnicodeDecodeError"),
        (b"[" * 100_000 + b"]" * 100_000, "RecursionError"),
        (b'{"n": ' + b"9" * 5000 + b"}", "ValueError"),
    ],
)
def test_a_body_that_is_not_json_is_a_400(body, error):
    with pytest.raises(Refusal) as refused:
        events.read(headers(), body, "application/json")
    assert refused.value.status == 400
    assert f"the body is not valid JSON ({error})" == refused.value.text


def test_repository_and_nul_flag():
    read = lambda payload: events.read(headers(), json.dumps(payload).encode(), "application/json")  # noqa: E731
    assert read({"project": {"path_with_namespace": "a/b/c/d"}}).repository == "a/b/c/d"
    assert read({"project": {"path_with_namespace": "a_1/.b-c"}}).repository == "a_1/.b-c"
    for odd in ["a", "a/", "/a/b", "a/../b", "a/b c", "a/" + "b" * 200, "a/-b", "a/b/", 7, None, ["a/b"]]:
        assert read({"project": {"path_with_namespace": odd}}).repository is None, odd
    assert read({"project": "a/b"}).repository is None
    assert read([1, 2]).repository is None
    assert read({"project": {"path_with_namespace": "a/b"}, "x": "nul\x00"}).may_hold_nul is True
    assert read({"project": {"path_with_namespace": "a/b"}, "x": "no nul"}).may_hold_nul is False


# -- the secret token ------------------------------------------------------------------------------


def test_the_secret_token_is_compared_exactly():
    secret = "s3cret-token"
    assert signature.verify({"X-Gitlab-Token": secret}, secret)
    assert signature.verify({"x-gitlab-token": secret}, secret)
    assert not signature.verify({"X-Gitlab-Token": secret + " "}, secret)
    assert not signature.verify({"X-Gitlab-Token": "s3cret-tokeN"}, secret)
    assert not signature.verify({"X-Gitlab-Token": ""}, secret)
    assert not signature.verify({}, secret)
    assert not signature.verify({"X-Gitlab-Token": ""}, "")  # an empty secret proves nothing
    assert not signature.verify({"X-Hub-Signature-256": secret}, secret)


def test_a_non_ascii_secret_matches_as_werkzeug_hands_the_header_over():
    secret = "cl\u00e9-\u00fcber"
    as_sent = secret.encode().decode("latin-1")  # WSGI header values are latin-1 decoded bytes
    assert signature.verify(Headers([("X-Gitlab-Token", as_sent)]), secret)
    assert not signature.verify(Headers([("X-Gitlab-Token", "cle-uber")]), secret)
    assert signature.verify({"X-Gitlab-Token": "\u2603"}, "\u2603")  # no crash beyond latin-1


def test_the_source_reads_verifies_and_parses():
    source = GitLabSource(instance_for="https://gitlab.example.org")
    assert (source.name, source.title, source.proof, source.name_field, source.ping_event) == (
        "gitlab",
        "GitLab",
        "X-Gitlab-Token",
        "project.path_with_namespace",
        None,
    )
    assert source.events == frozenset(
        EVENT_NAMES[n] for n in EVENT_NAMES if "pipeline" not in n and "job" not in n
    )
    body = (PAYLOADS / "merge-request-event.json").read_bytes()
    sent = headers("Merge Request Hook", **{"X-Gitlab-Token": "tok"})
    delivery = source.read(sent, body, "application/json")
    assert source.verify(sent, body, "tok") and not source.verify(sent, body, "other")
    (event,) = source.parse(delivery)
    assert source.complete(event, "token") is event


# -- hostile input in bulk -------------------------------------------------------------------------

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(
    name=st.sampled_from(["Push Hook", "Tag Push Hook", "Merge Request Hook", "Note Hook", "Issue Hook"]),
    sample=st.sampled_from(sorted(EVENT_NAMES)),
    path=st.sampled_from(
        ["object_attributes", "object_attributes.iid", "object_attributes.action", "project", "user",
         "merge_request", "ref", "after", "object_attributes.source", "object_attributes.last_commit"]
    ),
    value=_json,
)  # fmt: skip
def test_any_field_replaced_by_anything_parses_or_is_malformed(name, sample, path, value):
    payload = load(sample)
    head, _, rest = path.partition(".")
    if rest and isinstance(payload.get(head), dict):
        payload[head][rest] = value
    else:
        payload[head] = value
    try:
        parsed = events.parse(Delivery(name, "id-1", events.project_path(payload), payload))
    except MalformedPayload as error:
        reason = str(error)
    else:
        reason = ""
        assert len(parsed) == 1
    assert reason == "" or reason.startswith(("missing field", "field", "the payload"))
