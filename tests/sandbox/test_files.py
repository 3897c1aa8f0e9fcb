"""File operations: recorded shapes and texts, confinement, limits, and head/tail exactly like coreutils."""

from __future__ import annotations

import hashlib
import io
import os
import re
import subprocess
from pathlib import Path

import pytest
from firecrest.FirecrestException import FirecrestException

from sandbox.firecrest import files
from tests.sandbox.conftest import configure, keys


def error_of(excinfo: pytest.ExceptionInfo[FirecrestException]) -> tuple[int, dict]:
    response = excinfo.value.responses[-1]
    return response.status_code, response.json()


def test_mkdir_like_the_real_server(client, home, real_responses):
    path = f"{home}/ci-run-42"
    made = client.mkdir("cluster", path)
    assert keys(made) == keys(real_responses["mkdir"]["body"]["output"])
    assert (made["name"], made["type"], made["user"], made["group"]) == (path, "d", "fireuser", "f7tusers")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", made["lastModified"])
    with pytest.raises(FirecrestException) as exists:
        client.mkdir("cluster", path)
    expected = real_responses["mkdir_exists"]["body"]
    assert error_of(exists) == (
        400,
        {**expected, "message": expected["message"].replace("/users", str(Path(home).parent))},
    )
    assert client.mkdir("cluster", path, create_parents=True)["name"] == path
    with pytest.raises(FirecrestException) as missing_parent:
        client.mkdir("cluster", f"{path}/a/b")
    assert error_of(missing_parent)[0] == 404
    assert client.mkdir("cluster", f"{path}/a/b", create_parents=True)["type"] == "d"


def test_upload_download_view_head_tail_match_the_recording(
    client, box, api, workdir, real_responses, tmp_path
):
    response = api.post(
        "/filesystem/cluster/ops/upload",
        params={"path": workdir},
        files={"file": ("out.txt", b"hello bar\nerr\n")},
    )
    assert (response.status_code, response.content) == (204, b"")
    path = f"{workdir}/out.txt"
    assert client.view("cluster", path) == real_responses["view"]["body"]["output"]
    assert client.head("cluster", path, num_bytes=8) == real_responses["head_bytes"]["body"]["output"]
    assert client.tail("cluster", path, num_lines=5) == real_responses["tail"]["body"]["output"]
    client.upload("cluster", io.BytesIO(b"hello upload\n"), workdir, "up.txt", file_size=13)
    target = tmp_path / "down.txt"
    client.download("cluster", f"{workdir}/up.txt", str(target))
    assert target.read_bytes() == b"hello upload\n"
    raw = api.get("/filesystem/cluster/ops/download", params={"path": f"{workdir}/up.txt"})
    assert raw.content == real_responses["download"]["body"].encode()


def test_ls_stat_checksum(client, workdir, real_responses):
    Path(workdir, "b.txt").write_text("12345678")
    Path(workdir, "a").mkdir()
    Path(workdir, "a", "inner").write_text("x")
    Path(workdir, ".hidden").write_text("")
    os.symlink("b.txt", f"{workdir}/link")
    listing = client.list_files("cluster", workdir)
    assert keys(listing) == keys(real_responses["ls"]["body"]["output"])
    assert [(e["name"], e["type"], e["size"]) for e in listing] == [
        ("a", "d", str(os.lstat(f"{workdir}/a").st_size)),
        ("b.txt", "-", "8"),
        ("link", "l", "5"),
    ]
    assert listing[2]["linkTarget"] == "b.txt"
    everything = [e["name"] for e in client.list_files("cluster", workdir, show_hidden=True, recursive=True)]
    assert everything == [".hidden", "a", "b.txt", "link", "a/inner"]
    single = client.list_files("cluster", f"{workdir}/b.txt")
    assert [e["name"] for e in single] == [f"{workdir}/b.txt"]
    stat = client.stat("cluster", f"{workdir}/b.txt")
    assert keys(stat) == keys(real_responses["stat"]["body"]["output"])
    assert stat["size"] == 8 and stat["uid"] == os.getuid()
    assert client.stat("cluster", f"{workdir}/link")["size"] == 5
    assert client.stat("cluster", f"{workdir}/link", dereference=True)["size"] == 8
    assert client.checksum("cluster", f"{workdir}/b.txt") == {
        "algorithm": "SHA256",
        "checksum": hashlib.sha256(b"12345678").hexdigest(),
    }


