"""Tokens, /status, error shapes and service health, against the recorded real responses."""

from __future__ import annotations

import base64
import os
import time

import httpx
import pytest
from firecrest.FirecrestException import FirecrestException

from sandbox.firecrest.state import RECORDED_UID
from tests.sandbox.conftest import configure, keys, new_token


def error_of(excinfo: pytest.ExceptionInfo[FirecrestException]) -> tuple[int, dict]:
    response = excinfo.value.responses[-1]
    return response.status_code, response.json()


def test_token_by_post_and_basic_and_refusals(box):
    by_post = httpx.post(
        box.token_url,
        data={
            "grant_type": "client_credentials",
            "client_id": box.client_id,
            "client_secret": box.client_secret,
        },
    )
    assert by_post.status_code == 200
    body = by_post.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 300 and len(body["access_token"]) > 20
    basic = base64.b64encode(f"{box.client_id}:{box.client_secret}".encode()).decode()
    by_basic = httpx.post(
        box.token_url, data={"grant_type": "client_credentials"}, headers={"Authorization": f"Basic {basic}"}
    )
    assert by_basic.status_code == 200
    assert by_basic.json()["access_token"] != body["access_token"]
    wrong = httpx.post(
        box.token_url,
        data={"grant_type": "client_credentials", "client_id": box.client_id, "client_secret": "nope"},
    )
    assert wrong.status_code == 401 and wrong.json()["error"] == "invalid_client"
    grant = httpx.post(box.token_url, data={"grant_type": "password", "client_id": box.client_id})
    assert grant.status_code == 400 and grant.json()["error"] == "unsupported_grant_type"
    ok = httpx.get(f"{box.url}/status/systems", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert ok.status_code == 200


def test_missing_and_bad_tokens_answer_like_the_real_server(box, real_responses):
    no_token = httpx.get(f"{box.url}/status/systems")
    assert (no_token.status_code, no_token.json()) == (401, real_responses["no_token"]["body"])
    bad = httpx.get(f"{box.url}/compute/cluster/jobs", headers={"Authorization": "Bearer nope"})
    assert (bad.status_code, bad.json()) == (401, real_responses["bad_token"]["body"])


def test_expired_and_nearly_expired_tokens_are_refused(box):
    configure(box, token_lifetime=20)  # less than the 30 s the real server requires
    soon = new_token(box)
    refused = httpx.get(f"{box.url}/status/systems", headers={"Authorization": f"Bearer {soon}"})
    assert refused.status_code == 401
    assert refused.json()["message"] == "Access token expires too soon (less than 30s remaining)."
    configure(box, token_lifetime=0.3)
    short = new_token(box)
    time.sleep(0.4)
    expired = httpx.get(f"{box.url}/status/systems", headers={"Authorization": f"Bearer {short}"})
    assert (expired.status_code, expired.json()["message"]) == (401, "Access token expired")
    assert set(expired.json()) == {"errorType", "message", "causedBy", "data", "user"}


def test_systems_have_the_recorded_shape(client, box, real_responses):
    configure(box, data_transfer=None)  # the recorded server has no staged-transfer backend
    systems = client.systems()
    real = real_responses["systems"]["body"]["systems"][0]
    assert [s["name"] for s in systems] == ["cluster", "daint"]
    system = systems[0]
    assert keys(system) == keys(real)
    root = box.config.user_root("cluster")
    assert system["fileSystems"] == [{"path": str(root), "dataType": "users", "defaultWorkDir": True}]
    assert root.is_absolute() and (root / "fireuser").is_dir()
    assert system["dataOperation"]["max_ops_file_size"] == 5 * 1024 * 1024
    assert [(s["serviceType"], s["healthy"]) for s in system["servicesHealth"]] == [
        ("scheduler", True),
        ("ssh", True),
        ("filesystem", True),
    ]
    assert client.server_version() == "2.6.0"


def test_version_headers(box, api):
    response = api.get("/status/systems")
    assert response.headers["f7t-appversion"] == "2.6.0"
    assert response.headers["f7t-authusername"] == "fireuser"
    assert float(response.headers["f7t-timestamp"]) > 0
    assert httpx.get(f"{box.url}/status/systems").headers["f7t-appversion"] == "2.6.0"


def test_userinfo(client):
    info = client.userinfo("cluster")
    assert info["user"] == {"id": str(os.getuid() or RECORDED_UID), "name": "fireuser"}
    assert info["group"]["name"] == "f7tusers"
    assert info["groups"] == [info["group"]]


def test_unknown_system_route_and_method(client, api, real_responses):
    with pytest.raises(FirecrestException) as unknown:
        client.job_info("nowhere", "1")
    assert error_of(unknown) == (404, real_responses["unknown_system"]["body"])
    route = api.get("/compute/cluster/nothing/here/at/all")
    assert route.status_code == 404
    assert set(route.json()) == set(real_responses["unknown_job"]["body"])
    method = api.put("/status/systems")
    assert method.status_code == 405 and method.json()["errorType"] == "error"


def test_paths_are_lower_cased_like_the_real_server(api):
    assert api.get("/Status/Systems").status_code == 200
    assert api.get("/STATUS/CLUSTER/userinfo").status_code == 200


def test_unhealthy_services_are_reported_and_enforced(box, api, home):
    configure(box, unhealthy={"cluster": {"scheduler": "slurmctld is down", "filesystem": "stale mount"}})
    systems = {s["name"]: s for s in api.get("/status/systems").json()["systems"]}
    health = {s["serviceType"]: s for s in systems["cluster"]["servicesHealth"]}
    assert (health["scheduler"]["healthy"], health["scheduler"]["message"]) == (False, "slurmctld is down")
    assert (health["filesystem"]["healthy"], health["filesystem"]["message"]) == (False, "stale mount")
    assert health["ssh"]["healthy"] is True
    assert all(s["healthy"] for s in systems["daint"]["servicesHealth"])
    submit = api.post(
        "/compute/cluster/jobs", json={"job": {"script": "#!/bin/bash\n", "working_directory": home}}
    )
    assert submit.status_code == 503
    assert (
        submit.json()["message"] == "The scheduler service for the requested system (cluster) is unhealthy."
    )
    listing = api.get("/filesystem/cluster/ops/ls", params={"path": home})
    assert listing.status_code == 503
    root = box.config.user_root("cluster")
    assert listing.json()["message"] == f"The requested filesystem ({root} on cluster) is unhealthy."
    assert api.get("/status/cluster/userinfo").status_code == 200  # needs ssh only
    configure(box, unhealthy={"cluster": {"ssh": "sshd refuses"}})
    userinfo = api.get("/status/cluster/userinfo")
    assert userinfo.status_code == 503
    assert userinfo.json()["message"] == "The ssh service for the requested system (cluster) is unhealthy."
    configure(box, unhealthy={})
    assert api.get("/filesystem/cluster/ops/ls", params={"path": home}).status_code == 200


def test_bad_knobs_are_refused(box):
    for knobs in ({"nope": 1}, {"fault_5xx_rate": 2}, {"unhealthy": {"cluster": {"gpu": "x"}}}):
        assert httpx.patch(f"{box.url}/_sandbox/config", json=knobs).status_code == 400
