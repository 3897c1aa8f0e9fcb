"""Every answer is deliberate (issue 8): each expected failure of each route is a 4xx with a
readable text, an unreachable database is a 503, and nothing is a 500.

The first half pins the bugs found so far, one test each. The second half is the acceptance
test: hypothesis sends hostile requests to every route of `app.url_map` (a new route is covered
without touching this file), once with the database up (no 5xx at all, SQLite and PostgreSQL)
and once with its PostgreSQL cluster stopped and the registration cache cold (the only 5xx is
503). The outage runs on PostgreSQL only: SQLite is a file opened in-process, it is never away.
"""

from __future__ import annotations

import base64
import functools
import json
import re
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel
from sqlalchemy import String, select, update
from werkzeug.routing import Rule

from middleware.models import Delivery, Run
from middleware.registry.schemas import PipelineCreate, PipelineUpdate, RepositoryCreate, RepositoryUpdate
from middleware.services import EXTENSION, Services
from middleware.sources.github.signature import sign
from sandbox.servers import PostgresCluster
from tests.middleware.conftest import (
    ADMIN,
    admin,
    load_payload,
    make_app,
    postgres_database,
    repository_body,
    retarget,
)
from tests.middleware.test_api_trigger import serve_repository
from tests.middleware.test_hostile_deliveries import deliveries

GITLAB_TOKEN = "gitlab-hook-token-for-tests-0123456789"
FULL_NAME = "octo-org/hpc-code"
#: Nothing listens here: a request to "GitHub" fails at once instead of reaching the internet.
DEAD_GITHUB = "http://127.0.0.1:9"


@dataclass
class World:
    """An app with a registered repository (pipelines cpu and gpu) and what its owner knows."""

    app: Flask
    client: FlaskClient
    repo_id: int
    secret: str
    #: A second registration that generated admin calls may change or delete.
    scratch_id: int
    label: str
    counts: Counter[int] = field(default_factory=Counter)
    #: (route, status) of every answer, to see which checks the generator got past.
    reached: Counter[tuple[str, int]] = field(default_factory=Counter)

    @property
    def svc(self) -> Services:
        found: Services = self.app.extensions[EXTENSION]
        return found


def register(client: FlaskClient, full_name: str, clone_url: str) -> dict[str, Any]:
    answer = client.post(
        "/api/repositories", json=repository_body(full_name=full_name, clone_url=clone_url), headers=admin()
    )
    assert answer.status_code == 201, answer.get_data(as_text=True)
    repo: dict[str, Any] = answer.get_json()
    for name in ("cpu", "gpu"):
        made = client.post(
            f"/api/repositories/{repo['id']}/pipelines",
            json={"name": name, "entrypoint": f"ci/{name}.yml", "system": "daint"},
            headers=admin(),
        )
        assert made.status_code == 201, made.get_data(as_text=True)
    return repo


def build_world(tmp: Path, database_url: str, clone_url: str, label: str) -> World:
    app = make_app(
        tmp,
        database_url,
        gitlab_webhook_token=GITLAB_TOKEN,
        insecure_sandbox=True,  # the registered clone URL is a repository served on loopback
        github_api_url=DEAD_GITHUB,
    )
    client = app.test_client()
    repo = register(client, FULL_NAME, clone_url)
    scratch = register(client, "octo-org/scratch", clone_url)
    return World(app, client, repo["id"], repo["webhook_secret"], scratch["id"], label)


@contextmanager
def database(kind: str, tmp: Path) -> Iterator[str]:
    if kind == "sqlite":
        yield f"sqlite:///{tmp / 'mw.db'}"
    else:
        with postgres_database() as url:
            yield url


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """One app per database for the whole module: the generated requests share it, as a server would."""
    tmp = tmp_path_factory.mktemp(request.param)
    with serve_repository(tmp) as (clone_url, _shas), database(request.param, tmp) as url:
        made = build_world(tmp, url, clone_url, request.param)
        yield made
        made.svc.db.dispose()


@pytest.fixture(scope="module")
def outage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """A world on a PostgreSQL cluster of its own, which is then stopped, with a cold registration cache.

    The cluster is not under pytest's base directory: a concurrent pytest run makes that 0700
    again, and the cluster's `postgres` user would lose its way to the data directory.
    """
    tmp = tmp_path_factory.mktemp("outage")
    with (
        tempfile.TemporaryDirectory(prefix="fci-outage-") as where,
        PostgresCluster(Path(where)) as cluster,
        serve_repository(tmp) as (clone_url, _shas),
    ):
        made = build_world(tmp, cluster.create_database("app"), clone_url, "postgres, stopped")
        cluster.stop("fast")  # the pooled connections die with it
        made.svc.registrations.clear()
        yield made
        made.svc.db.dispose()


