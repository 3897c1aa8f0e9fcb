"""`/filesystem/{system}/ops/*` routes, following src/firecrest/filesystem/ops/router.py.

The checks run in the real order: the system, ssh health, then the path (in
the file system health dependency), then the file system's health; the work
itself is in `files`.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, Response, jsonify, request

from sandbox.firecrest import files, params
from sandbox.firecrest.errors import ApiError, validation_error
from sandbox.firecrest.state import Sandbox


def register(app: Flask, box: Sandbox) -> None:
    def checked(system: str, raw: str | None) -> str:
        config = box.require(system, "ssh")
        path = files.confine(config.user_root(system), system, raw)
        box.require(system, "filesystem")
        return path

    def query_path(system: str) -> tuple[str, str]:
        box.require(system, "ssh")
        raw = params.required("path")
        return checked(system, raw), raw

    def body_path(system: str) -> tuple[str, str, dict[str, Any]]:
        box.require(system, "ssh")
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            raise ApiError(
                400, "Unable to decode request and retreive the required path or source_path parameter."
            )
        raw = body.get("sourcePath", body.get("source_path", body.get("path")))
        if raw is not None and not isinstance(raw, str):
            raise validation_error("body", "sourcePath", "Input should be a valid string")
        return checked(system, raw), str(raw), body

    def user_group() -> dict[str, str]:
        config = box.config
        return {"user": config.username, "group": config.group}

    @app.get("/filesystem/<system>/ops/ls")
    def ls(system: str) -> Response:
        path, raw = query_path(system)
        found = files.ls(
            path,
            raw,
            **user_group(),
            hidden=params.flag("showHidden"),
            recursive=params.flag("recursive"),
            numeric=params.flag("numericUid"),
            dereference=params.flag("dereference"),
        )
        return jsonify({"output": found})

    @app.get("/filesystem/<system>/ops/head")
    def head(system: str) -> Response:
        path, raw = query_path(system)
        n_bytes, n_lines, skip = params.integer("bytes"), params.integer("lines"), params.flag("skipTrailing")
        output = files.head(path, raw, n_bytes, n_lines, skip, box.config.max_ops_file_size)
        return jsonify({"output": output})

    @app.get("/filesystem/<system>/ops/tail")
    def tail(system: str) -> Response:
        path, raw = query_path(system)
        n_bytes, n_lines, skip = params.integer("bytes"), params.integer("lines"), params.flag("skipHeading")
        output = files.tail(path, raw, n_bytes, n_lines, skip, box.config.max_ops_file_size)
        return jsonify({"output": output})

    @app.get("/filesystem/<system>/ops/view")
    def view(system: str) -> Response:
        path, raw = query_path(system)
        size = params.integer("size", files.VIEW_DEFAULT_SIZE)
        offset = params.integer("offset", 0)
        assert size is not None
        assert offset is not None
        return jsonify({"output": files.view(path, raw, size, offset, box.config.max_ops_file_size)})

    @app.get("/filesystem/<system>/ops/stat")
    def stat(system: str) -> Response:
        path, raw = query_path(system)
        return jsonify({"output": files.file_stat(path, raw, params.flag("dereference"))})

    @app.get("/filesystem/<system>/ops/checksum")
    def checksum(system: str) -> Response:
        path, raw = query_path(system)
        return jsonify({"output": files.checksum(path, raw)})

    @app.get("/filesystem/<system>/ops/download")
    def download(system: str) -> Response:
        path, raw = query_path(system)
        data = files.download(path, raw, box.config.max_ops_file_size)
        return Response(data, mimetype="application/octet-stream")

    @app.post("/filesystem/<system>/ops/mkdir")
    def mkdir(system: str) -> tuple[Response, int]:
        path, raw, body = body_path(system)
        parent = body.get("parent", False)
        if not isinstance(parent, bool):
            raise validation_error("body", "parent", "Input should be a valid boolean")
        files.mkdir(path, raw, parent)
        entry = files.entry(path, raw, **user_group(), numeric=False, follow=False)
        return jsonify({"output": entry}), 201

    @app.put("/filesystem/<system>/ops/chmod")
    def chmod(system: str) -> Response:
        path, raw, body = body_path(system)
        mode = body.get("mode")
        if not isinstance(mode, str):
            problem = "Field required" if mode is None else "Input should be a valid string"
            raise validation_error("body", "mode", problem)
        files.chmod(path, raw, mode)
        return jsonify({"output": files.entry(path, raw, **user_group(), numeric=False, follow=False)})

    @app.delete("/filesystem/<system>/ops/rm")
    def rm(system: str) -> tuple[str, int]:
        path, raw = query_path(system)
        files.rm(path, raw, box.config.user_root(system))
        return "", 204

    @app.post("/filesystem/<system>/ops/upload")
    def upload(system: str) -> tuple[str, int]:
        directory, _raw = query_path(system)
        sent = request.files.get("file")
        if sent is None:
            raise validation_error("body", "file", "Field required")
        config = box.config
        files.upload(
            directory,
            config.user_root(system),
            system,
            sent.filename or "",
            sent.read(),
            config.max_ops_file_size,
        )
        return "", 204
