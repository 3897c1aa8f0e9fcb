"""`POST /filesystem/{system}/transfer/upload|download`: staged transfers through S3.

Following src/firecrest/filesystem/transfer/router.py and the S3 data
transfer of the real server: each request creates a bucket named after the
user, an object `<uuid>/<file name>` with a multipart upload, presigned URLs,
and a transfer job in the user's directory on the default work file system
(`IngressFileTransfer` / `OutgressFileTransfer`, output in
`.f7t_file_handling_job_<uuid>.log`, errors in `.f7t_file_handling_job_error_<uuid>.log`).
The answer is 201 `{"transferJob": {...}, "transferDirectives": {...}}`.

- upload: the client PUTs the parts to `partsUploadUrls` (`maxPartSize`
  bytes each) and POSTs `completeUploadUrl`; the job waits for the object
  and writes it to `path`.
- download: the job stats the file, uploads it in parts to the stand-in; the
  client waits for the job, then GETs `downloadUrl`.

The checks run in the real order: the system and its scheduler, ssh, then
the backend (a system without one answers the real server's 500, an
AttributeError on `None`), then the body, then the method (400 "Requested
transfer method is not available."). Unlike the real server, paths are
confined to the system's file system (the jobs run on this machine).
"""

from __future__ import annotations

import json
import math
import os
import shlex
import sys
import uuid
from pathlib import Path
from typing import Any

from flask import Flask, Response, jsonify, request

from sandbox.firecrest import files
from sandbox.firecrest.errors import ApiError, validation_error
from sandbox.firecrest.jobs import JobRequest
from sandbox.firecrest.s3 import ObjectStore
from sandbox.firecrest.state import Sandbox

METHODS = ("s3", "wormhole", "streamer")
#: What the real JobHelper gives a transfer job as its whole environment.
JOB_ENV = {"PATH": "/bin:/usr/bin/:/usr/local/bin/"}
MOVER = Path(__file__).with_name("mover.py")
#: An upload's job waits this long for the client's parts (the real script: 24 h).
INGRESS_WAIT_SECONDS = 24 * 3600


def _directives(body: Any) -> tuple[dict[str, Any], str | None]:
    """The body's transfer directives and path, validated like PostFileUpload/DownloadRequest."""
    if not isinstance(body, dict):
        raise validation_error("body", "transferDirectives", "Field required")
    raw = body.get("sourcePath", body.get("source_path", body.get("path")))
    if raw is not None and not isinstance(raw, str):
        raise validation_error("body", "path", "Input should be a valid string")
    directives = body.get("transferDirectives", body.get("transfer_directives"))
    if not isinstance(directives, dict):
        raise validation_error("body", "transferDirectives", "Field required")
    method = directives.get("transferMethod", directives.get("transfer_method"))
    if method not in METHODS:
        expected = ", ".join(f"'{m}'" for m in METHODS)
        raise validation_error(
            "body", "transferDirectives", f"Input tag does not match any of the expected tags: {expected}"
        )
    account = body.get("account")
    if account is not None and not isinstance(account, str):
        raise validation_error("body", "account", "Input should be a valid string")
    return directives, raw