def github(world: World, event: str, body: bytes, *, delivery: str | None = None) -> Any:
    return world.client.post(
        "/webhooks/github",
        data=body,
        headers={
            "X-GitHub-Event": event,
            "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
            "X-Hub-Signature-256": sign(world.secret, body),
            "Content-Type": "application/json",
        },
    )


def project(world: World, pipeline: str = "cpu") -> str:
    """The mirror project of the registered repository's pipeline, as GitLab's hooks name it."""
    return f"{world.svc.settings.gitlab_group.strip('/')}/{world.repo_id}/{pipeline}"


def gitlab(world: World, pipeline_id: Any) -> Any:
    """A pipeline hook from the mirror project of `cpu` (made before per-project tokens: the shared one)."""
    return world.client.post(
        "/webhooks/gitlab",
        json={
            "object_kind": "pipeline",
            "object_attributes": {"id": pipeline_id},
            "project": {"path_with_namespace": project(world)},
        },
        headers={"X-Gitlab-Token": GITLAB_TOKEN},
    )


def push(full_name: str = FULL_NAME) -> bytes:
    payload = {"repository": {"full_name": full_name}, "ref": "refs/heads/main", "after": "a" * 40}
    return json.dumps(payload).encode()


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def text_of(answer: Any) -> str:
    return str(answer.get_data(as_text=True))


# -- the bugs, one test each ---------------------------------------------------------------


def test_webhook_while_the_database_is_away_gets_503_even_with_a_cold_cache(outage: World) -> None:
    """Bug 1: the registration look-up ran outside the `try`, so a cold cache made it a 500."""
    assert outage.svc.registrations.get(FULL_NAME) == (False, None)
    answer = github(outage, "push", push())
    assert answer.status_code == 503, text_of(answer)
    assert text_of(answer).startswith("storage unavailable (OperationalError)")
    assert "GitHub may redeliver" in text_of(answer)


def test_api_routes_while_the_database_is_away_get_503_in_json(outage: World) -> None:
    """Found with the generator: the registration API and the trigger API answered 500."""
    listing = outage.client.get("/api/repositories", headers=admin())
    trigger = outage.client.post(
        "/api/trigger", data="ref: main", headers={"Authorization": basic(str(outage.repo_id), outage.secret)}
    )
    for answer in (listing, trigger):
        assert answer.status_code == 503, text_of(answer)
        assert answer.get_json()["error"].startswith("storage unavailable (OperationalError)")
        assert answer.headers["Retry-After"]
    hook = gitlab(outage, 7)
    assert hook.status_code == 503
    assert outage.client.get("/healthz").status_code == 200  # what needs no database still answers


@pytest.mark.parametrize(
    "full_name",
    [
        "octo-org/hpc\x00code",
        "octo-org/hpc code",
        "octo-org/hpc-code\n",
        "octo-org/hpc-cöde",
        "octo-org/\ud800",
        "\uff4f\uff43\uff54\uff4f/hpc-code"  # full-width letters,
        "octo-org/" + "x" * 300,
    ],
)
def test_a_full_name_that_cannot_be_a_repository_is_400_before_any_lookup(
    world: World, full_name: str
) -> None:
    """Bug 2: a NUL in repository.full_name reached PostgreSQL (500).

    400 rather than 404: GitHub never sends such a name, and a name outside the registration
    API's own pattern cannot be registered, so the delivery is malformed whatever is stored.
    """
    for event in ("push", "ping"):
        answer = github(world, event, push(full_name))
        assert answer.status_code == 400, text_of(answer)
        assert "repository.full_name" in text_of(answer)
        assert "\x00" not in text_of(answer) and "x" * 300 not in text_of(answer)
    assert world.svc.registrations.get(full_name) == (False, None)  # never looked up


@pytest.mark.parametrize(
    "user", ["²", "١٢", "\uff11", "99999999999999999999", str(2**31), "1" * 5000, "0", "-1", "", "1.0"]
)
def test_trigger_basic_auth_user_that_is_no_repository_id_gets_401(world: World, user: str) -> None:
    """Bug 3: `isdigit()` admits `²` and numbers no id column holds; both were 500s."""
    for password in ("wrong", world.secret):
        answer = world.client.post(
            "/api/trigger", data="ref: main", headers={"Authorization": basic(user, password)}
        )
        assert answer.status_code == 401, text_of(answer)
        assert answer.get_json()["error"] in (
            "basic auth repository_id:webhook_secret required",
            "unknown repository or wrong webhook secret",
        )


