"""The stand-in sends webhooks to the App as GitHub does, records each attempt, and serves the
App's delivery log (`/app/hook/deliveries`, JWT) with cursor pagination and redelivery.

PyGithub has no App delivery methods, so the log is read with httpx and with PyGithub's own
PaginatedList over `HookDeliverySummary` (which follows the `Link` header's cursor)."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest
from github.HookDelivery import HookDelivery, HookDeliverySummary
from github.PaginatedList import PaginatedList


def push_payload(world):
    repo = world.gh.state.find_repo("octo-org/hpc-code")
    return {
        "ref": "refs/heads/main",
        "after": "f" * 40,
        "repository": {"id": repo["id"], "full_name": "octo-org/hpc-code"},
    }


@pytest.fixture
def jwt_headers(world):
    return {"Authorization": f"Bearer {world.app_auth().token}"}


def test_a_delivery_carries_githubs_headers_and_signatures(world):
    state = world.gh.state
    inst = state.install_app(world.app_id, "octo-org")
    delivery = state.deliver("push", push_payload(world))
    assert delivery is not None
    got = world.receiver.received[-1]
    headers = got["headers"]
    assert headers["X-Github-Event"] == "push"
    assert headers["X-Github-Delivery"] == delivery.guid
    assert headers["X-Github-Hook-Installation-Target-Type"] == "integration"
    assert headers["X-Github-Hook-Installation-Target-Id"] == str(world.app_id)
    assert headers["User-Agent"].startswith("GitHub-Hookshot/")
    assert headers["Content-Type"] == "application/json"
    expected = hmac.new(world.webhook_secret.encode(), got["body"], hashlib.sha256).hexdigest()
    assert headers["X-Hub-Signature-256"] == f"sha256={expected}"
    assert got["payload"]["installation"]["id"] == inst.id  # added: the App is installed there
    assert (delivery.status, delivery.status_code, delivery.event, delivery.action) == (
        "OK",
        200,
        "push",
        None,
    )
    assert (delivery.installation_id, delivery.repository_id) == (inst.id, got["payload"]["repository"]["id"])


def test_failures_are_recorded_not_raised(world):
    state = world.gh.state
    world.receiver.status = 503
    failed = state.deliver("push", push_payload(world))
    assert (failed.status, failed.status_code, failed.ok) == ("Invalid HTTP Response: 503", 503, False)
    state.apps[world.app_id].webhook_url = "http://127.0.0.1:9/nothing-listens"
    refused = state.deliver("push", push_payload(world))
    assert (refused.status_code, refused.status) == (0, "failed to connect to host")
    state.apps[world.app_id].webhook_url = world.receiver.url
    state.deliveries_down = True  # GitHub's hookshot is down: nothing is sent or recorded
    assert state.deliver("push", push_payload(world)) is None
    assert [event for event, _payload in state.undelivered] == ["push"]
    assert len(state.deliveries) == 2
    state.apps[world.app_id].events = ["issue_comment"]
    state.deliveries_down = False
    assert state.deliver("push", push_payload(world)) is None  # not subscribed


def test_the_delivery_log_pages_newest_first_with_a_cursor(world, jwt_headers):
    state = world.gh.state
    for n in range(5):
        state.deliver("push", {**push_payload(world), "after": str(n) * 40})
    first = world.http.get(f"{world.gh.url}/app/hook/deliveries?per_page=2", headers=jwt_headers)
    assert first.status_code == 200
    ids = [d["id"] for d in first.json()]
    assert ids == sorted(ids, reverse=True)
    summary_fields = {"id", "guid", "delivered_at", "redelivery", "duration", "status", "status_code"}
    assert set(first.json()[0]) >= summary_fields | {"event", "action", "installation_id", "repository_id"}
    link = first.headers["Link"]
    assert 'rel="next"' in link
    assert "cursor=" in link
    seen = ids
    url = link.split(";")[0].strip("<>")
    while url:
        page = world.http.get(url, headers=jwt_headers)
        seen += [d["id"] for d in page.json()]
        url = page.headers["Link"].split(";")[0].strip("<>") if "Link" in page.headers else ""
    assert seen == [d.id for d in state.deliveries_for(world.app_id)]
    # PyGithub's PaginatedList follows the same Link header.
    integration = world.integration()
    listed = PaginatedList(
        HookDeliverySummary, integration.requester, "/app/hook/deliveries", {"per_page": 2}
    )
    assert [d.id for d in listed] == seen
    assert (
        world.http.get(
            f"{world.gh.url}/app/hook/deliveries", headers={"Authorization": "token x"}
        ).status_code
        == 401
    )


def test_one_delivery_in_full_and_its_redelivery(world, jwt_headers):
    state = world.gh.state
    world.receiver.status = 500
    failed = state.deliver("push", push_payload(world))
    integration = world.integration()
    _headers, data = integration.requester.requestJsonAndCheck("GET", f"/app/hook/deliveries/{failed.id}")
    shown = HookDelivery(integration.requester, {}, data)
    assert (shown.guid, shown.status_code, shown.redelivery) == (failed.guid, 500, False)
    assert shown.request.headers["X-GitHub-Event"] == "push"
    assert shown.request.payload["after"] == "f" * 40
    assert shown.response.payload == "nope"
    assert data["url"] == world.receiver.url

    world.receiver.status = 200
    again = world.http.post(f"{world.gh.url}/app/hook/deliveries/{failed.id}/attempts", headers=jwt_headers)
    assert again.status_code == 202
    newest = state.deliveries_for(world.app_id)[0]
    assert (newest.guid, newest.redelivery, newest.status) == (failed.guid, True, "OK")
    assert newest.id != failed.id
    bodies = [json.loads(r["body"]) for r in world.receiver.received]
    assert bodies[0] == bodies[1]
    assert world.receiver.received[1]["headers"]["X-Github-Delivery"] == failed.guid
    missing = world.http.post(f"{world.gh.url}/app/hook/deliveries/1/attempts", headers=jwt_headers)
    assert missing.status_code == 404
    config = world.http.get(f"{world.gh.url}/app/hook/config", headers=jwt_headers).json()
    assert (config["url"], config["content_type"]) == (world.receiver.url, "json")