def test_missing_files_answer_404_with_the_command_text(client, workdir, real_responses):
    with pytest.raises(FirecrestException) as view:
        client.view("cluster", f"{workdir}/nope.txt")
    status, body = error_of(view)
    recorded = real_responses["view_missing"]["body"]["message"]
    assert (status, body["message"]) == (404, recorded.replace("/users/fireuser/ci-run-42", workdir))
    for call in (client.head, client.tail, client.stat, client.checksum, client.list_files):
        with pytest.raises(FirecrestException) as missing:
            call("cluster", f"{workdir}/nope.txt")
        status, body = error_of(missing)
        assert status == 404 and "No such file or directory" in body["message"], body
        assert body["message"].startswith("Remote process failed with exit status:")


def test_paths_outside_the_file_system_are_refused(client, api, home, tmp_path, real_responses):
    with pytest.raises(FirecrestException) as etc:
        client.list_files("cluster", "/etc")
    expected = real_responses["ls_outside"]["body"]
    assert error_of(etc) == (
        400,
        {**expected, "message": expected["message"].replace("cluster-slurm-ssh", "cluster")},
    )
    dotted = f"{home}/../../../../../../etc"
    response = api.get("/filesystem/cluster/ops/view", params={"path": dotted})
    assert response.status_code == 400
    assert response.json()["message"].startswith(
        f"The provided path ({os.path.normpath(dotted)}) does not match"
    )
    secret = tmp_path / "secret.txt"
    secret.write_text("outside")
    os.symlink(tmp_path, f"{home}/escape")
    for call in ("view", "head", "tail", "download", "checksum"):
        escaped = api.get(f"/filesystem/cluster/ops/{call}", params={"path": f"{home}/escape/secret.txt"})
        assert escaped.status_code == 400, call
        assert "outside" not in escaped.text
    upload = api.post(
        "/filesystem/cluster/ops/upload", params={"path": home}, files={"file": ("../../x", b"no")}
    )
    assert upload.status_code == 400
    assert not (Path(home).parent.parent / "x").exists()
    relative = api.get("/filesystem/cluster/ops/ls", params={"path": "relative/dir"})
    assert (relative.status_code, relative.json()["message"]) == (
        400,
        "The provided path (relative/dir) is not an absolute path.",
    )
    other_system = api.get("/filesystem/daint/ops/ls", params={"path": home})
    assert other_system.status_code == 400


def test_rm_is_recursive_and_protects_the_roots(client, api, home, workdir):
    Path(workdir, "tree", "deep").mkdir(parents=True)
    Path(workdir, "tree", "deep", "f").write_text("x")
    client.rm("cluster", f"{workdir}/tree")
    assert not Path(workdir, "tree").exists()
    missing = api.delete("/filesystem/cluster/ops/rm", params={"path": f"{workdir}/tree"})
    assert missing.status_code == 404
    assert api.delete("/filesystem/cluster/ops/rm", params={"path": home}).status_code == 403
    assert Path(home).is_dir()


