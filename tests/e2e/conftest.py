"""End-to-end harness: the real `ci-runner` CLI and the Action's exact entrypoint,
run as subprocesses against the local FirecREST sandbox over real HTTP."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from sandbox.firecrest.config import SandboxConfig
from sandbox.firecrest.server import run_sandbox

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
SECRET = "s3cr3t-client-value-never-printed"
BASE_KNOBS = {
    "fault_5xx_rate": 0.0,
    "fault_429_rate": 0.0,
    "fault_timeout_rate": 0.0,
    "fault_seed": None,
    "unhealthy": {},
    "job_invisible_seconds": 0.0,
    "placeholder_seconds": 0.0,
    "pending_seconds": 0.1,
    "data_transfer": "s3",
}


@dataclass
class Sandbox:
    handle: Any
    client: httpx.Client = field(init=False)

    def __post_init__(self) -> None:
        self.client = httpx.Client(base_url=self.handle.url, timeout=10)
        #: Jobs of earlier tests (the sandbox is shared by the session) are not this test's.
        self.earlier = {job["jobId"] for job in self.jobs()}

    @property
    def env(self) -> dict[str, str]:
        return dict(self.handle.env())

    def configure(self, **knobs: Any) -> None:
        response = self.client.patch("/_sandbox/config", json=knobs)
        assert response.status_code < 300, response.text

    def jobs(self) -> list[dict[str, Any]]:
        response = self.client.get("/_sandbox/jobs")
        response.raise_for_status()
        body = response.json()
        return body["jobs"] if isinstance(body, dict) else body

    def jobs_named(self, prefix: str = "fci-") -> list[dict[str, Any]]:
        """This test's jobs submitted by the runner (named fci-<run>), oldest first."""
        return [
            j
            for j in self.jobs()
            if j["jobId"] not in self.earlier and str(j.get("name", "")).startswith(prefix)
        ]

    def tokens(self) -> list[str]:
        response = self.client.get("/_sandbox/tokens")
        response.raise_for_status()
        return list(response.json()["tokens"])

    def stats(self) -> dict[str, Any]:
        response = self.client.get("/_sandbox/stats")
        response.raise_for_status()
        return response.json()

    def wait_for(self, predicate, timeout: float = 10.0, interval: float = 0.05):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(interval)
        return predicate()


@pytest.fixture(scope="session")
def sandbox_handle(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    config = SandboxConfig(
        root=tmp_path_factory.mktemp("firecrest"),
        systems=("cluster", "daint"),
        client_secret=SECRET,
        pending_seconds=0.1,
    )
    with run_sandbox(config) as handle:
        yield handle


@pytest.fixture
def sandbox(sandbox_handle: Any) -> Iterator[Sandbox]:
    box = Sandbox(sandbox_handle)
    box.configure(**BASE_KNOBS)
    yield box
    box.configure(**BASE_KNOBS)
    box.client.close()


def runner_env(sandbox: Sandbox, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("INPUT_", "GITHUB_", "STATE_"))}
    env.update(sandbox.env)
    env["PATH"] = f"{VENV_BIN}:{env.get('PATH', '')}"
    env["FIRECREST_CI_REQUEST_TIMEOUT"] = "5"
    env["FIRECREST_CI_RETRY_TIMEOUT"] = "60"
    env.update(extra)
    return env


def run_cli(sandbox: Sandbox, *args: str, cwd: Path, timeout: float = 120, **extra: str):
    return subprocess.run(
        [sys.executable, "-m", "ci_runner", "run", *args],
        cwd=cwd,
        env=runner_env(sandbox, **extra),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def run_command(sandbox: Sandbox, command: str, *flags: str, cwd: Path, **extra: str):
    """`ci-runner run --system cluster --staging none --command COMMAND [flags]`, to the end."""
    return run_cli(
        sandbox, "--system", "cluster", "--staging", "none", "--command", command, *flags, cwd=cwd, **extra
    )


def start_cli(sandbox: Sandbox, command: str, cwd: Path, **extra: str) -> subprocess.Popen[str]:
    """`ci-runner run` on a shell command, in the background (for signal tests)."""
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ci_runner",
            "run",
            "--system",
            "cluster",
            "--staging",
            "none",
            "--command",
            command,
        ],
        cwd=cwd,
        env=runner_env(sandbox, **extra),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def running_jobs(sandbox: Sandbox, timeout: float = 20) -> list[dict[str, Any]]:
    """Wait until this test's job runs; returns the running ones (empty on time-out)."""
    return list(
        sandbox.wait_for(lambda: [j for j in sandbox.jobs_named() if j.get("state") == "RUNNING"], timeout)
    )