@pytest.mark.parametrize(
    "pipeline_id",
    [0, -1, 2**63, 2**64, 10**30, True, False, "1", "", 1.0, 1.5, float("inf"), None, [], [1], {"id": 1}],
    ids=repr,
)
def test_gitlab_pipeline_hook_with_an_id_that_is_no_pipeline_id_gets_400(
    world: World, pipeline_id: Any
) -> None:
    """Bug 4: ids are 64-bit integers; anything else is refused before a query is made."""
    answer = gitlab(world, pipeline_id)
    assert answer.status_code == 400, text_of(answer)
    assert "object_attributes.id" in text_of(answer)


@pytest.mark.parametrize(
    "path",
    ["{group}/2147483648/cpu", "{group}/100000000000000000/cpu", "{group}/{id}/c\x00pu"],
    ids=["id-2**31", "id-10**17", "name-nul"],
)
def test_gitlab_hook_project_paths_that_name_no_project_get_401(
    world: World, path: str, request: pytest.FixtureRequest
) -> None:
    """A project path with an id beyond repositories.id or a NUL reaches PostgreSQL: 503, unauthenticated."""
    group = world.svc.settings.gitlab_group.strip("/")
    answer = world.client.post(
        "/webhooks/gitlab",
        json={
            "object_kind": "pipeline",
            "object_attributes": {"id": 7},
            "project": {"path_with_namespace": path.format(group=group, id=world.repo_id)},
        },
        headers={"X-Gitlab-Token": GITLAB_TOKEN},
    )
    assert answer.status_code == 401, text_of(answer)


def test_gitlab_hook_of_a_project_in_a_subgroup_is_followed(tmp_path: Path) -> None:
    """With GITLAB_GROUP `org/firecrest-ci`, a valid hook was a 500 (the id is read after the first "/")."""
    app = make_app(
        tmp_path, f"sqlite:///{tmp_path / 'mw.db'}", gitlab_webhook_token=GITLAB_TOKEN, gitlab_group="org/ci"
    )
    try:
        repo = register(app.test_client(), FULL_NAME, "https://github.com/octo-org/hpc-code.git")
        answer = app.test_client().post(
            "/webhooks/gitlab",
            json={
                "object_kind": "pipeline",
                "object_attributes": {"id": 7},
                "project": {"path_with_namespace": f"org/ci/{repo['id']}/cpu"},
            },
            headers={"X-Gitlab-Token": GITLAB_TOKEN},
        )
        assert answer.status_code == 202, text_of(answer)
    finally:
        app.extensions[EXTENSION].db.dispose()


def test_gitlab_pipeline_hook_reaches_runs_with_ids_beyond_32_bits(world: World) -> None:
    """Bug 4: runs.gitlab_pipeline_id is a BigInteger; ids above 2**31 and up to 2**63-1 are looked up."""
    assert github(world, "push", push()).status_code in (200, 202)
    with world.svc.db.session() as session:
        run_id = session.scalars(select(Run.id).where(Run.repository_id == world.repo_id)).first()
        session.execute(update(Run).where(Run.id == run_id).values(gitlab_pipeline_id=2**40))
    for pipeline_id, expected in (
        (2**40, f"following run {run_id}"),
        (2**31 + 1, "no run"),
        (2**63 - 1, "no run"),
    ):
        answer = gitlab(world, pipeline_id)
        assert answer.status_code == 202, text_of(answer)
        assert text_of(answer).startswith(expected)


@pytest.mark.parametrize(
    ("event", "delivery"),
    [
        ("x" * 51, None),
        ("push\x00", None),
        ("pusch é", None),
        ("push", "d" * 101),
        ("push", "d\x00"),
        ("push", "é" * 60),
    ],
    ids=[
        "event-too-long",
        "event-nul",
        "event-not-ascii",
        "delivery-too-long",
        "delivery-nul",
        "delivery-not-ascii",
    ],
)
def test_signed_header_values_that_do_not_fit_their_columns_get_400(
    world: World, event: str, delivery: str | None
) -> None:
    """Bug 5: an event name longer than deliveries.event (50) was a 503 (DataError) on PostgreSQL."""
    answer = github(world, event, push(), delivery=delivery)
    assert answer.status_code == 400, text_of(answer)
    assert "X-GitHub-Event" in text_of(answer)


