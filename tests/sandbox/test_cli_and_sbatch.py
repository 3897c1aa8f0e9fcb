"""The `python -m sandbox.firecrest` entry point, and sbatch's parsing rules on their own."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from sandbox.firecrest import sbatch
from tests.sandbox.conftest import make_client, pid_alive, wait_for, wait_state


class Handle:
    """Just enough of SandboxHandle for the pyfirecrest helper, built from the env file."""

    def __init__(self, env: dict[str, str]) -> None:
        self.url = env["FIRECREST_URL"]
        self.token_url = env["AUTH_TOKEN_URL"]
        self.client_id = env["FIRECREST_CLIENT_ID"]
        self.client_secret = env["FIRECREST_CLIENT_SECRET"]


def test_cli_writes_env_file_serves_and_stops_cleanly_on_sigterm(tmp_path):
    env_file = tmp_path / "sandbox.env"
    root = tmp_path / "state"
    extra = ["--root", str(root), "--pending-seconds", "0"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "sandbox.firecrest", "--port", "0", "--env-file", str(env_file), *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(env_file.exists, 10)
        env = dict(line.split("=", 1) for line in env_file.read_text().splitlines())
        assert set(env) == {
            "FIRECREST_URL",
            "AUTH_TOKEN_URL",
            "FIRECREST_CLIENT_ID",
            "FIRECREST_CLIENT_SECRET",
        }
        assert env["FIRECREST_URL"].startswith("http://127.0.0.1:")
        client = make_client(Handle(env))
        home = f"{root.resolve()}/cluster/users/fireuser"
        assert client.systems()[0]["fileSystems"][0]["path"] == str(Path(home).parent)
        job_id = client.submit("cluster", working_dir=home, script_str="#!/bin/bash\nsleep 60\n")["jobId"]
        wait_state(client, job_id, "RUNNING")
        [job] = httpx.get(f"{env['FIRECREST_URL']}/_sandbox/jobs").json()["jobs"]
        assert pid_alive(job["pid"])
        proc.send_signal(signal.SIGTERM)
        out, _err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0
    assert f"FIRECREST_URL={env['FIRECREST_URL']}" in out.splitlines()
    assert not pid_alive(job["pid"])
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{env['FIRECREST_URL']}/status/systems", timeout=1)


def test_cli_stops_on_sigint(tmp_path):
    env_file = tmp_path / "env"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sandbox.firecrest",
            "--env-file",
            str(env_file),
            "--root",
            str(tmp_path / "s"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        wait_for(env_file.exists, 10)
        started = time.monotonic()
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0 and time.monotonic() - started < 5


def test_directives_stop_at_the_first_command():
    script = (
        "#!/bin/bash\n#SBATCH -J name\n\n#SBATCH --output out-%j.log\n# plain comment\n"
        "#SBATCH --time=1-02:03:04 # why\n #SBATCH --account=indented-is-not-a-directive\n"
        "#SBATCH --exclusive --partition=gpu\necho\n#SBATCH --error=late\n"
    )
    assert sbatch.directives(script) == {
        "job-name": "name",
        "output": "out-%j.log",
        "time": "1-02:03:04",
        "exclusive": "",
        "partition": "gpu",
    }


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("5", 300),
        ("1:30", 90),
        ("0:05", 5),
        ("1:00:00", 3600),
        ("2-0", 172800),
        ("1-2:30", 95400),
        ("1-02:03:04", 93784),
        ("UNLIMITED", None),
        ("0", None),
    ],
)
def test_time_formats(text, seconds):
    assert sbatch.parse_time_limit(text) == seconds


@pytest.mark.parametrize("text", ["soon", "1:2:3:4", "-5", "1-", ""])
def test_bad_time_formats(text):
    with pytest.raises(sbatch.SbatchError):
        sbatch.parse_time_limit(text)


def test_patterns_and_interpreter():
    assert sbatch.expand_pattern("%x-%j-%u-%%j.out", "12", "ci", "fireuser") == "ci-12-fireuser-%j.out"
    assert sbatch.interpreter("#!/usr/bin/env python3 -u\nprint()\n") == ["/usr/bin/env", "python3 -u"]