@dataclass
class ActionRun:
    returncode: int
    stdout: str
    stderr: str
    files: dict[str, Path]

    def outputs(self) -> dict[str, str]:
        text = self.files["GITHUB_OUTPUT"].read_text()
        return {
            m.group(1): m.group(3)
            for m in re.finditer(r"^(\w+)<<(\S+)\n(.*?)\n\2\n", text, flags=re.S | re.M)
        }

    def state(self) -> dict[str, str]:
        lines = self.files["GITHUB_STATE"].read_text().splitlines()
        return dict(line.split("=", 1) for line in lines if "=" in line)

    @property
    def summary(self) -> str:
        return self.files["GITHUB_STEP_SUMMARY"].read_text()


def entrypoint_command() -> list[str]:
    """The Dockerfile's ENTRYPOINT script, run as the container would run it."""
    return ["sh", str(ROOT / "docker" / "entrypoint.sh")]


def post_entrypoint_command() -> list[str]:
    return ["sh", str(ROOT / "docker" / "post-entrypoint.sh")]


def action_env(
    sandbox: Sandbox, workspace: Path, inputs: dict[str, str]
) -> tuple[dict[str, str], dict[str, Path]]:
    """The environment GitHub gives a Docker action: INPUT_*, GITHUB_* and its files."""
    files_dir = workspace.parent / f"{workspace.name}-github"
    files_dir.mkdir(exist_ok=True)
    files = {}
    for name in ("GITHUB_OUTPUT", "GITHUB_STEP_SUMMARY", "GITHUB_STATE", "GITHUB_ENV", "GITHUB_PATH"):
        path = files_dir / name.lower()
        path.touch()
        files[name] = path
    env = runner_env(sandbox)
    for name in ("FIRECREST_URL", "AUTH_TOKEN_URL", "FIRECREST_CLIENT_ID", "FIRECREST_CLIENT_SECRET"):
        env.pop(name, None)
    creds = sandbox.env
    defaults = {
        "staging": "none",
        "cleanup": "on-success",
        "firecrest_url": creds["FIRECREST_URL"],
        "token_url": creds["AUTH_TOKEN_URL"],
        "client_id": creds["FIRECREST_CLIENT_ID"],
        "client_secret": creds["FIRECREST_CLIENT_SECRET"],
    }
    for name, value in {**defaults, **inputs}.items():
        env[f"INPUT_{name.upper()}"] = value
    env.update(
        {
            "GITHUB_ACTIONS": "true",
            "CI": "true",
            "GITHUB_WORKSPACE": str(workspace),
            "GITHUB_REPOSITORY": "octo-org/hpc-code",
            "GITHUB_SERVER_URL": "https://github.com",
            "GITHUB_SHA": "0" * 40,
            "GITHUB_RUN_ID": "4242",
            "GITHUB_RUN_ATTEMPT": "1",
            "RUNNER_TEMP": str(files_dir),
            "HOME": str(files_dir),
        }
    )
    env.update({name: str(path) for name, path in files.items()})
    return env, files


def run_action(sandbox: Sandbox, workspace: Path, timeout: float = 120, **inputs: str) -> ActionRun:
    env, files = action_env(sandbox, workspace, inputs)
    done = subprocess.run(
        entrypoint_command(), cwd=workspace, env=env, capture_output=True, text=True, timeout=timeout
    )
    return ActionRun(done.returncode, done.stdout, done.stderr, files)


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    path = tmp_path / "workspace"
    path.mkdir()
    return path
