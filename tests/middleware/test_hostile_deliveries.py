"""Hypothesis-generated deliveries: every one gets a 4xx or a no-trigger answer, never a 5xx."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from middleware.models import OutboxItem
from middleware.sources.github.signature import sign

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=15,
)
refs = st.one_of(
    st.text(max_size=40),
    st.sampled_from(
        ["refs/heads/main", "refs/heads/--upload-pack=touch pwned", "refs/heads/main\n", "refs/tags/v1"]
    ),
)
shas = st.one_of(st.text(alphabet="0123456789abcdef", min_size=40, max_size=40), st.text(max_size=45))


@st.composite
def deliveries(draw: st.DrawFn) -> tuple[str, dict[str, object]]:
    event = draw(st.sampled_from(["push", "pull_request", "issue_comment", "ping", "create", "delete"]))
    payload = draw(st.dictionaries(st.text(max_size=10), json_values, max_size=4))
    payload["repository"] = {"full_name": "octo-org/hpc-code"}
    if draw(st.booleans()):
        payload.update(ref=draw(refs), after=draw(shas), deleted=draw(st.booleans() | json_values))
    if draw(st.booleans()):
        payload["pull_request"] = draw(
            json_values | st.fixed_dictionaries({"number": json_values, "head": json_values})
        )
        payload["action"] = draw(st.sampled_from(["opened", "closed", "synchronize"]) | json_values)
    if draw(st.booleans()):
        payload["comment"] = {
            "user": {"login": draw(st.sampled_from(["mallory", "alice"]) | json_values)},
            "body": draw(json_values),
        }
        payload["issue"] = draw(json_values | st.fixed_dictionaries({"number": json_values}))
    return event, payload


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(delivery=deliveries(), delivery_id=st.uuids())
def test_generated_payloads_never_get_a_server_error(client, registered, svc, delivery, delivery_id):
    event, payload = delivery
    body = json.dumps(payload).encode()
    answer = client.post(
        "/webhooks/github",
        data=body,
        headers={
            "X-GitHub-Event": event,
            "X-GitHub-Delivery": str(delivery_id),
            "X-Hub-Signature-256": sign(registered["webhook_secret"], body),
            "Content-Type": "application/json",
        },
    )
    assert answer.status_code < 500, answer.get_data(as_text=True)
    assert answer.status_code in (200, 202, 400)
    with svc.db.session() as session:
        for item in session.scalars(select(OutboxItem)):
            if item.task.endswith("record_run"):
                assert len(item.payload["sha"]) == 40
                assert not item.payload["ref"].startswith("-")
                assert item.payload["kind"] != "comment" or item.payload["variables"] is not None
