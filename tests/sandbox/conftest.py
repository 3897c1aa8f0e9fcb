"""Fixtures for the sandbox FirecREST tests: a shared sandbox with knobs reset per test,
the unmodified pyfirecrest v2 client, and a raw httpx client for status codes and bodies."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from firecrest import ClientCredentialsAuth
from firecrest.v2 import Firecrest

from sandbox.firecrest.config import SandboxConfig
from sandbox.firecrest.server import SandboxHandle, run_sandbox

BASE_KNOBS: dict[str, Any] = {
    "fault_5xx_rate": 0.0,
    "fault_429_rate": 0.0,
    "fault_timeout_rate": 0.0,
    "fault_seed": None,
    "unhealthy": {},
    "job_invisible_seconds": 0.0,
    "placeholder_seconds": 0.0,
    "pending_seconds": 0.1,
    "metadata_ttl": 300.0,
    "token_lifetime": 300.0,
    "max_ops_file_size": 5 * 1024 * 1024,
    "data_transfer": "s3",
}


@pytest.fixture(scope="session")
def shared_box(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxHandle]:
    config = SandboxConfig(
        root=tmp_path_factory.mktemp("fc"), systems=("cluster", "daint"), pending_seconds=0.1
    )
    with run_sandbox(config) as handle:
        yield handle


@pytest.fixture
def box(shared_box: SandboxHandle) -> Iterator[SandboxHandle]:
    configure(shared_box, **BASE_KNOBS)
    yield shared_box
    configure(shared_box, **BASE_KNOBS)


@pytest.fixture
def fresh(tmp_path: Path) -> Iterator[SandboxHandle]:
    """A sandbox of its own, for tests that count requests or stop the server."""
    with run_sandbox(SandboxConfig(root=tmp_path / "fc", pending_seconds=0.1)) as handle:
        yield handle


def configure(box: SandboxHandle, **knobs: Any) -> dict[str, Any]:
    response = httpx.patch(f"{box.url}/_sandbox/config", json=knobs)
    assert response.status_code == 200, response.text
    return dict(response.json())


def make_client(box: SandboxHandle) -> Firecrest:
    auth = ClientCredentialsAuth(box.client_id, box.client_secret, box.token_url, min_token_validity=60)
    return Firecrest(firecrest_url=box.url, authorization=auth)


@pytest.fixture
def client(box: SandboxHandle) -> Firecrest:
    return make_client(box)


def new_token(box: SandboxHandle) -> str:
    response = httpx.post(
        box.token_url,
        data={
            "grant_type": "client_credentials",
            "client_id": box.client_id,
            "client_secret": box.client_secret,
        },
    )
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


@pytest.fixture
def api(box: SandboxHandle) -> Iterator[httpx.Client]:
    """Raw HTTP with a valid bearer token, for exact status codes and bodies."""
    headers = {"Authorization": f"Bearer {new_token(box)}"}
    with httpx.Client(base_url=box.url, headers=headers, timeout=10) as raw:
        yield raw


@pytest.fixture
def home(box: SandboxHandle) -> str:
    return str(box.config.home("cluster"))


@pytest.fixture
def workdir(home: str, request: pytest.FixtureRequest) -> str:
    """A fresh directory for this test inside the user's home on `cluster`."""
    path = Path(home) / request.node.name.replace("[", "-").replace("]", "")
    path.mkdir()
    return str(path)


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.03) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s")


def job_state(client: Firecrest, job_id: str, system: str = "cluster") -> dict[str, Any]:
    return dict(client.job_info(system, job_id)[0])


def wait_state(client: Firecrest, job_id: str, *states: str, timeout: float = 10.0) -> dict[str, Any]:
    def reached() -> dict[str, Any] | None:
        job = job_state(client, job_id)
        return job if job["status"]["state"].split(" ")[0] in states else None

    return dict(wait_for(reached, timeout))


def wait_done(client: Firecrest, job_id: str, timeout: float = 10.0) -> dict[str, Any]:
    return wait_state(client, job_id, "COMPLETED", "FAILED", "TIMEOUT", "CANCELLED", timeout=timeout)


def keys(value: Any) -> Any:
    """The shape of a JSON value: its keys, recursively (lists by their first item)."""
    if isinstance(value, dict):
        return {k: keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [keys(value[0])] if value else []
    return None


def control_jobs(box: SandboxHandle) -> list[dict[str, Any]]:
    return list(httpx.get(f"{box.url}/_sandbox/jobs").json()["jobs"])


def pid_alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"
