"""Staged transfers (`/transfer/upload|download`) and the S3 stand-in, driven by unmodified pyfirecrest."""

from __future__ import annotations

import hashlib
import io
import os
import re
from pathlib import Path

import httpx
import pytest

from tests.sandbox.conftest import configure, control_jobs, wait_done

MIB = 1024 * 1024


def test_both_paths_with_unmodified_pyfirecrest(client, box, workdir, tmp_path):
    """pyfirecrest stages from 1 MiB on: below that `ops/*`, above it the S3 flow and a transfer job."""
    small = os.urandom(1000)
    client.upload("cluster", io.BytesIO(small), workdir, "small.bin", file_size=len(small))
    big = os.urandom(8 * MIB + 12345)  # two parts of the 5 MiB part size
    (tmp_path / "big.bin").write_bytes(big)
    before = {job["jobId"] for job in control_jobs(box)}
    upload = client.upload("cluster", str(tmp_path / "big.bin"), workdir, "big.bin")
    assert upload is not None
    assert len(upload.transfer_data["transferDirectives"]["partsUploadUrls"]) == 2
    assert hashlib.sha256(Path(workdir, "big.bin").read_bytes()).digest() == hashlib.sha256(big).digest()
    client.download("cluster", f"{workdir}/small.bin", str(tmp_path / "small.back"))
    client.download("cluster", f"{workdir}/big.bin", str(tmp_path / "big.back"))
    assert (tmp_path / "small.back").read_bytes() == small
    assert (tmp_path / "big.back").read_bytes() == big
    jobs = [job for job in control_jobs(box) if job["jobId"] not in before]
    assert [(job["name"], job["state"]) for job in jobs] == [
        ("IngressFileTransfer", "COMPLETED"),
        ("OutgressFileTransfer", "COMPLETED"),
    ]
    home = str(box.config.home("cluster"))
    for job in jobs:
        assert job["workingDirectory"] == home
        assert re.fullmatch(rf"{home}/\.f7t_file_handling_job_[0-9a-f-]{{36}}\.log", job["standardOutput"])
        assert job["standardError"].startswith(f"{home}/.f7t_file_handling_job_error_")


def test_transfer_answers_follow_the_real_router(box, api, workdir):
    Path(workdir, "f").write_bytes(b"x" * 10)
    started = api.post(
        "/filesystem/cluster/transfer/upload",
        json={
            "path": f"{workdir}/up",
            "transfer_directives": {"transfer_method": "s3", "file_size": 6 * MIB},
        },
    )
    assert started.status_code == 201, started.text
    body = started.json()
    assert set(body) == {"transferJob", "transferDirectives"}
    assert set(body["transferJob"]) == {"jobId", "system", "workingDirectory", "logs"}
    assert set(body["transferJob"]["logs"]) == {"outputLog", "errorLog"}
    directives = body["transferDirectives"]
    assert set(directives) == {"transferMethod", "partsUploadUrls", "completeUploadUrl", "maxPartSize"}
    assert (directives["transferMethod"], directives["maxPartSize"], len(directives["partsUploadUrls"])) == (
        "s3",
        5 * MIB,
        2,
    )
    api.delete(f"/compute/cluster/jobs/{body['transferJob']['jobId']}")  # nothing will come
    down = api.post(
        "/filesystem/cluster/transfer/download",
        json={"source_path": f"{workdir}/f", "transfer_directives": {"transferMethod": "s3"}},
    )
    assert down.status_code == 201, down.text
    assert set(down.json()["transferDirectives"]) == {"transferMethod", "downloadUrl"}

    wrong = api.post(
        "/filesystem/cluster/transfer/download",
        json={"source_path": f"{workdir}/f", "transfer_directives": {"transferMethod": "wormhole"}},
    )
    assert wrong.status_code == 400
    assert wrong.json()["message"] == "Requested transfer method is not available."
    invalid = api.post("/filesystem/cluster/transfer/download", json={"source_path": f"{workdir}/f"})
    assert (invalid.status_code, invalid.json()["errorType"]) == (400, "validation")
    missing = api.post(
        "/filesystem/cluster/transfer/download",
        json={"source_path": f"{workdir}/nope", "transfer_directives": {"transferMethod": "s3"}},
    )
    assert missing.status_code == 404
    assert api.post("/filesystem/nope/transfer/upload", json={}).json()["message"] == "System not found"

    backend = api.get("/status/systems").json()["systems"][0]["dataOperation"]["data_transfer"]
    assert (backend["serviceType"], backend["publicUrl"]) == ("s3", f"{box.url}/_s3")
    assert backend["secretAccessKey"] == "**********"  # a SecretStr, as the real server shows it
    configure(box, data_transfer=None)
    entry = api.get("/status/systems").json()["systems"][0]
    assert entry["dataOperation"]["data_transfer"] is None
    refused = api.post(
        "/filesystem/cluster/transfer/download",
        json={"source_path": f"{workdir}/f", "transfer_directives": {"transferMethod": "s3"}},
    )
    # The real server's DataTransferDependency reads `service_type` of a missing backend.
    assert refused.status_code == 500
    assert "'NoneType' object has no attribute 'service_type'" in refused.json()["message"]