def test_header_values_as_long_as_their_columns_are_stored(world: World) -> None:
    """The header checks and the columns agree: the longest allowed values are accepted and stored."""
    lengths = []
    for column in (Delivery.__table__.c.event, Delivery.__table__.c.id):
        assert isinstance(column.type, String) and column.type.length
        lengths.append(column.type.length)
    event, delivery = "x" * lengths[0], "d" * lengths[1]
    answer = github(world, event, push(), delivery=delivery)
    assert answer.status_code == 202, text_of(answer)
    with world.svc.db.session() as session:
        assert session.get(Delivery, delivery).event == event


@pytest.mark.parametrize("repo_id", [2**31, 2**63, 10**30])
def test_api_ids_beyond_the_id_column_get_404(world: World, repo_id: int) -> None:
    """Found with the generator: ids above 2**31 (PostgreSQL) or 2**63 (SQLite) were 500s."""
    for method, path in (
        ("GET", f"/api/repositories/{repo_id}"),
        ("PATCH", f"/api/repositories/{repo_id}"),
        ("DELETE", f"/api/repositories/{repo_id}/pipelines/cpu"),
        ("GET", f"/api/repositories/{repo_id}/runs"),
    ):
        answer = world.client.open(path, method=method, json={}, headers=admin())
        assert answer.status_code == 404, (method, path, text_of(answer))
        assert answer.get_json()["error"] == f"no repository with id {repo_id}"


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 5000,
        b'{"full_name": ' + b"9" * 5000 + b"}",
    ],
    ids=["nested-too-deep", "integer-too-long"],
)
def test_json_bodies_python_cannot_read_get_400(world: World, body: bytes) -> None:
    """Found with the generator: RecursionError and the int-digits limit escaped as 500s,
    from the GitHub intake before the signature was even checked."""
    repository = world.client.post("/api/repositories", data=body, headers=admin())
    assert repository.status_code == 400, text_of(repository)
    assert "not valid JSON" in repository.get_json()["error"]
    delivery = github(world, "push", body)
    assert delivery.status_code == 400, text_of(delivery)
    assert "not valid JSON" in text_of(delivery)


def test_gitlab_hook_body_nested_too_deep_gets_a_4xx(world: World) -> None:
    """Found with the generator: Flask's `get_json(silent=True)` lets RecursionError through (500),
    before the token is checked. Invalid JSON names no project, so it has no token: 401."""
    answer = world.client.post(
        "/webhooks/gitlab",
        data=b"[" * 5000,
        headers={"X-Gitlab-Token": GITLAB_TOKEN, "Content-Type": "application/json"},
    )
    assert answer.status_code == 401, text_of(answer)


@pytest.mark.parametrize(
    "body",
    [
        "[" * 1200,  # deeper than the recursion limit; PyYAML's scanner is slow on more
        "ref: 2001-02-30",
        "ref: " + "9" * 5000,
        "ref: !!timestamp x",
        "ref: !!int 1.5",
        "ref: !!float x",
    ],
    ids=["nested-too-deep", "no-such-date", "integer-too-long", "bad-timestamp", "bad-int", "bad-float"],
)
def test_trigger_bodies_pyyaml_cannot_read_get_400(world: World, body: str) -> None:
    """Found with the generator: PyYAML fails on hostile input with more than YAMLError."""
    answer = world.client.post(
        "/api/trigger", data=body, headers={"Authorization": basic(str(world.repo_id), world.secret)}
    )
    assert answer.status_code == 400, text_of(answer)
    assert "neither valid YAML nor JSON" in answer.get_json()["error"]


def test_trigger_variable_values_too_long_to_write_get_422(world: World) -> None:
    """Found with the generator: a YAML hex integer of 5000 digits could not be made a string (500)."""
    answer = world.client.post(
        "/api/trigger",
        data="ref: main\npipeline: cpu\nvariables: {N: 0x" + "f" * 5000 + "}",
        headers={"Authorization": basic(str(world.repo_id), world.secret)},
    )
    assert answer.status_code == 422, text_of(answer)
    assert "variable 'N'" in answer.get_json()["error"]


