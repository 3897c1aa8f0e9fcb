"""Collecting artifacts against the sandbox: links on either side, refusals, and files too large to move."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ci_runner.artifacts import collect, remote_files
from ci_runner.client import ApiError, Credentials, Gateway
from ci_runner.redact import Redactor
from ci_runner.report import Reporter
from ci_runner.transfers import Limits
from sandbox.firecrest.config import SandboxConfig
from sandbox.firecrest.server import SandboxHandle, run_sandbox

S3 = Limits(5 * 1024 * 1024, "s3")
PERMISSION_DENIED = "Remote process failed with exit status:2 and error message:Permission denied"


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxHandle]:
    with run_sandbox(SandboxConfig(root=tmp_path_factory.mktemp("fc"), pending_seconds=0.1)) as handle:
        yield handle


@pytest.fixture
def run_dir(box: SandboxHandle, request: pytest.FixtureRequest) -> Path:
    path = box.config.home("cluster") / request.node.name
    path.mkdir()
    return path


def gather(box: SandboxHandle, run_dir: Path, globs: tuple[str, ...], dest: Path, limits: Limits = S3):
    err = io.StringIO()
    gateway = Gateway(Credentials.from_values(box.env()), request_timeout=5, retry_timeout=5)
    result = collect(
        gateway, "cluster", str(run_dir), globs, dest, Reporter(Redactor(), err=err), limits=limits
    )
    return result, err.getvalue()


def test_symlinks_never_make_the_runner_write_outside_the_artifacts_directory(box, run_dir, tmp_path):
    (run_dir / "results" / "sub").mkdir(parents=True)
    (run_dir / "results" / "a.txt").write_text("A")
    (run_dir / "results" / "sub" / "b.txt").write_text("B")
    (run_dir / "top.txt").write_text("TOP")
    os.symlink("a.txt", run_dir / "results" / "ln.txt")  # a link among the artifacts: its file is copied
    os.symlink("..", run_dir / "results" / "loop")  # a link to a directory: not walked
    dest, outside = tmp_path / "artifacts", tmp_path / "outside"
    (dest / "results").mkdir(parents=True)
    outside.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("untouched")
    os.symlink(outside, dest / "results" / "sub")  # left in the artifacts directory, pointing out
    os.symlink(victim, dest / "top.txt")

    result, err = gather(box, run_dir, ("**",), dest)

    assert list(outside.iterdir()) == []
    assert victim.read_text() == "untouched"
    assert not (dest / "top.txt").is_symlink() and (dest / "top.txt").read_text() == "TOP"
    assert (dest / "results" / "a.txt").read_text() == "A"
    assert (dest / "results" / "ln.txt").read_text() == "A" and not (dest / "results" / "ln.txt").is_symlink()
    assert sorted(result.files) == ["results/a.txt", "results/ln.txt", "top.txt"]
    assert "results/sub/b.txt" in err and "is a symbolic link; not writing through it" in err
    assert "results/loop (a symbolic link to a directory; not followed)" in err
    assert [p.name for p in dest.rglob(".firecrest-ci-*")] == []


def test_a_link_the_server_refuses_costs_one_warning_not_the_collection(box, run_dir, tmp_path):
    (run_dir / "out").mkdir()
    (run_dir / "out" / "ok.txt").write_text("fine")
    os.symlink("missing", run_dir / "out" / "gone.txt")  # dangling: stat -L answers 404
    os.symlink("/etc/hostname", run_dir / "out" / "etc.txt")  # off the file system: 400

    result, err = gather(box, run_dir, ("out/*",), tmp_path / "artifacts")

    assert result.files == ["out/ok.txt"]
    assert (tmp_path / "artifacts" / "out" / "ok.txt").read_text() == "fine"
    assert "out/gone.txt (a symbolic link the server cannot resolve:" in err
    assert "out/etc.txt (a symbolic link the server cannot resolve:" in err
    assert "copied 1 of 1 matching artifact(s)" in err


class RefusingGateway:
    """Lists a fixed tree and refuses one directory, as a server does for one it may not read."""

    def __init__(self, tree: dict[str, list[dict[str, Any]]], refused: str) -> None:
        self.tree, self.refused = tree, refused

    def list_dir(self, _system: str, path: str) -> list[dict[str, Any]]:
        if path == self.refused:
            raise ApiError(403, PERMISSION_DENIED)
        return self.tree[path]


def test_a_directory_the_server_refuses_to_list_is_passed_over():
    tree = {
        "/run": [{"name": "locked", "type": "d"}, {"name": "open", "type": "d"}, {"name": "x", "type": "-"}],
        "/run/open": [{"name": "y", "type": "-", "size": "3"}],
    }
    notes: list[str] = []
    found = remote_files(RefusingGateway(tree, "/run/locked"), "cluster", "/run", notes=notes)  # type: ignore[arg-type]
    assert found == [("x", 0), ("open/y", 3)]
    assert notes == [f"locked/ (cannot list it: {PERMISSION_DENIED})"]


def test_a_matching_file_too_large_without_staged_transfers_is_named_not_unmatched(box, run_dir, tmp_path):
    (run_dir / "big.dat").write_bytes(b"x" * 5000)
    (run_dir / "small.dat").write_bytes(b"y" * 10)

    result, err = gather(box, run_dir, ("*.dat",), tmp_path / "artifacts", Limits(1000, None))

    assert result.files == ["small.dat"]
    assert "artifact not copied: big.dat (5000 bytes: this FirecREST server moves at most 747 bytes" in err
    assert "no staged-transfer backend" in err
    assert "no artifact matched" not in err
    result, err = gather(box, run_dir, ("big.dat",), tmp_path / "again", Limits(1000, None))
    assert result.files == []
    assert "none of the 1 matching artifact(s) could be copied" in err
    assert "no artifact matched" not in err
