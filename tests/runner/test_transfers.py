"""Which path a file takes (direct or staged), and a staged transfer's life, against the sandbox."""

from __future__ import annotations

import io
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ci_runner import transfers
from ci_runner.client import Credentials, Gateway, _reached_server
from ci_runner.errors import InfrastructureError, Interrupted
from ci_runner.health import describe_system
from ci_runner.redact import Redactor
from ci_runner.report import Reporter
from ci_runner.transfers import Limits, TransferUnavailable, download_route, upload_route
from sandbox.firecrest.config import SandboxConfig
from sandbox.firecrest.server import SandboxHandle, run_sandbox

MIB = 1024 * 1024
S3 = Limits(5 * MIB, "s3")
NONE = Limits(5 * MIB, None)


def test_the_direct_path_is_used_up_to_the_servers_limit_not_pyfirecrests_1_mib():
    assert upload_route(2 * MIB, S3) == "direct"  # pyfirecrest alone would stage this
    assert upload_route(5 * MIB, S3) == "direct"  # the real router refuses only `> max_ops_file_size`
    assert upload_route(5 * MIB + 1, S3) == "staged"


def test_a_download_is_direct_only_while_its_base64_fits_the_ssh_buffer():
    # 4 base64 bytes per 3 must stay below the 5 MiB read buffer: 3,932,157 bytes is the largest.
    assert S3.largest_download == 3_932_157
    assert download_route(3_932_157, S3) == "direct"
    assert download_route(3_932_158, S3) == "staged"


def test_above_the_limit_a_server_without_transfers_gives_a_clear_error():
    assert upload_route(5 * MIB, NONE) == "direct"
    with pytest.raises(TransferUnavailable) as raised:
        upload_route(8 * MIB, NONE)
    assert raised.value.message == (
        "8.0 MiB: this FirecREST server moves at most 5.0 MiB directly, and it has no staged-transfer "
        "backend for larger files (its dataOperation.data_transfer is null)"
    )
    with pytest.raises(TransferUnavailable, match="its staged transfers use 'wormhole', which firecrest-ci"):
        download_route(8 * MIB, Limits(5 * MIB, "wormhole"))


def test_limits_come_from_status_systems(real_responses):
    recorded = real_responses["systems"]["body"]["systems"]
    info = describe_system("cluster-slurm-ssh", recorded, "https://f7t")
    assert Limits.of(info) == Limits(5242880, None)
    with_s3 = [
        {**recorded[0], "dataOperation": {"max_ops_file_size": 1000, "data_transfer": {"serviceType": "s3"}}}
    ]
    assert Limits.of(describe_system("cluster-slurm-ssh", with_s3, "https://f7t")) == Limits(1000, "s3")
    silent = [{**recorded[0], "dataOperation": None}]
    assert Limits.of(describe_system("cluster-slurm-ssh", silent, "https://f7t")) == Limits(5 * MIB, None)


# -- against the sandbox ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxHandle]:
    with run_sandbox(SandboxConfig(root=tmp_path_factory.mktemp("fc"), pending_seconds=0.1)) as handle:
        yield handle


def gateway_for(box: SandboxHandle) -> Gateway:
    return Gateway(Credentials.from_values(box.env()), request_timeout=5, retry_timeout=10)


def reporter() -> Reporter:
    return Reporter(Redactor(), out=io.StringIO(), err=io.StringIO())


def test_a_staged_upload_lands_whole_and_a_staged_download_comes_back(box, tmp_path):
    data = os.urandom(6 * MIB)
    (tmp_path / "up.bin").write_bytes(data)
    home = str(box.config.home("cluster"))
    gateway = gateway_for(box)
    route = transfers.upload(gateway, "cluster", S3, tmp_path / "up.bin", home, "up.bin", reporter())
    assert route == "staged"
    assert Path(home, "up.bin").read_bytes() == data
    got = transfers.download(
        gateway, "cluster", S3, f"{home}/up.bin", len(data), tmp_path / "back", reporter()
    )
    assert got == "staged"
    assert (tmp_path / "back").read_bytes() == data


def test_sigint_cancels_a_staged_download_in_flight(box, tmp_path):
    home = box.config.home("cluster")
    (home / "held.bin").write_bytes(os.urandom(4 * MIB))
    control = httpx.Client(base_url=box.url, timeout=5)
    control.patch("/_sandbox/config", json={"pending_seconds": 60})
    known = {job["jobId"] for job in control.get("/_sandbox/jobs").json()["jobs"]}

    def interrupt_once_polled() -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            new = [j for j in control.get("/_sandbox/jobs").json()["jobs"] if j["jobId"] not in known]
            polled = new and control.get("/_sandbox/stats").json()["requests"].get(
                "GET /compute/{system}/jobs/{job_id}", 0
            )
            if polled:
                os.kill(os.getpid(), signal.SIGINT)
                return
            time.sleep(0.05)

    sender = threading.Thread(target=interrupt_once_polled)
    sender.start()
    started = time.monotonic()
    try:
        with pytest.raises(Interrupted):
            transfers.download(
                gateway_for(box), "cluster", S3, str(home / "held.bin"), 4 * MIB, tmp_path / "x", reporter()
            )
    finally:
        sender.join()
        control.patch("/_sandbox/config", json={"pending_seconds": 0.1})
    jobs = [j for j in control.get("/_sandbox/jobs").json()["jobs"] if j["jobId"] not in known]
    assert [(j["name"], j["state"].split(" ")[0]) for j in jobs] == [("OutgressFileTransfer", "CANCELLED")]
    assert time.monotonic() - started < 15
    assert not (tmp_path / "x").exists() or (tmp_path / "x").stat().st_size == 0


def test_a_transfer_start_is_repeated_only_when_the_server_cannot_have_acted_on_it():
    """A lost answer may hide a transfer job the runner could not name, let alone cancel."""
    creds = Credentials("http://127.0.0.1:9/api", "http://127.0.0.1:9/token", "id", "secret")
    gateway = Gateway(creds, retry_timeout=5)
    calls: list[str] = []

    def fails_with(*errors: Exception):
        pending = list(errors)

        def call() -> str:
            calls.append("POST")
            if pending:
                raise pending.pop(0)
            return "started"

        return call

    with pytest.raises(InfrastructureError):
        gateway.call("starting", fails_with(httpx.ReadTimeout("lost")), final=_reached_server)
    assert calls == ["POST"]
    calls.clear()
    started = gateway.call("starting", fails_with(httpx.ConnectError("refused")), final=_reached_server)
    assert started == "started"
    assert calls == ["POST", "POST"]