@pytest.mark.parametrize(
    ("method", "path", "body", "where"),
    [
        (
            "POST",
            "/api/repositories",
            repository_body(full_name="o/nul", firecrest_client_id="a\x00b"),
            "firecrest_client_id",
        ),
        (
            "POST",
            "/api/repositories",
            repository_body(full_name="o/nul", default_account="\x00"),
            "default_account",
        ),
        (
            "POST",
            "/api/repositories/{id}/pipelines",
            {"name": "n\x00", "entrypoint": "a", "system": "c"},
            "name",
        ),
        (
            "POST",
            "/api/repositories/{id}/pipelines",
            {"name": "n", "entrypoint": "a\x00", "system": "c"},
            "entrypoint",
        ),
        ("PATCH", "/api/repositories/{id}/pipelines/cpu", {"variables": {"A": "\x00"}}, "variables.A"),
        ("PATCH", "/api/repositories/{id}", {"branches": ["main"], "\x00": 1}, "\\x00"),
    ],
    ids=["client-id", "account", "pipeline-name", "entrypoint", "variable-value", "field-name"],
)
def test_nul_characters_in_registration_fields_get_422(
    world: World, method: str, path: str, body: dict[str, Any], where: str
) -> None:
    """Found with the generator: PostgreSQL refuses NUL in text, so writing a name, account or
    entrypoint with one was a 500. One rule for every field (secrets are sealed, but no secret
    holds a NUL either), and the answer names the field without echoing the value."""
    answer = world.client.open(path.format(id=world.scratch_id), method=method, json=body, headers=admin())
    assert answer.status_code == 422, text_of(answer)
    assert answer.get_json()["details"] == [{"field": where, "message": "must not contain NUL characters"}]
    assert "\x00" not in text_of(answer) and "\\u0000" not in text_of(answer)


# -- the acceptance test: hostile requests to every route --------------------------------

HOSTILE_TEXT = [
    "",
    " ",
    "\x00",
    "a\x00b",
    "²",
    "١٢",
    "\uff11",
    "99999999999999999999",
    "-1",
    "0",
    "x" * 101,
    "x" * 301,
    "x" * 5000,
    "é" * 200,
    "\ud800",
    "\u202eevil",
    "../../etc/passwd",
    "--upload-pack=touch /tmp/pwned",
    "refs/heads/main\n",
    "main",
    "pr:5",
    "pr:²",
    "pr:" + "9" * 30,
    "tag:v1",
    "sha:" + "a" * 40,
    FULL_NAME,
    "octo-org/hpc\x00code",
    "firecrest-ci run cpu",
    "${{ secrets.TOKEN }}",
]
HOSTILE_INT = [0, -1, 1, 2**31 - 1, 2**31, 2**53 + 1, 2**63 - 1, 2**63, 2**64, 10**30, -(2**63) - 1]
scalars = st.one_of(
    st.sampled_from(HOSTILE_TEXT),
    st.sampled_from(HOSTILE_INT),
    st.text(max_size=30),
    st.integers(),
    st.floats(),
    st.booleans(),
    st.none(),
)
values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=8,
)
#: Bodies no parser should survive: too deep, digits beyond Python's limit, YAML it cannot construct.
RAW_BODIES = [
    b"[" * 3000,
    b"{" * 3000,
    b'{"a": ' + b"9" * 5000 + b"}",
    b"\xff\xfe\x00",
    b"ref: 2001-02-30",
    b"ref: !!timestamp x",
    b"ref: !!python/object/apply:os.system [id]",
    b"variables: {N: 0x" + b"f" * 5000 + b"}",
    b"a: &a [*a, *a]\nref: *a",
    b"payload=%00",
    b"payload=" + quote(json.dumps({"repository": {"full_name": FULL_NAME}})).encode(),
]
header_text = st.one_of(
    st.sampled_from(
        ["", "push", "ping", "pull_request", "issue_comment", "x" * 51, "d" * 101, "push\x00", "é" * 60]
    ),
    st.text(st.characters(max_codepoint=255, exclude_characters="\r\n"), max_size=60),
)
#: The registration API's bodies: a valid one, and its model's fields to put hostile values in.
REGISTRY_BODIES: dict[str, tuple[type[BaseModel], dict[str, Any]]] = {
    "registry.create_repository": (
        RepositoryCreate,
        repository_body(
            full_name="octo-org/generated", clone_url="https://github.com/octo-org/generated.git"
        ),
    ),
    "registry.update_repository": (RepositoryUpdate, {"default_account": "proj43"}),
    "registry.create_pipeline": (
        PipelineCreate,
        {
            "name": "generated",
            "entrypoint": "ci/x.yml",
            "system": "daint",
            "variables": {"A": "b"},
            "tags": ["v*"],
        },
    ),
    "registry.update_pipeline": (PipelineUpdate, {"entrypoint": "ci/y.yml"}),
}
METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
_PLACEHOLDER = re.compile(r"<(?:(\w+)(?:\([^)]*\))?:)?(\w+)>")


