"""A small S3-compatible stand-in for FirecREST's staged transfers.

A real centre puts an S3 service (Ceph, MinIO, ...) between the client and
the HPC file system: FirecREST creates a multipart upload with its own S3
credentials and hands out presigned URLs. This stand-in serves the part of
S3 those URLs use, under `/_s3/<bucket>/<key>` on the sandbox's own port:
`PUT ?partNumber&uploadId` (answers the part's `ETag`), `POST ?uploadId`
with the `CompleteMultipartUpload` XML, and `GET` (with `Range`) or `HEAD` of
the object. The rules S3 enforces are enforced here too: parts listed in
ascending order with their ETags, every part but the last at least 5 MiB,
errors as S3's XML with S3's codes. Honest differences: the URLs are signed
with the sandbox's own HMAC (the `X-Amz-*` parameters are there, SigV4 is
not), there are no credentials, lifecycles or listing, and objects live on
disk under the sandbox root.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import os
import secrets
import shutil
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, urlencode
from xml.etree import ElementTree

from flask import Flask, Response, request, send_file

#: S3 refuses to complete an upload whose parts, but the last, are smaller than this.
MIN_PART_SIZE = 5 * 1024 * 1024
PREFIX = "/_s3"
_NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"
_CHUNK = 1 << 20


class S3Error(Exception):
    """An S3 error answer: status, S3's error code and its message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


@dataclass
class _Upload:
    bucket: str
    key: str
    #: part number -> ETag (quoted, as S3 sends it)
    parts: dict[int, str] = field(default_factory=dict)


def _safe_key(key: str) -> str:
    parts = key.split("/")
    if not key or key.startswith("/") or any(p in ("", ".", "..") for p in parts) or "\0" in key:
        raise S3Error(400, "InvalidArgument", "Object key is not valid here.")
    return key


