"""The Dockerfile is linted and its entrypoint is exactly what the tests run."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import yaml

from tests.tools import tool

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = (ROOT / "Dockerfile").read_text()


def test_hadolint_finds_nothing():
    done = subprocess.run(
        [tool("hadolint"), "--no-color", "Dockerfile"], cwd=ROOT, capture_output=True, text=True
    )
    assert done.returncode == 0 and done.stdout == "", done.stdout + done.stderr


def test_base_image_is_pinned_to_a_patch_version():
    bases = re.findall(r"^FROM\s+(\S+)", DOCKERFILE, flags=re.M)
    assert bases
    for base in bases:
        assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm", base), base


def test_requirements_are_hash_pinned_and_no_build_tools_remain():
    assert "--require-hashes -r requirements/runtime.txt" in DOCKERFILE
    runtime = (ROOT / "requirements" / "runtime.txt").read_text()
    assert "--hash=sha256:" in runtime
    final_stage = DOCKERFILE.split("\nFROM ")[-1]
    for tool_name in ("gcc", "build-essential", "apt-get", "pip install"):
        assert tool_name not in final_stage


def test_entrypoint_execs_python_as_pid_1():
    entrypoint = json.loads(re.search(r"^ENTRYPOINT\s+(\[.*\])", DOCKERFILE, flags=re.M).group(1))
    assert entrypoint == ["/usr/local/bin/ci-runner-entrypoint"]
    copies = dict(
        (dest, src) for src, dest in re.findall(r"^COPY\s+(docker/\S+)\s+(\S+)", DOCKERFILE, flags=re.M)
    )
    script = (ROOT / copies[entrypoint[0]]).read_text().strip().splitlines()
    assert script[0] == "#!/bin/sh"
    assert script[-1] == 'exec python -m ci_runner action "$@"'
    post = yaml.safe_load((ROOT / "action.yml").read_text())["runs"]["post-entrypoint"]
    post_script = (ROOT / copies[post]).read_text().strip().splitlines()
    assert post_script[-1] == 'exec python -m ci_runner action-post "$@"'


def test_unbuffered_output_for_the_live_log():
    assert "PYTHONUNBUFFERED=1" in DOCKERFILE