def encoded(value: Any, kind: str) -> bytes:
    """`value` as JSON, YAML or a GitHub form body; JSON for whatever YAML cannot represent."""
    text = json.dumps(value)  # YAML's flow style is a superset of JSON
    if kind == "form":
        return b"payload=" + quote(text).encode()
    return text.encode()


#: Real example deliveries (retargeted to the registered repository) and the fields their handling
#: reads: hostile values put there get past parsing and the signature, into policy and storage.
REAL_PAYLOADS = {
    "push": ("push", "payload.json"),
    "pull_request": ("pull_request", "synchronize.payload.json"),
    "issue_comment": ("issue_comment", "created.payload.json"),
    "ping": ("ping", "payload.json"),
}
FIELDS = {
    "push": ["ref", "after", "before", "deleted", "sender.login", "pusher.name", "repository.full_name"],
    "pull_request": [
        "action",
        "pull_request.number",
        "pull_request.user.login",
        "pull_request.user.id",
        "pull_request.head.sha",
        "pull_request.head.ref",
        "pull_request.head.repo",
        "pull_request.head.repo.full_name",
        "pull_request.base.ref",
        "repository.full_name",
    ],
    "issue_comment": [
        "action",
        "issue.number",
        "issue.pull_request",
        "comment.user.login",
        "comment.user.id",
        "comment.body",
        "comment.created_at",
        "repository.full_name",
    ],
    "ping": ["zen", "hook", "repository", "repository.full_name"],
}
#: Plausible values, so that a hostile one sits among fields that pass.
PLAUSIBLE = ["refs/heads/main", "refs/heads/feature", "a" * 40, "0" * 40, "opened", "synchronize"]
PLAUSIBLE += ["created", "closed", FULL_NAME, "octo-org/fork", "alice", 5, 7]


@functools.cache
def real_payload(event: str) -> str:
    return json.dumps(retarget(load_payload(*REAL_PAYLOADS[event])))


def put(payload: dict[str, Any], path: str, value: Any) -> None:
    """Set a dotted path, making (or replacing) the objects on the way."""
    *parents, last = path.split(".")
    for part in parents:
        if not isinstance(payload.get(part), dict):
            payload[part] = {}
        payload = payload[part]
    payload[last] = value


