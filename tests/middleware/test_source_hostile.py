"""The GitHub path's hostile and delivery tests, applied to GitLab and Bitbucket Cloud sources.

hypothesis takes the real payloads of each provider (data/webhooks/gitlab, data/webhooks/bitbucket),
puts hostile values into up to three of their fields, signs most of them properly (the rest carry
a wrong, odd or missing token or signature, and odd headers) and sends them to
`/webhooks/source/<provider>`: no answer is a 5xx other than a 503 that says to redeliver, every
error has a readable text, no answer echoes a secret. Once more with the PostgreSQL cluster
stopped and the registration cache cold: 503 at worst. And the plain promises: a redelivery is a
duplicate, the same delivery id from two providers is two deliveries, a bad proof stores nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import given, settings
from hypothesis import strategies as st

from middleware.services import EXTENSION, Services
from sandbox.servers import PostgresCluster
from tests.middleware.conftest import admin, make_app, postgres_database, repository_body
from tests.middleware.test_hostile_routes import PLAUSIBLE, header_text, mostly, put, values

DATA = Path(__file__).resolve().parents[2] / "data" / "webhooks"
#: Nothing listens here: a request to a source's API fails at once.
DEAD = "http://127.0.0.1:9"
NAME = "science/hpc-code"
EVENTS = {
    "gitlab": {
        "push-event.json": "Push Hook",
        "tag-event.json": "Tag Push Hook",
        "merge-request-event.json": "Merge Request Hook",
        "comment-merge-request-event.json": "Note Hook",
    },
    "bitbucket": {
        "repo-push.json": "repo:push",
        "pull-request-created.json": "pullrequest:created",
        "pull-request-updated.json": "pullrequest:updated",
        "pull-request-merged.json": "pullrequest:fulfilled",
        "pull-request-declined.json": "pullrequest:rejected",
        "pull-request-comment-created.json": "pullrequest:comment_created",
    },
}


def real(provider: str, name: str) -> dict[str, Any]:
    payload: dict[str, Any] = json.loads((DATA / provider / name).read_text())
    if provider == "gitlab":
        payload.setdefault("project", {})["path_with_namespace"] = NAME
    else:
        payload.setdefault("repository", {})["full_name"] = NAME
    return payload


def leaves(value: Any, prefix: str = "") -> list[str]:
    """Dotted paths of every field, up to four levels deep (where the hostile values go)."""
    if not isinstance(value, dict) or prefix.count(".") >= 4:
        return [prefix] if prefix else []
    found = [prefix] if prefix else []
    for key, inner in value.items():
        found += leaves(inner, f"{prefix}.{key}" if prefix else str(key))
    return found


@dataclass
class Sources:
    app: Flask
    client: FlaskClient
    secrets: dict[str, str]
    ids: dict[str, int]
    label: str
    counts: Counter[int] = field(default_factory=Counter)

    @property
    def svc(self) -> Services:
        found: Services = self.app.extensions[EXTENSION]
        return found

    def deliveries(self) -> int:
        from sqlalchemy import func, select

        from middleware.models import Delivery

        with self.svc.db.session() as session:
            return int(session.scalar(select(func.count()).select_from(Delivery)) or 0)


def build(tmp: Path, database_url: str, label: str) -> Sources:
    app = make_app(
        tmp, database_url, insecure_sandbox=True, bitbucket_api_url=DEAD + "/2.0", github_api_url=DEAD
    )
    client = app.test_client()
    secrets, ids = {}, {}
    for provider in ("gitlab", "bitbucket"):
        body = repository_body(full_name=NAME, clone_url=f"http://127.0.0.1:9/{NAME}.git")
        body.update(provider=provider, trusted_users=[])
        answer = client.post("/api/repositories", json=body, headers=admin())
        assert answer.status_code == 201, answer.get_data(as_text=True)
        repo = answer.get_json()
        made = client.post(
            f"/api/repositories/{repo['id']}/pipelines",
            json={"name": "cpu", "entrypoint": "ci/cpu.yml", "system": "daint"},
            headers=admin(),
        )
        assert made.status_code == 201, made.get_data(as_text=True)
        secrets[provider], ids[provider] = repo["webhook_secret"], repo["id"]
    return Sources(app, client, secrets, ids, label)


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sources]:
    tmp = tmp_path_factory.mktemp("sources-hostile")
    with postgres_database() as url:
        made = build(tmp, url, "postgres")
        yield made
        made.svc.db.dispose()


@pytest.fixture(scope="module")
def stopped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sources]:
    tmp = tmp_path_factory.mktemp("sources-outage")
    with tempfile.TemporaryDirectory(prefix="fci-outage-") as where, PostgresCluster(Path(where)) as cluster:
        made = build(tmp, cluster.create_database("app"), "postgres, stopped")
        cluster.stop("fast")
        made.svc.registrations.clear()
        yield made
        made.svc.db.dispose()


def headers_for(provider: str, event: str, body: bytes, secret: str) -> dict[str, str]:
    if provider == "gitlab":
        return {"X-Gitlab-Event": event, "X-Gitlab-Event-UUID": str(uuid.uuid4()), "X-Gitlab-Token": secret}
    signature = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"X-Event-Key": event, "X-Request-UUID": str(uuid.uuid4()), "X-Hub-Signature": signature}


@st.composite
def hostile(draw: st.DrawFn, world: Sources, provider: str) -> tuple[bytes, dict[str, str]]:
    name = draw(st.sampled_from(sorted(EVENTS[provider])))
    payload = real(provider, name)
    for path in draw(st.lists(st.sampled_from(leaves(payload)), max_size=3, unique=True)):
        put(payload, path, draw(st.sampled_from(PLAUSIBLE) | values))
    body = draw(mostly(st.just(json.dumps(payload).encode()), st.binary(max_size=100)))
    headers = {"Content-Type": "application/json", **headers_for(provider, EVENTS[provider][name], body,
                                                                  world.secrets[provider])}  # fmt: skip
    for header in sorted(headers):
        headers[header] = draw(mostly(st.just(headers[header]), header_text))
    for header in draw(st.lists(st.sampled_from(sorted(headers)), max_size=2, unique=True)):
        del headers[header]
    return body, headers


def acceptable(world: Sources, answer: Any, outage: bool) -> None:
    status, text = answer.status_code, answer.get_data(as_text=True)
    world.counts[status] += 1
    assert text.strip() and "Traceback" not in text, (status, text[:200])
    assert all(secret not in text for secret in world.secrets.values()), "an answer echoed a secret"
    if status == 503:
        assert ("unavailable" in text) if outage else ("redeliver later" in text), text[:300]
    else:
        assert status < 500, (status, text[:300])


def hammer(world: Sources, provider: str, outage: bool) -> None:
    path = f"/webhooks/source/{provider}"

    @settings(max_examples=60 if outage else 120, deadline=None, database=None)
    @given(request=hostile(world, provider))
    def one(request: tuple[bytes, dict[str, str]]) -> None:
        body, headers = request
        acceptable(world, world.client.post(path, data=body, headers=headers), outage)

    one()


def hostile_run(world: Sources, outage: bool) -> str:
    started = time.monotonic()
    for provider in ("gitlab", "bitbucket"):
        hammer(world, provider, outage)
    counts = " ".join(f"{status}:{count}" for status, count in sorted(world.counts.items()))
    took = f"{sum(world.counts.values())} requests in {time.monotonic() - started:.1f} s"
    return f"hostile source webhooks [{world.label}]: {took} -> {counts}"


def test_hostile_source_webhooks_never_get_a_5xx_but_a_503_to_redeliver(
    sources: Sources, capsys: pytest.CaptureFixture[str]
) -> None:
    line = hostile_run(sources, outage=False)
    assert sources.counts[202] > 0 and sources.counts[401] > 0 and sources.counts[400] > 0
    with capsys.disabled():
        print("\n" + line)


def test_hostile_source_webhooks_while_the_database_is_away_get_503_at_worst(
    stopped: Sources, capsys: pytest.CaptureFixture[str]
) -> None:
    line = hostile_run(stopped, outage=True)
    assert stopped.counts[503] > 0
    with capsys.disabled():
        print("\n" + line)


@pytest.mark.parametrize("provider", ["gitlab", "bitbucket"])
def test_a_redelivery_is_a_duplicate_and_a_bad_proof_stores_nothing(sources: Sources, provider: str) -> None:
    name = "push-event.json" if provider == "gitlab" else "repo-push.json"
    body = json.dumps(real(provider, name)).encode()
    headers = {"Content-Type": "application/json", **headers_for(provider, EVENTS[provider][name], body,
                                                                  sources.secrets[provider])}  # fmt: skip
    first = sources.client.post(f"/webhooks/source/{provider}", data=body, headers=headers)
    assert first.status_code == 202, first.get_data(as_text=True)
    again = sources.client.post(f"/webhooks/source/{provider}", data=body, headers=headers)
    assert again.status_code == 200 and "duplicate" in again.get_data(as_text=True)
    stored = sources.deliveries()
    proof = "X-Gitlab-Token" if provider == "gitlab" else "X-Hub-Signature"
    for forged in ("wrong", None):
        bad = {**headers, "X-Gitlab-Event-UUID": str(uuid.uuid4()), "X-Request-UUID": str(uuid.uuid4())}
        if forged is None:
            del bad[proof]
        else:
            bad[proof] = forged
        answer = sources.client.post(f"/webhooks/source/{provider}", data=body, headers=bad)
        assert answer.status_code == 401, answer.get_data(as_text=True)
    assert sources.deliveries() == stored


def test_the_same_delivery_id_from_two_providers_is_two_deliveries(sources: Sources) -> None:
    shared = str(uuid.uuid4())
    answers = []
    for provider, name in (("gitlab", "push-event.json"), ("bitbucket", "repo-push.json")):
        payload = real(provider, name)
        if provider == "gitlab":
            payload["after"] = "b" * 40
        else:
            payload["push"]["changes"][0]["new"]["target"]["hash"] = "c" * 40
        body = json.dumps(payload).encode()
        headers = headers_for(provider, EVENTS[provider][name], body, sources.secrets[provider])
        headers.update(
            {"X-Gitlab-Event-UUID": shared, "X-Request-UUID": shared, "Content-Type": "application/json"}
        )
        answers.append(sources.client.post(f"/webhooks/source/{provider}", data=body, headers=headers))
    assert [a.status_code for a in answers] == [202, 202], [a.get_data(as_text=True) for a in answers]


def test_an_unknown_provider_is_404_naming_the_known_ones(sources: Sources) -> None:
    answer = sources.client.post(
        "/webhooks/source/svn", data=b"{}", headers={"Content-Type": "application/json"}
    )
    assert answer.status_code == 404
    assert "bitbucket, github, gitlab" in answer.get_data(as_text=True)


def test_a_source_on_the_managed_gitlab_itself_is_refused(tmp_path: Path) -> None:
    app = make_app(
        tmp_path,
        f"sqlite:///{tmp_path / 'mw.db'}",
        gitlab_url="https://gitlab.centre.org",
        allowed_source_hosts="gitlab.centre.org,gitlab.example.org",  # allowed, and still refused
    )
    body = repository_body(
        full_name="firecrest-ci/7/cpu", clone_url="https://gitlab.centre.org/firecrest-ci/7/cpu.git"
    )
    body.update(provider="gitlab", trusted_users=[])
    answer = app.test_client().post("/api/repositories", json=body, headers=admin())
    assert answer.status_code == 422
    assert "managed GitLab" in json.dumps(answer.get_json())
    body.update(
        full_name="science/sim/hpc-code", clone_url="https://gitlab.example.org/science/sim/hpc-code.git"
    )
    made = app.test_client().post("/api/repositories", json=body, headers=admin())
    assert made.status_code == 201, made.get_data(as_text=True)  # subgroups are GitLab's own
