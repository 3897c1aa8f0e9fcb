"""The work of a sandbox transfer job: move one file between the S3 stand-in and the file system.

FirecREST runs a batch job for each staged transfer (named
`IngressFileTransfer` for an upload, `OutgressFileTransfer` for a download)
whose script waits for the object, fetches it by ranges into the target,
or cuts the file into parts, PUTs them to presigned URLs and completes the
upload. The sandbox's job script runs this file with the server's Python:
it uses only the standard library, so it needs neither the project nor a
`curl` on the "compute node".

`python mover.py ingress|egress '<json>'`. The last line of a successful run
is the one pyfirecrest looks for in the job's output; failures go to stderr
with a non-zero exit status, so the job ends FAILED. Paths outside the
system's file system are refused, as the user's permissions would there.
"""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.error
import urllib.request
from typing import Any

#: How long an upload's job waits for the object (the real script: 1440 polls a minute apart).
WAIT_POLL = 0.2
BLOCK = 1 << 20


def _say(text: str) -> None:
    print(f"{time.strftime('%a %b %d %H:%M:%S UTC %Y', time.gmtime())} {text}", flush=True)


def _fail(text: str, status: int) -> int:
    print(text, file=sys.stderr, flush=True)
    return status


def _inside(root: str, path: str) -> bool:
    real = os.path.realpath(path)
    return real == root or real.startswith(root.rstrip("/") + "/")


def _request(url: str, method: str, data: bytes | None = None, headers: dict[str, str] | None = None) -> Any:
    sent = urllib.request.Request(url, data=data, method=method, headers=headers or {})  # noqa: S310
    return urllib.request.urlopen(sent, timeout=60)  # noqa: S310 - loopback stand-in URLs


def ingress(job: dict[str, Any]) -> int:
    """Wait until the client has completed its multipart upload, then fetch it into the target."""
    target = str(job["target"])
    _say(f"Ingress File Transfer Job (id:{os.environ.get('SLURM_JOB_ID', 'unknown')})")
    if not _inside(job["root"], os.path.dirname(target) or "/"):
        return _fail(f"cannot write '{target}': Permission denied", 1)
    if os.path.isdir(target):
        return _fail(f"targetPath must point to a file path: {target} is a directory.", 3)
    deadline = time.monotonic() + float(job["wait_seconds"])
    while True:
        try:
            with _request(job["head_url"], "HEAD") as head:
                total = int(head.headers["Content-Length"])
                break
        except urllib.error.HTTPError as error:
            if error.code != 404:
                return _fail(f"staging area answered {error.code} while waiting for the file", 1)
        if time.monotonic() > deadline:
            return _fail("gave up waiting for the file to reach the staging area", 1)
        time.sleep(WAIT_POLL)
    _say(f"File to transfer found in the staging area; downloading it to {target}")
    partial = f"{target}.f7t-part"
    received = 0
    try:
        with open(partial, "wb") as out:
            while received < total:
                first, last = received, min(received + int(job["part_size"]), total) - 1
                with _request(job["get_url"], "GET", headers={"Range": f"bytes={received}-{last}"}) as got:
                    while chunk := got.read(BLOCK):
                        out.write(chunk)
                        received += len(chunk)
                if received == first:
                    raise ValueError(f"the staging area sent nothing for bytes {first}-{last}")
        os.replace(partial, target)
    except (OSError, urllib.error.URLError, ValueError) as error:
        return _fail(f"Download failed: {error}", 1)
    _say(f"Received {received} bytes")
    _say(f"File was successfully downloaded (size: {received / 1048576:.3f}MB)")
    return 0


def egress(job: dict[str, Any]) -> int:
    """Cut the source into the presigned parts, upload each, then complete the multipart upload."""
    source = str(job["source"])
    urls: list[str] = list(job["part_urls"])
    _say(f"Upload File Job (id:{os.environ.get('SLURM_JOB_ID', 'unknown')})")
    print(f"Uploading file:{source} into {len(urls)} chunks", flush=True)
    if not _inside(job["root"], source):
        return _fail(f"cannot read '{source}': Permission denied", 1)
    if not os.path.isfile(source):
        return _fail("file_not_found", 34)
    tags: list[tuple[int, str]] = []
    try:
        with open(source, "rb") as handle:
            for number, url in enumerate(urls, start=1):
                handle.seek((number - 1) * int(job["part_size"]))
                data = handle.read(int(job["part_size"]))
                with _request(url, "PUT", data=data) as put:
                    tags.append((number, put.headers["ETag"].strip('"')))
                print(f"[INFO] Upload of part {number} succeeded", flush=True)
        parts = "".join(f'<Part><PartNumber>{n}</PartNumber><ETag>"{t}"</ETag></Part>' for n, t in tags)
        body = (
            '<CompleteMultipartUpload xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
            f"{parts}</CompleteMultipartUpload>"
        ).encode()
        with _request(job["complete_url"], "POST", data=body):
            pass
    except urllib.error.HTTPError as error:
        return _fail(f"staging area answered {error.code}: {error.read()[:300]!r}", 70)
    except (OSError, urllib.error.URLError, KeyError) as error:
        return _fail(f"upload failed: {error}", 70)
    print("[INFO] Multipart file upload successfully completed", flush=True)
    return 0


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[1] not in ("ingress", "egress"):
        return _fail("usage: mover.py ingress|egress '<json>'", 2)
    job = json.loads(argv[2])
    return ingress(job) if argv[1] == "ingress" else egress(job)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