def mostly(likely: st.SearchStrategy[Any], rest: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """`likely` four times in five: past the first check, so that the later ones are reached too."""
    # Not one_of(likely, likely, ...): hypothesis draws the branches of a one_of nearly evenly.
    return st.sampled_from([True, True, True, True, False]).flatmap(lambda hit: likely if hit else rest)


@st.composite
def github_payloads(draw: st.DrawFn) -> tuple[dict[str, str], Any]:
    """A real delivery with up to three fields made hostile, or a generated one; with its event name."""
    if draw(st.sampled_from([True, True, True, False])):
        event = draw(st.sampled_from(sorted(REAL_PAYLOADS)))
        payload = json.loads(real_payload(event))
        for path in draw(st.lists(st.sampled_from(FIELDS[event]), max_size=3, unique=True)):
            put(payload, path, draw(st.sampled_from(PLAUSIBLE) | values))
    else:
        event, payload = draw(deliveries())
    return {"X-GitHub-Event": event}, payload


def route_bodies(world: World, endpoint: str) -> st.SearchStrategy[tuple[dict[str, str], Any]]:
    """Valid-looking payloads for the route with hostile values in them, and headers that go with them."""
    if endpoint.endswith("github_webhook"):
        return github_payloads()
    if endpoint.endswith("gitlab_webhook"):
        group = world.svc.settings.gitlab_group.strip("/")
        paths = [project(world, "gpu"), f"{group}/{world.scratch_id}/cpu", f"{group}/{'9' * 30}/cpu"]
        paths += [f"{group}/\u0661/cpu", f"{group}/{world.repo_id}", "other/1/cpu"]
        paths += [f"{group}/{2**31}/cpu", f"{group}/{world.repo_id}/\x00"]
        ids = st.sampled_from([7, 2**40, 2**63 - 1]) | values
        named = st.fixed_dictionaries(
            {"path_with_namespace": mostly(st.just(project(world)), st.sampled_from(paths) | scalars)}
        )
        hook = st.fixed_dictionaries(
            {
                "object_kind": mostly(st.just("pipeline"), scalars),
                "object_attributes": mostly(st.fixed_dictionaries({"id": ids, "status": values}), values),
                "project": mostly(named, values),
            }
        )
        return hook.map(lambda body: ({}, body))
    if endpoint.endswith("api_trigger"):
        names = st.sampled_from(["N", "CI_JOB_TOKEN", "a b", "\x00"]) | st.text(max_size=8)
        refs = st.sampled_from(["main", "pr:5", "tag:v1", "feature", "sha:" + "a" * 40])
        variables = st.dictionaries(
            mostly(st.just("N"), names), mostly(st.text(max_size=10), values), max_size=3
        )
        trigger = st.fixed_dictionaries(
            {"ref": mostly(refs, scalars), "pipeline": mostly(st.sampled_from(["cpu", "gpu"]), scalars)},
            optional={"variables": mostly(variables, values)},
        )
        trigger = mostly(trigger, st.fixed_dictionaries({"extra": values}, optional={"ref": refs}))
        return trigger.map(lambda body: ({}, body))
    if endpoint in REGISTRY_BODIES:
        model, valid = REGISTRY_BODIES[endpoint]
        fields = st.sampled_from([*model.model_fields, "unknown"])
        return st.dictionaries(fields, values, max_size=3).map(lambda hostile: ({}, {**valid, **hostile}))
    return values.map(lambda body: ({}, body))


@st.composite
def hostile_requests(draw: st.DrawFn, world: World, rule: Rule) -> dict[str, Any]:
    """One request to `rule`: method, path, headers (auth included) and a body.

    Weighted towards getting past the first check, so that the deeper ones are reached: a method
    the route allows, its own credentials, plausible GitHub headers, a valid signature.
    """
    allowed = sorted(set(rule.methods or {"GET"}) - {"HEAD", "OPTIONS"}) or ["GET"]
    method = draw(mostly(st.sampled_from(allowed), st.sampled_from(METHODS)))
    mutating = method not in ("GET", "HEAD", "OPTIONS")
    ids = [world.scratch_id, world.scratch_id, 999_999, 0, 2**31 - 1, 2**31, 2**63, 10**30]
    ids += [] if mutating else [world.repo_id]  # the registration deliveries need is left alone

    def fill(match: re.Match[str]) -> str:
        if match.group(1) == "int":
            return quote(str(draw(st.sampled_from(ids) | st.sampled_from(["²", "١٢", "9" * 5000]))))
        names = st.sampled_from(["cpu", "gpu", "cpu", "..", "%", "\x00", "x" * 300]) | st.text(max_size=20)
        return quote(draw(names), safe="")

    path = _PLACEHOLDER.sub(fill, rule.rule)
    kind = draw(mostly(st.sampled_from(["json", "json", "form", "yaml"]), st.sampled_from(["raw", "bytes"])))
    hints: dict[str, str] = {}
    if kind == "raw":
        body = draw(st.sampled_from(RAW_BODIES))
    elif kind == "bytes":
        body = draw(st.binary(max_size=200))
    else:
        specific = route_bodies(world, rule.endpoint)
        hints, value = draw(mostly(specific, values.map(lambda v: ({}, v))))
        body = encoded(value, kind)
    content_types = st.sampled_from(["application/json", "text/plain", "application/octet-stream", "x/\x00"])
    headers = {
        "Content-Type": {"form": "application/x-www-form-urlencoded", "yaml": "application/yaml"}.get(kind)
        or draw(st.just("application/json") | content_types)
    }
    trigger = rule.endpoint.endswith("api_trigger")
    proper = basic(str(world.repo_id), world.secret) if trigger else f"Bearer {ADMIN}"
    users = st.sampled_from(
        [str(world.repo_id), str(world.scratch_id), "²", "99999999999999999999", "1" * 5000, "0"]
    )
    wrong = st.sampled_from(["Bearer", "Bearer wrong", "Basic", "Basic !!!", "Digest x", ""]) | st.builds(
        basic, users | st.text(max_size=10), st.sampled_from([world.secret, "wrong"]) | st.text(max_size=10)
    )
    authorization = draw(mostly(st.just(proper), wrong | header_text))
    if authorization:
        headers["Authorization"] = authorization
    events = st.sampled_from(["push", "ping", "create", "pull_request", "issue_comment"]) | header_text
    headers["X-GitHub-Event"] = draw(mostly(st.just(hints.get("X-GitHub-Event", "push")), events))
    headers["X-GitHub-Delivery"] = draw(mostly(st.uuids().map(str), header_text))
    headers["X-Hub-Signature-256"] = draw(mostly(st.just(sign(world.secret, body)), header_text))
    headers["X-Gitlab-Token"] = draw(mostly(st.just(GITLAB_TOKEN), header_text))
    for name in draw(st.lists(st.sampled_from(sorted(headers)), max_size=2, unique=True)):
        del headers[name]  # and some go missing
    return {"method": method, "path": path, "data": body, "headers": headers, "rule": rule.rule}


def routes(app: Flask) -> list[Rule]:
    found = sorted(app.url_map.iter_rules(), key=lambda rule: rule.rule)
    assert {"/webhooks/github", "/webhooks/gitlab", "/api/trigger", "/api/repositories", "/metrics"} <= {
        rule.rule for rule in found
    }
    return found


def send(world: World, request: dict[str, Any]) -> Any:
    answer = world.client.open(
        request["path"], method=request["method"], data=request["data"], headers=request["headers"]
    )
    world.counts[answer.status_code] += 1
    world.reached[request["rule"], answer.status_code] += 1
    text = text_of(answer)
    assert world.secret not in text and ADMIN not in text, "an answer echoed a secret"
    if 400 <= answer.status_code < 600 and request["method"] != "HEAD":
        assert text.strip() and "Traceback" not in text, f"{answer.status_code} without a readable text"
    return answer


def sweep(world: World, rules: list[Rule]) -> list[tuple[dict[str, Any], Any]]:
    """Every method of every route once, with valid credentials and an empty object, whatever the
    generator drew. Deletions go last: they take the scratch registration away."""
    sent = []
    pairs = [(rule, method) for rule in rules for method in sorted(rule.methods or ())]
    for rule, method in sorted(pairs, key=lambda pair: (pair[1] == "DELETE", pair[0].rule, pair[1])):
        path = _PLACEHOLDER.sub(lambda m: str(world.scratch_id) if m.group(1) == "int" else "cpu", rule.rule)
        body = b"{}"
        trigger = rule.endpoint.endswith("api_trigger")
        headers = {
            "Authorization": basic(str(world.repo_id), world.secret) if trigger else f"Bearer {ADMIN}",
            "Content-Type": "application/json",
            "X-GitHub-Event": "push",
            "X-GitHub-Delivery": str(uuid.uuid4()),
            "X-Hub-Signature-256": sign(world.secret, body),
            "X-Gitlab-Token": GITLAB_TOKEN,
        }
        request = {"method": method, "path": path, "data": body, "headers": headers, "rule": rule.rule}
        sent.append((request, send(world, request)))
    return sent


def acceptable(answer: Any, request: dict[str, Any], outage: bool) -> None:
    status, text = answer.status_code, text_of(answer)
    where = (request["method"], request["path"][:80], text[:300])
    if outage:
        assert status < 500 or status == 503, where
        assert status != 503 or request["method"] == "HEAD" or "unavailable" in text, where
    elif status == 503:
        # This app has no managed GitLab (its configuration, not the input): /readyz and the run
        # actions say so, readably. Nothing else may answer 5xx.
        assert request["method"] == "HEAD" or ("not configured" in text and "gitlab" in text.lower()), where
    else:
        assert status < 500, where


def hammer(world: World, rule: Rule, examples: int, outage: bool) -> None:
    """Hostile requests to one route; routes that take a body get more of them."""

    @settings(max_examples=examples, deadline=None, database=None)
    @given(request=hostile_requests(world, rule))
    def one(request: dict[str, Any]) -> None:
        acceptable(send(world, request), request, outage)

    one()


def hostile_run(world: World, outage: bool) -> str:
    """Every route of the app, then the sweep; the summary line of the answers."""
    rules = routes(world.app)
    started = time.monotonic()
    for rule in rules:
        takes_body = bool({"POST", "PATCH"} & set(rule.methods or ()))
        hammer(world, rule, (30 if outage else 45) if takes_body else (6 if outage else 8), outage)
    for request, answer in sweep(world, rules):
        acceptable(answer, request, outage)
    for rule in rules:
        assert any(route == rule.rule for route, _status in world.reached), f"{rule.rule} never reached"
    counts = " ".join(f"{status}:{count}" for status, count in sorted(world.counts.items()))
    took = (
        f"{sum(world.counts.values())} requests to {len(rules)} routes in {time.monotonic() - started:.1f} s"
    )
    return f"hostile routes [{world.label}]: {took} -> {counts}"


def test_hostile_requests_to_every_route_never_get_a_5xx(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    line = hostile_run(world, outage=False)
    assert world.counts[202] > 0 and world.counts[201] > 0  # some got all the way through
    with capsys.disabled():
        print("\n" + line)


def test_hostile_requests_while_the_database_is_away_get_503_at_worst(
    outage: World, capsys: pytest.CaptureFixture[str]
) -> None:
    line = hostile_run(outage, outage=True)
    assert outage.counts[503] > 0  # the outage was met, not only answered around
    with capsys.disabled():
        print("\n" + line)