class ObjectStore:
    """Buckets, objects and multipart uploads on disk, with presigned-URL checks."""

    def __init__(self, root: Path) -> None:
        self._root = root
        self._objects = root / "objects"
        self._staging = root / "uploads"
        self._objects.mkdir(parents=True, exist_ok=True)
        self._staging.mkdir(parents=True, exist_ok=True)
        self._key = secrets.token_bytes(32)
        self._uploads: dict[str, _Upload] = {}
        self._lock = threading.Lock()

    # -- what FirecREST does with its own S3 credentials --------------------------------------

    def create_bucket(self, bucket: str) -> None:
        """Idempotent, like FirecREST's create-or-BucketAlreadyOwnedByYou."""
        (self._objects / _safe_key(bucket)).mkdir(exist_ok=True)

    def create_multipart_upload(self, bucket: str, key: str) -> str:
        if not (self._objects / _safe_key(bucket)).is_dir():
            raise S3Error(404, "NoSuchBucket", "The specified bucket does not exist")
        upload_id = uuid.uuid4().hex
        (self._staging / upload_id).mkdir()
        with self._lock:
            self._uploads[upload_id] = _Upload(bucket, _safe_key(key))
        return upload_id

    def presign(self, base_url: str, method: str, bucket: str, key: str, ttl: int, **query: str | int) -> str:
        """A URL that allows exactly this method on this object (and upload part) until it expires."""
        path = f"{PREFIX}/{quote(bucket)}/{quote(key)}"
        params = {name: str(value) for name, value in query.items()}
        params.update(
            {
                "X-Amz-Algorithm": "SANDBOX-HMAC-SHA256",
                "X-Amz-Date": dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ"),
                "X-Amz-Expires": str(ttl),
                "X-Amz-SignedHeaders": "host",
            }
        )
        params["X-Amz-Signature"] = self._sign(method, path, params)
        return f"{base_url.rstrip('/')}{path}?{urlencode(params)}"

    def _sign(self, method: str, path: str, params: dict[str, str]) -> str:
        canonical = "&".join(
            f"{quote(k, safe='')}={quote(v, safe='')}"
            for k, v in sorted(params.items())
            if k != "X-Amz-Signature"
        )
        text = f"{method.upper()}\n{path}\n{canonical}".encode()
        return hmac.new(self._key, text, hashlib.sha256).hexdigest()

    def verify(self, method: str, bucket: str, key: str, params: dict[str, str]) -> None:
        """403 unless the request is exactly what was signed, and not yet expired."""
        signature = params.get("X-Amz-Signature", "")
        path = f"{PREFIX}/{quote(bucket)}/{quote(key)}"
        if not signature or not hmac.compare_digest(signature, self._sign(method, path, params)):
            raise S3Error(
                403,
                "SignatureDoesNotMatch",
                "The request signature we calculated does not match the signature you provided.",
            )
        try:
            signed_at = dt.datetime.strptime(params["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC)
            expires = int(params["X-Amz-Expires"])
        except (KeyError, ValueError):
            raise S3Error(403, "AccessDenied", "Request is missing its date or expiry.") from None
        if dt.datetime.now(dt.UTC) > signed_at + dt.timedelta(seconds=expires):
            raise S3Error(403, "AccessDenied", "Request has expired")

    # -- what presigned URLs allow ------------------------------------------------------------

    def _upload(self, upload_id: str, bucket: str, key: str) -> _Upload:
        with self._lock:
            upload = self._uploads.get(upload_id)
        if upload is None or (upload.bucket, upload.key) != (bucket, key):
            raise S3Error(
                404,
                "NoSuchUpload",
                "The specified multipart upload does not exist. The upload ID may be invalid, "
                "or the upload may have been aborted or completed.",
            )
        return upload

    def put_part(self, upload_id: str, bucket: str, key: str, number: int, body: object) -> str:
        """Store one part from a readable stream; returns its quoted MD5 ETag."""
        if not 1 <= number <= 10000:
            raise S3Error(400, "InvalidArgument", "Part number must be an integer between 1 and 10000.")
        upload = self._upload(upload_id, bucket, key)
        digest = hashlib.md5()  # noqa: S324 - S3's ETag, not security
        target = self._staging / upload_id / str(number)
        with open(target, "wb") as handle:
            while True:
                chunk = body.read(_CHUNK)  # type: ignore[attr-defined]
                if not chunk:
                    break
                digest.update(chunk)
                handle.write(chunk)
        etag = f'"{digest.hexdigest()}"'
        with self._lock:
            upload.parts[number] = etag
        return etag

    def complete(self, upload_id: str, bucket: str, key: str, body: bytes) -> str:
        """Assemble the listed parts into the object; returns the multipart ETag."""
        upload = self._upload(upload_id, bucket, key)
        listed = self._listed_parts(body)
        numbers = [number for number, _ in listed]
        if numbers != sorted(set(numbers)):
            raise S3Error(400, "InvalidPartOrder", "The list of parts was not in ascending order.")
        folder = self._staging / upload_id
        for index, (number, etag) in enumerate(listed):
            stored = upload.parts.get(number)
            if stored is None or stored.strip('"') != etag.strip('"'):
                raise S3Error(
                    400,
                    "InvalidPart",
                    "One or more of the specified parts could not be found. The part may not have "
                    "been uploaded, or the specified entity tag may not match the part's entity tag.",
                )
            if index < len(listed) - 1 and (folder / str(number)).stat().st_size < MIN_PART_SIZE:
                raise S3Error(
                    400, "EntityTooSmall", "Your proposed upload is smaller than the minimum allowed size"
                )
        target = self._objects / bucket / key
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.{upload_id}")
        combined = hashlib.md5()  # noqa: S324 - S3's ETag, not security
        with open(partial, "wb") as out:
            for number, etag in listed:
                combined.update(bytes.fromhex(etag.strip('"')))
                with open(folder / str(number), "rb") as part:
                    shutil.copyfileobj(part, out, _CHUNK)
        os.replace(partial, target)
        with self._lock:
            self._uploads.pop(upload_id, None)
        shutil.rmtree(folder, ignore_errors=True)
        return f'"{combined.hexdigest()}-{len(listed)}"'

    @staticmethod
    def _listed_parts(body: bytes) -> list[tuple[int, str]]:
        malformed = S3Error(
            400,
            "MalformedXML",
            "The XML you provided was not well-formed or did not validate against our published schema.",
        )
        try:
            root = ElementTree.fromstring(body)  # noqa: S314 - loopback test stand-in
        except ElementTree.ParseError:
            raise malformed from None
        listed = []
        for part in root.iter():
            if part.tag.removeprefix(_NS) != "Part":
                continue
            fields = {child.tag.removeprefix(_NS): (child.text or "").strip() for child in part}
            try:
                listed.append((int(fields["PartNumber"]), fields["ETag"]))
            except (KeyError, ValueError):
                raise malformed from None
        if root.tag.removeprefix(_NS) != "CompleteMultipartUpload" or not listed:
            raise malformed
        return listed

    def object_path(self, bucket: str, key: str) -> Path:
        path = self._objects / _safe_key(bucket) / _safe_key(key)
        if not path.is_file():
            raise S3Error(404, "NoSuchKey", "The specified key does not exist.")
        return path


def _error(error: S3Error) -> Response:
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{error.code}</Code><Message>{error.message}</Message>"
        f"<RequestId>{uuid.uuid4().hex[:16].upper()}</RequestId></Error>"
    )
    return Response(body, status=error.status, mimetype="application/xml")


def register(app: Flask, store: ObjectStore) -> None:
    """The presigned-URL side of the stand-in (no bearer token: the signature is the credential)."""

    @app.errorhandler(S3Error)
    def _s3_error(error: S3Error) -> Response:
        if request.method == "HEAD":
            return Response(status=error.status)
        return _error(error)

    @app.route(f"{PREFIX}/<bucket>/<path:key>", methods=["GET", "PUT", "POST"])
    def s3_object(bucket: str, key: str) -> Response:
        params = request.args.to_dict()
        store.verify(request.method, bucket, key, params)
        upload_id = params.get("uploadId")
        if request.method == "PUT":
            if upload_id is None or "partNumber" not in params:
                raise S3Error(501, "NotImplemented", "Only multipart part uploads are supported here.")
            try:
                number = int(params["partNumber"])
            except ValueError:
                raise S3Error(400, "InvalidArgument", "Part number must be an integer.") from None
            etag = store.put_part(upload_id, bucket, key, number, request.stream)
            return Response(status=200, headers={"ETag": etag})
        if request.method == "POST":
            if upload_id is None:
                raise S3Error(501, "NotImplemented", "Only CompleteMultipartUpload is supported here.")
            etag = store.complete(upload_id, bucket, key, request.get_data())
            body = (
                '<?xml version="1.0" encoding="UTF-8"?>\n'
                '<CompleteMultipartUploadResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
                f"<Location>{request.base_url}</Location><Bucket>{bucket}</Bucket><Key>{key}</Key>"
                f"<ETag>{etag}</ETag></CompleteMultipartUploadResult>"
            )
            return Response(body, status=200, mimetype="application/xml")
        # GET, and HEAD (which Flask routes here and answers without the body).
        path = store.object_path(bucket, key)
        response = send_file(path, mimetype="application/octet-stream", conditional=True, etag=False)
        response.headers["Accept-Ranges"] = "bytes"
        return response
