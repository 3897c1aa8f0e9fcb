"""The sandbox FirecREST target against the unmodified pyfirecrest v2 client and
the responses recorded from a real FirecREST v2 server on real Slurm."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from firecrest import ClientCredentialsAuth
from firecrest.FirecrestException import FirecrestException
from firecrest.v2 import Firecrest

from sandbox.firecrest.config import SandboxConfig
from sandbox.firecrest.jobs import parse_time_limit, sbatch_options
from sandbox.firecrest.server import SandboxHandle, run_sandbox


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxHandle]:
    config = SandboxConfig(root=tmp_path_factory.mktemp("fc"), systems=("cluster",), pending_seconds=0.1)
    with run_sandbox(config) as handle:
        yield handle


@pytest.fixture
def client(box: SandboxHandle) -> Firecrest:
    auth = ClientCredentialsAuth(box.client_id, box.client_secret, box.token_url)
    return Firecrest(firecrest_url=box.url, authorization=auth)


@pytest.fixture
def home(box: SandboxHandle) -> str:
    return str(box.config.user_root("cluster") / box.config.username)


def wait_done(client: Firecrest, job_id: str, timeout: float = 15) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.job_info("cluster", job_id)[0]
        if job["status"]["state"] not in ("PENDING", "RUNNING"):
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish")


def keys(value: object) -> object:
    """The shape of a JSON value: its keys, recursively (lists by their first item)."""
    if isinstance(value, dict):
        return {k: keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [keys(value[0])] if value else []
    return None


def error_of(excinfo: pytest.ExceptionInfo[FirecrestException]) -> tuple[int, dict]:
    response = excinfo.value.responses[-1]
    return response.status_code, response.json()


def test_systems_have_the_real_shape(client, real_responses):
    system = client.systems()[0]
    real = real_responses["systems"]["body"]["systems"][0]
    assert keys(system) == keys(real)
    assert system["name"] == "cluster"
    assert system["fileSystems"][0]["defaultWorkDir"] is True
    assert {s["serviceType"] for s in system["servicesHealth"]} == {"scheduler", "ssh", "filesystem"}


def test_userinfo(client, box):
    info = client.userinfo("cluster")
    assert info["user"]["name"] == "fireuser"
    assert set(info) >= {"user", "group", "groups"}


def test_job_lifecycle_matches_real_slurm(client, home, real_responses):
    script = (
        "#!/bin/bash\n#SBATCH --job-name=ok\n#SBATCH --time=00:02:00\n"
        "echo hello $FOO\necho err >&2\nsleep 0.5\n"
    )
    job_id = client.submit("cluster", working_dir=home, script_str=script, env_vars={"FOO": "bar"})["jobId"]
    assert isinstance(job_id, str)
    first = client.job_info("cluster", job_id)[0]
    assert first["status"]["state"] == "PENDING"
    assert first["status"]["exitCode"] is None
    assert keys(first) == keys(real_responses["info_immediately"]["body"]["jobs"][0])
    final = wait_done(client, job_id)
    assert (final["status"]["state"], final["status"]["exitCode"]) == ("COMPLETED", 0)
    assert final["name"] == "ok"
    assert final["time"]["limit"] == 120
    assert keys(final) == keys(real_responses["info_final_ok"]["body"]["jobs"][0])
    metadata = client.job_metadata("cluster", job_id)[0]
    assert keys(metadata) == keys(real_responses["metadata_final_ok"]["body"]["jobs"][0])
    assert metadata["standardOutput"] == f"{home}/slurm-{job_id}.out"
    assert Path(metadata["standardOutput"]).read_text() == "hello bar\nerr\n"


def test_failed_timeout_cancelled_and_default_name(client, home):
    failed = client.submit("cluster", working_dir=home, script_str="#!/bin/bash\nexit 3\n")["jobId"]
    timeout = client.submit(
        "cluster", working_dir=home, script_str="#!/bin/bash\n#SBATCH --time=0:01\nsleep 30\n"
    )["jobId"]
    cancelled = client.submit("cluster", working_dir=home, script_str="#!/bin/bash\nsleep 30\n")["jobId"]
    client.cancel_job("cluster", cancelled)
    one = wait_done(client, failed)
    assert (one["status"]["state"], one["status"]["exitCode"], one["name"]) == ("FAILED", 3, "sbatch")
    two = wait_done(client, timeout)
    assert (two["status"]["state"], two["status"]["exitCode"]) == ("TIMEOUT", 0)
    three = wait_done(client, cancelled)
    assert three["status"]["state"].startswith("CANCELLED by ")


def test_cancel_finished_and_unknown_jobs_answer_500_like_scancel(client, home):
    job_id = client.submit("cluster", working_dir=home, script_str="#!/bin/bash\ntrue\n")["jobId"]
    wait_done(client, job_id)
    with pytest.raises(FirecrestException) as finished:
        client.cancel_job("cluster", job_id)
    status, body = error_of(finished)
    assert status == 500
    assert "Job/step already completing or completed" in body["message"]
    with pytest.raises(FirecrestException) as unknown:
        client.cancel_job("cluster", "999999")
    assert "Invalid job id specified" in error_of(unknown)[1]["message"]


def test_errors_have_the_real_shape(client, box, real_responses):
    with pytest.raises(FirecrestException) as unknown_job:
        client.job_info("cluster", "424242")
    assert error_of(unknown_job) == (404, real_responses["unknown_job"]["body"])
    with pytest.raises(FirecrestException) as unknown_system:
        client.job_info("daint", "1")
    assert error_of(unknown_system) == (404, real_responses["unknown_system"]["body"])
    no_token = httpx.get(f"{box.url}/status/systems")
    assert (no_token.status_code, no_token.json()) == (401, real_responses["no_token"]["body"])
    bad = httpx.get(f"{box.url}/status/systems", headers={"Authorization": "Bearer nope"})
    assert (bad.status_code, bad.json()) == (401, real_responses["bad_token"]["body"])


def test_paths_outside_the_file_system_are_refused(client, home, tmp_path):
    for path in ("/etc", f"{home}/../../../../etc", "relative/path"):
        with pytest.raises(FirecrestException) as outside:
            client.list_files("cluster", path)
        status, body = error_of(outside)
        assert status == 400
        assert "does not match any of the defined filesystem paths" in body["message"]
    escape = Path(home) / "escape"
    escape.symlink_to(tmp_path)
    with pytest.raises(FirecrestException):
        client.view("cluster", f"{escape}/x")


def test_file_operations(client, home, real_responses):
    work = f"{home}/ops"
    client.mkdir("cluster", work)
    with pytest.raises(FirecrestException) as exists:
        client.mkdir("cluster", work)
    assert error_of(exists)[0] == 400
    client.mkdir("cluster", work, create_parents=True)  # -p: fine
    client.upload("cluster", io.BytesIO(b"hello upload\n"), work, "a.txt", file_size=13)
    assert client.view("cluster", f"{work}/a.txt") == "hello upload\n"
    listing = client.list_files("cluster", work)
    assert keys(listing) == keys(real_responses["ls"]["body"]["output"])
    assert listing[0]["size"] == "13"
    assert keys(client.stat("cluster", f"{work}/a.txt")) == keys(real_responses["stat"]["body"]["output"])
    head = client.head("cluster", f"{work}/a.txt", num_bytes=8)
    assert head == {"content": "hello up", "contentType": "bytes", "startPosition": 0, "endPosition": 8}
    with pytest.raises(FirecrestException) as missing:
        client.view("cluster", f"{work}/nope.txt")
    assert error_of(missing)[0] == 404
    client.rm("cluster", work)
    assert not Path(work).exists()


def test_incremental_tail_by_bytes(client, home):
    path = Path(home) / "log.txt"
    path.write_text("0123456789")
    for offset in (0, 3, 9, 10):
        out = client.tail("cluster", str(path), num_bytes=offset + 1, exclude_beginning=True)
        assert out["content"] == "0123456789"[offset:]
    assert client.tail("cluster", str(path), num_bytes=4)["content"] == "6789"


def test_upload_over_the_limit_is_413(client, home, box):
    big = b"x" * (box.config.max_ops_file_size + 1)
    response = httpx.post(
        f"{box.url}/filesystem/cluster/ops/upload",
        params={"path": home},
        files={"file": ("big.bin", big)},
        headers={"Authorization": f"Bearer {client._authorization.get_access_token()}"},
    )
    assert response.status_code == 413
    assert response.json()["message"] == "File to upload is too large."


def test_sbatch_options_and_time_formats():
    script = (
        "#!/bin/bash\n#SBATCH -J name\n#SBATCH --output out-%j.log\n# comment\n"
        "#SBATCH --time=1-02:03:04\necho\n#SBATCH --error=late\n"
    )
    assert sbatch_options(script) == {"job-name": "name", "output": "out-%j.log", "time": "1-02:03:04"}
    assert [parse_time_limit(t) for t in ("5", "1:30", "1:00:00", "2-0", "0:05")] == [
        300,
        90,
        3600,
        172800,
        5,
    ]


def test_seeded_faults_are_deterministic(box, client):
    def sequence() -> list[int]:
        httpx.patch(f"{box.url}/_sandbox/config", json={"fault_5xx_rate": 0.5, "fault_seed": 7})
        token = client._authorization.get_access_token()
        codes = [
            httpx.get(f"{box.url}/status/systems", headers={"Authorization": f"Bearer {token}"}).status_code
            for _ in range(20)
        ]
        httpx.patch(f"{box.url}/_sandbox/config", json={"fault_5xx_rate": 0.0})
        return codes

    first, second = sequence(), sequence()
    assert first == second
    assert {200} < set(first)