def test_the_s3_stand_in_keeps_s3s_rules(client, api, workdir):
    started = api.post(
        "/filesystem/cluster/transfer/upload",
        json={"path": f"{workdir}/up", "transferDirectives": {"transferMethod": "s3", "fileSize": 6 * MIB}},
    ).json()
    part1, part2 = started["transferDirectives"]["partsUploadUrls"]
    complete = started["transferDirectives"]["completeUploadUrl"]
    with httpx.Client(timeout=10) as s3:
        tampered = s3.put(part1.replace("partNumber=1", "partNumber=3"), content=b"x")
        assert (tampered.status_code, "<Code>SignatureDoesNotMatch</Code>" in tampered.text) == (403, True)
        assert s3.post(part1, content=b"x").status_code == 403  # signed for PUT only
        small = s3.put(part1, content=b"a" * 100)
        assert small.status_code == 200
        assert small.headers["ETag"] == f'"{md5(b"a" * 100)}"'
        last = s3.put(part2, content=b"b" * 10)
        xml = (
            "<CompleteMultipartUpload><Part><PartNumber>{}</PartNumber><ETag>{}</ETag></Part>"
            "<Part><PartNumber>{}</PartNumber><ETag>{}</ETag></Part></CompleteMultipartUpload>"
        )
        order = s3.post(complete, content=xml.format(2, last.headers["ETag"], 1, small.headers["ETag"]))
        assert "<Code>InvalidPartOrder</Code>" in order.text
        wrong_tag = s3.post(complete, content=xml.format(1, '"00"', 2, last.headers["ETag"]))
        assert "<Code>InvalidPart</Code>" in wrong_tag.text
        too_small = s3.post(complete, content=xml.format(1, small.headers["ETag"], 2, last.headers["ETag"]))
        assert (too_small.status_code, "<Code>EntityTooSmall</Code>" in too_small.text) == (400, True)
        s3.put(part1, content=b"a" * (5 * MIB))
        done = s3.post(complete, content=xml.format(1, f'"{md5(b"a" * (5 * MIB))}"', 2, last.headers["ETag"]))
        assert done.status_code == 200, done.text
        assert "<Code>NoSuchUpload</Code>" in s3.put(part1, content=b"again").text
    job = wait_done(client, started["transferJob"]["jobId"])
    assert job["status"]["state"] == "COMPLETED"
    assert Path(workdir, "up").read_bytes() == b"a" * (5 * MIB) + b"b" * 10


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


@pytest.mark.parametrize("where", ["outside", "directory"])
def test_a_transfer_job_fails_where_the_user_could_not_write(client, box, api, workdir, tmp_path, where):
    target = f"{workdir}/../../../../../../../../tmp/x" if where == "outside" else workdir
    started = api.post(
        "/filesystem/cluster/transfer/upload",
        json={"path": target, "transferDirectives": {"transferMethod": "s3", "fileSize": 10}},
    )
    if where == "outside":
        assert started.status_code == 400  # the sandbox confines paths (the real server leaves it to the job)
        return
    job = wait_done(client, started.json()["transferJob"]["jobId"])
    assert (job["status"]["state"], job["status"]["exitCode"]) == ("FAILED", 3)
    error_log = started.json()["transferJob"]["logs"]["errorLog"]
    assert "must point to a file path" in Path(error_log).read_text()