def register(app: Flask, box: Sandbox, store: ObjectStore) -> None:
    def backend(system: str) -> dict[str, Any]:
        """The real dependency order: system and scheduler, ssh, then the configured backend."""
        config = box.require(system, "scheduler", "ssh")
        if config.data_transfer is None:
            raise ApiError(500, "(\"'NoneType' object has no attribute 'service_type'\",)")
        directives, raw = _directives(request.get_json(silent=True))
        method = directives.get("transferMethod", directives.get("transfer_method"))
        if method != config.data_transfer:
            raise ApiError(400, "Requested transfer method is not available.")
        return {"directives": directives, "raw": raw}

    def job(system: str, name: str, mode: str, params: dict[str, Any]) -> dict[str, Any]:
        """Submit the transfer job like the real JobHelper: the user's directory, hidden logs."""
        config = box.config
        home = str(config.home(system))
        unique = uuid.uuid4()
        output = f"{home}/.f7t_file_handling_job_{unique}.log"
        error = f"{home}/.f7t_file_handling_job_error_{unique}.log"
        payload = json.dumps({**params, "root": str(config.user_root(system))})
        script = (
            "#!/bin/bash\n"
            f"exec {shlex.quote(sys.executable)} -I {shlex.quote(str(MOVER))} {mode} {shlex.quote(payload)}\n"
        )
        created = box.jobs.submit(
            system,
            JobRequest(
                working_directory=home,
                script=script,
                env=dict(JOB_ENV),
                name=name,
                standard_input="/dev/null",
                standard_output=output,
                standard_error=error,
            ),
            config.pending_seconds,
            config.job_invisible_seconds,
        )
        return {
            "jobId": created.job_id,
            "system": system,
            "workingDirectory": home,
            "logs": {"outputLog": output, "errorLog": error},
        }

    def start(system: str, file_name: str) -> tuple[str, str, str, str]:
        """Bucket per user, object `<uuid>/<name>`, and its multipart upload."""
        config = box.config
        bucket = config.username
        key = f"{uuid.uuid4()}/{file_name or 'file'}"
        store.create_bucket(bucket)
        return bucket, key, store.create_multipart_upload(bucket, key), request.host_url

    @app.post("/filesystem/<system>/transfer/upload")
    def transfer_upload(system: str) -> tuple[Response, int]:
        checked = backend(system)
        config = box.config
        raw = checked["raw"]
        if raw is None:
            raise validation_error("body", "path", "Field required")
        size = checked["directives"].get("fileSize", checked["directives"].get("file_size"))
        if size is None:
            # The real server divides the missing size by the part size.
            raise ApiError(500, "(\"unsupported operand type(s) for /: 'NoneType' and 'int'\",)")
        if isinstance(size, bool) or not isinstance(size, int | str) or not str(size).isdigit():
            raise validation_error("body", "fileSize", "Input should be a valid integer")
        target = files.confine(config.user_root(system), system, raw)
        part_size = config.s3_max_part_size
        bucket, key, upload_id, base = start(system, os.path.basename(target))
        ttl = config.s3_url_ttl
        parts = [
            store.presign(base, "PUT", bucket, key, ttl, partNumber=n, uploadId=upload_id)
            for n in range(1, math.ceil(int(size) / part_size) + 1)
        ]
        transfer_job = job(
            system,
            "IngressFileTransfer",
            "ingress",
            {
                "target": target,
                "head_url": store.presign(base, "HEAD", bucket, key, ttl),
                "get_url": store.presign(base, "GET", bucket, key, ttl),
                "part_size": part_size,
                "wait_seconds": INGRESS_WAIT_SECONDS,
            },
        )
        directives = {
            "transferMethod": "s3",
            "partsUploadUrls": parts,
            "completeUploadUrl": store.presign(base, "POST", bucket, key, ttl, uploadId=upload_id),
            "maxPartSize": part_size,
        }
        return jsonify({"transferJob": transfer_job, "transferDirectives": directives}), 201

    @app.post("/filesystem/<system>/transfer/download")
    def transfer_download(system: str) -> tuple[Response, int]:
        checked = backend(system)
        config = box.config
        raw = checked["raw"]
        source = files.confine(config.user_root(system), system, raw)
        # The real server runs `stat -L` over SSH first; a directory passes, and its job fails.
        info = files.file_stat(source, str(raw), dereference=True)
        part_size = config.s3_max_part_size
        bucket, key, upload_id, base = start(system, os.path.basename(source))
        ttl = config.s3_url_ttl
        transfer_job = job(
            system,
            "OutgressFileTransfer",
            "egress",
            {
                "source": source,
                "part_size": part_size,
                "part_urls": [
                    store.presign(base, "PUT", bucket, key, ttl, partNumber=n, uploadId=upload_id)
                    for n in range(1, math.ceil(info["size"] / part_size) + 1)
                ],
                "complete_url": store.presign(base, "POST", bucket, key, ttl, uploadId=upload_id),
            },
        )
        directives = {"transferMethod": "s3", "downloadUrl": store.presign(base, "GET", bucket, key, ttl)}
        return jsonify({"transferJob": transfer_job, "transferDirectives": directives}), 201