def test_limits(box, api, workdir):
    configure(box, max_ops_file_size=1000)
    big = api.post(
        "/filesystem/cluster/ops/upload", params={"path": workdir}, files={"file": ("big", b"x" * 1001)}
    )
    assert (big.status_code, big.json()["message"]) == (413, "File to upload is too large.")
    assert not Path(workdir, "big").exists()
    fits = api.post(
        "/filesystem/cluster/ops/upload", params={"path": workdir}, files={"file": ("ok", b"x" * 1000)}
    )
    assert fits.status_code == 204
    # Output is read through a buffer of max_ops_file_size: base64 of 1000 bytes does not fit.
    download = api.get("/filesystem/cluster/ops/download", params={"path": f"{workdir}/ok"})
    assert (download.status_code, download.json()["message"]) == (
        413,
        "Command output exceeded buffer limit.",
    )
    Path(workdir, "small").write_bytes(b"y" * 700)
    assert (
        api.get("/filesystem/cluster/ops/download", params={"path": f"{workdir}/small"}).content == b"y" * 700
    )
    # The real router's default view size is 5 MiB whatever the limit: with a smaller limit it refuses.
    assert api.get("/filesystem/cluster/ops/view", params={"path": f"{workdir}/small"}).status_code == 400
    full = api.get("/filesystem/cluster/ops/view", params={"path": f"{workdir}/ok", "size": 1000})
    assert (full.status_code, full.json()["message"]) == (413, "Command output exceeded buffer limit.")
    view = api.get("/filesystem/cluster/ops/view", params={"path": f"{workdir}/small", "size": 1001})
    assert (view.status_code, view.json()["message"]) == (400, "`size` value must be less than 1000 bytes")
    part = api.get(
        "/filesystem/cluster/ops/view", params={"path": f"{workdir}/ok", "size": 10, "offset": 995}
    )
    assert part.json()["output"] == "x" * 5
    assert (
        api.get("/filesystem/cluster/ops/tail", params={"path": f"{workdir}/ok", "bytes": 999}).status_code
        == 200
    )
    assert (
        api.get("/filesystem/cluster/ops/tail", params={"path": f"{workdir}/ok", "bytes": 1000}).status_code
        == 413
    )


def test_incremental_tail_by_bytes(client, workdir):
    path = Path(workdir, "log.txt")
    path.write_bytes(b"")
    seen = b""
    for chunk in (b"first line\n", b"", b"second \xc3\xa9\n", b"x" * 50):
        with path.open("ab") as handle:
            handle.write(chunk)
        got = client.tail("cluster", str(path), num_bytes=len(seen) + 1, exclude_beginning=True)
        assert got["content"].encode() == chunk
        assert (got["contentType"], got["startPosition"], got["endPosition"]) == ("bytes", len(seen) + 1, -1)
        seen += chunk


def test_head_and_tail_positions_follow_the_real_router(api, workdir):
    path = Path(workdir, "f")
    path.write_text("".join(f"line {i}\n" for i in range(20)))

    def output(op: str, **query: object) -> dict:
        response = api.get(f"/filesystem/cluster/ops/{op}", params={"path": str(path), **query})
        assert response.status_code == 200, response.text
        return response.json()["output"]

    assert {k: v for k, v in output("head").items() if k != "content"} == {
        "contentType": "lines",
        "startPosition": 0,
        "endPosition": 10,
    }
    assert output("tail")["startPosition"] == 10  # the real router's default, not -10
    assert output("head", lines=3, skipTrailing="true")["endPosition"] == -3
    assert output("tail", lines=3, skipHeading="true")["startPosition"] == 3
    both = api.get("/filesystem/cluster/ops/head", params={"path": str(path), "lines": 1, "bytes": 1})
    assert (both.status_code, both.json()["message"]) == (
        400,
        "Only one of `bytes` or `lines` can be specified.",
    )
    assert (
        api.get("/filesystem/cluster/ops/head", params={"path": str(path), "lines": "x"}).status_code == 400
    )


CASES = [(what, n, skip) for what in ("bytes", "lines") for n in (1, 2, 5, 13, 40) for skip in (False, True)]


@pytest.mark.parametrize("data", [b"", b"one", b"a\nbb\n\nccc\nd", b"a\nbb\n\nccc\nd\n" * 3])
def test_head_and_tail_content_equals_coreutils(data, tmp_path):
    path = tmp_path / "f"
    path.write_bytes(data)
    for what, n, skip in CASES:
        for tool in ("head", "tail"):
            sign = ("-" if tool == "head" else "+") if skip else ""
            real = subprocess.run(
                [tool, f"--{what}={sign}{n}", "--", str(path)], capture_output=True, check=True
            )
            n_bytes, n_lines = (n, None) if what == "bytes" else (None, n)
            ours = (files.head_content if tool == "head" else files.tail_content)(
                data, n_bytes, n_lines, skip
            )
            assert ours == real.stdout, (tool, what, sign, n, data)
