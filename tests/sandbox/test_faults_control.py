"""Seeded fault injection, after-commit losses, and the /_sandbox controls."""

from __future__ import annotations

import httpx
import pytest

from tests.sandbox.conftest import configure, control_jobs, new_token


def statuses(box, seed: int, count: int = 40) -> list[tuple[int, str | None]]:
    token = new_token(box)  # before the faults: the token endpoint is never faulted anyway
    configure(box, fault_5xx_rate=0.3, fault_429_rate=0.2, fault_seed=seed)
    seen = []
    with httpx.Client(base_url=box.url, headers={"Authorization": f"Bearer {token}"}) as raw:
        for _ in range(count):
            response = raw.get("/status/systems")
            seen.append((response.status_code, response.headers.get("Retry-After")))
    configure(box, fault_5xx_rate=0.0, fault_429_rate=0.0)
    return seen


def test_same_seed_same_faults(fresh):
    first, second, other = statuses(fresh, 7), statuses(fresh, 7), statuses(fresh, 8)
    assert first == second
    assert first != other
    codes = {code for code, _ in first}
    assert 200 in codes and 429 in codes and codes & {500, 502, 503}
    assert all(retry in ("0", "1") for code, retry in first if code == 429)
    faulted = httpx.get(f"{fresh.url}/_sandbox/stats").json()["faults"]
    assert sum(faulted.values()) == sum(1 for run in (first, second, other) for code, _ in run if code != 200)


def test_faults_keep_the_real_error_shape(box, real_responses):
    token = new_token(box)
    configure(box, fault_5xx_rate=1.0, fault_seed=1)
    response = httpx.get(f"{box.url}/status/systems", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code in (500, 502, 503)
    assert set(response.json()) == set(real_responses["unknown_job"]["body"])
    assert (
        httpx.post(box.token_url, data={"grant_type": "client_credentials"}).status_code == 401
    )  # not faulted
    assert httpx.get(f"{box.url}/_sandbox/jobs").status_code == 200  # controls are never faulted


def test_after_commit_5xx_on_submit_really_created_the_job(box, home):
    headers = {"Authorization": f"Bearer {new_token(box)}"}
    before = {j["jobId"] for j in control_jobs(box)}
    httpx.post(f"{box.url}/_sandbox/stats/reset")
    configure(box, fault_5xx_rate=1.0, fault_seed=2026)
    body = {"job": {"script": "#!/bin/bash\ntrue\n", "working_directory": home, "name": "lost-answer"}}
    answers = [httpx.post(f"{box.url}/compute/cluster/jobs", json=body, headers=headers) for _ in range(12)]
    configure(box, fault_5xx_rate=0.0)
    assert {r.status_code for r in answers} <= {500, 502, 503}
    created = [j for j in control_jobs(box) if j["jobId"] not in before]
    faults = httpx.get(f"{box.url}/_sandbox/stats").json()["faults"]
    after_commit = sum(n for label, n in faults.items() if label.endswith("-after-commit"))
    assert 0 < after_commit < 12
    assert len(created) == after_commit
    assert all(j["name"] == "lost-answer" for j in created)


def test_timeout_fault_delays_the_answer(box):
    token = new_token(box)
    configure(box, fault_timeout_rate=1.0, fault_timeout_seconds=0.6, fault_seed=3)
    with pytest.raises(httpx.ReadTimeout):
        httpx.get(f"{box.url}/status/systems", headers={"Authorization": f"Bearer {token}"}, timeout=0.2)
    late = httpx.get(f"{box.url}/status/systems", headers={"Authorization": f"Bearer {token}"}, timeout=5)
    assert late.status_code == 200


def test_stats_count_requests_by_route_and_tokens_apart(fresh):
    httpx.post(f"{fresh.url}/_sandbox/stats/reset")
    headers = {"Authorization": f"Bearer {new_token(fresh)}"}
    home = str(fresh.config.home("cluster"))
    httpx.get(f"{fresh.url}/status/systems", headers=headers)
    httpx.get(f"{fresh.url}/compute/cluster/jobs/1", headers=headers)
    httpx.get(f"{fresh.url}/compute/cluster/jobs/2", headers=headers)
    httpx.get(f"{fresh.url}/filesystem/cluster/ops/ls", params={"path": home}, headers=headers)
    stats = httpx.get(f"{fresh.url}/_sandbox/stats").json()
    assert stats["requests"] == {
        "GET /status/systems": 1,
        "GET /compute/{system}/jobs/{job_id}": 2,
        "GET /filesystem/{system}/ops/ls": 1,
    }
    assert (stats["total"], stats["token_requests"], stats["faults"]) == (4, 1, {})
    assert httpx.post(f"{fresh.url}/_sandbox/stats/reset").status_code == 204
    assert httpx.get(f"{fresh.url}/_sandbox/stats").json()["total"] == 0


def test_control_jobs_and_tokens(fresh):
    token = new_token(fresh)
    assert token in httpx.get(f"{fresh.url}/_sandbox/tokens").json()["tokens"]
    headers = {"Authorization": f"Bearer {token}"}
    home = str(fresh.config.home("cluster"))
    body = {"job": {"script": "#!/bin/bash\nexit 0\n", "working_directory": home, "name": "seen"}}
    job_id = httpx.post(f"{fresh.url}/compute/cluster/jobs", json=body, headers=headers).json()["jobId"]
    [job] = httpx.get(f"{fresh.url}/_sandbox/jobs").json()["jobs"]
    assert (job["jobId"], job["name"], job["workingDirectory"]) == (job_id, "seen", home)
    assert job["standardOutput"] == f"{home}/slurm-{job_id}.out"
    assert {"state", "exitCode", "system", "start", "end"} <= set(job)
    assert httpx.post(f"{fresh.url}/_sandbox/tokens/revoke").status_code == 204
    refused = httpx.get(f"{fresh.url}/status/systems", headers=headers)
    assert (refused.status_code, refused.json()["message"]) == (401, "Access token is invalid.")
