"""Dockerfile.middleware and its entrypoint: linted, pinned like the Action's image, non-root, health
checked, one image for every role; the release publishes it. No container engine runs here, so the
image is inspected and its entrypoint run on this host with stand-ins for the programs it execs."""

from __future__ import annotations

import re
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

from tests.tools import tool, tool_env

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = (ROOT / "Dockerfile.middleware").read_text()
ENTRYPOINT = ROOT / "deploy" / "image" / "entrypoint.sh"
LOCK = (ROOT / "requirements" / "middleware.txt").read_text()


def pins(text: str) -> dict[str, str]:
    return {
        name.lower().replace("_", "-"): version
        for name, version in re.findall(r"^([A-Za-z0-9_.\-]+)(?:\[[^\]]*\])?==(\S+)", text, flags=re.M)
    }


def test_hadolint_finds_nothing():
    done = subprocess.run(
        [tool("hadolint"), "--no-color", "Dockerfile.middleware"], cwd=ROOT, capture_output=True, text=True
    )
    assert done.returncode == 0 and done.stdout == "", done.stdout + done.stderr


def test_same_pinned_base_as_the_actions_image():
    bases = re.findall(r"^FROM\s+(\S+)", DOCKERFILE, flags=re.M)
    action = re.findall(r"^FROM\s+(\S+)", (ROOT / "Dockerfile").read_text(), flags=re.M)
    assert len(bases) == 2 and set(bases) == set(action)
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm", bases[0])


def test_the_lock_is_hash_pinned_at_the_tested_versions_and_made_by_make_lock():
    assert "--require-hashes -r requirements/middleware.txt" in DOCKERFILE
    locked = pins(LOCK)
    blocks = re.split(r"\n(?=\S)", LOCK.split("\n", 2)[2].strip())
    requirements = [b for b in blocks if not b.startswith("#")]
    assert requirements and all("--hash=sha256:" in b for b in requirements)
    tested = pins((ROOT / "requirements" / "dev.txt").read_text())
    assert {n: v for n, v in locked.items() if tested.get(n) != v} == {}
    extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for requirement in extra["middleware"]:
        name = re.match(r"[A-Za-z0-9_.\-]+", requirement).group(0).lower().replace("_", "-")
        assert name in locked, name
    command = LOCK.splitlines()[1].removeprefix("#    uv ")
    makefile = re.sub(r"\\\n\s*", "", (ROOT / "Makefile").read_text())
    assert re.search(
        rf"\$\(BIN\)/uv {re.escape(command.replace(' --quiet', ''))}", makefile.replace(" --quiet", "")
    )


def test_final_stage_runs_unprivileged_with_a_health_check_and_no_build_tools():
    final = DOCKERFILE.split("\nFROM ")[-1]
    (user,) = re.findall(r"^USER\s+(\S+)", final, flags=re.M)
    assert user.split(":")[0] not in ("0", "root")
    assert re.search(
        r"^HEALTHCHECK .*\n?.*CMD \[\"python\", \"/usr/local/lib/firecrest-ci/healthcheck.py\"\]", final, re.M
    )
    assert re.search(r'^ENTRYPOINT \["/usr/local/bin/firecrest-ci-middleware-entrypoint"\]$', final, re.M)
    assert re.search(r'^CMD \["web"\]$', final, re.M)
    for word in ("pip install", "gcc", "build-essential"):
        assert word not in final
    for source, _ in re.findall(r"^COPY\s+(?!--from)(\S+)\s+(\S+)", final, flags=re.M):
        assert (ROOT / source).is_file(), source


def test_the_package_and_its_migrations_are_installed_and_checked_at_build():
    build = DOCKERFILE.split("\nFROM ")[1]
    assert "COPY middleware middleware" in build and "pip install --no-cache-dir --no-deps ." in build
    assert 'test -f "$site/migrations/env.py"' in build and "migrations/versions" in build
    assert (ROOT / "middleware" / "migrations" / "env.py").is_file()


def test_dockerignore_lets_the_middleware_in_and_keeps_the_actions_image_small():
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    ignored = {line.strip() for line in lines if line.strip() and not line.startswith("#")}
    copied = re.findall(r"^COPY\s+(?!--from)(\S+)", DOCKERFILE, flags=re.M)
    for source in copied:
        assert not any(source == i or source.startswith(f"{i}/") for i in ignored), source
    action_copies = re.findall(r"^COPY\s+(?!--from)(\S+)", (ROOT / "Dockerfile").read_text(), flags=re.M)
    assert not any(c.startswith("middleware") for c in action_copies)


def test_entrypoint_is_shellcheck_clean():
    done = subprocess.run(
        [tool("shellcheck"), str(ENTRYPOINT)], capture_output=True, text=True, env=tool_env()
    )
    assert done.returncode == 0, done.stdout


@pytest.fixture
def stand_ins(tmp_path) -> dict[str, str]:
    """PATH with gunicorn, celery, firecrest-ci-middleware and sh stand-ins that print their argv."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("gunicorn", "celery", "firecrest-ci-middleware", "echo-args"):
        path = bin_dir / name
        path.write_text(f'#!/bin/sh\necho "{name} $*"\n')
        path.chmod(0o755)
    return {"PATH": f"{bin_dir}:/usr/bin:/bin"}


def entrypoint(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(ENTRYPOINT), *args], env=env, capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize(
    ("args", "execs"),
    [
        ((), "firecrest-ci-middleware web"),
        (("web", "--workers", "3"), "firecrest-ci-middleware web --workers 3"),
        (("worker",), "celery -A middleware.worker:celery worker -Q firecrest-ci --loglevel=INFO"),
        (
            ("worker", "--concurrency", "4"),
            "celery -A middleware.worker:celery worker -Q firecrest-ci --loglevel=INFO --concurrency 4",
        ),
        (("migrate",), "firecrest-ci-middleware migrate"),
        (("echo-args", "check", "x"), "echo-args check x"),
    ],
)
def test_the_command_picks_the_role(stand_ins, args, execs):
    done = entrypoint(stand_ins, *args)
    assert done.returncode == 0 and done.stdout.strip() == execs, done.stderr


def test_beat_is_refused_with_the_reason(stand_ins):
    done = entrypoint(stand_ins, "beat")
    assert done.returncode == 64 and "every worker runs the dispatcher" in done.stderr and not done.stdout


def test_the_release_publishes_it_beside_the_actions_image():
    jobs = yaml.safe_load((ROOT / ".github" / "workflows" / "release.yml").read_text())["jobs"]
    job = jobs["middleware-image"]
    steps = [s for s in job["steps"] if "docker/build-push-action" in s.get("uses", "")]
    assert all(s["with"]["file"] == "Dockerfile.middleware" for s in steps) and len(steps) == 2
    push = steps[-1]["with"]
    assert push["sbom"] is True and push["push"] is True
    assert push["tags"].splitlines() == [
        "${{ needs.version.outputs.image }}-middleware:${{ needs.version.outputs.version }}",
        "${{ needs.version.outputs.image }}-middleware:${{ needs.version.outputs.major }}",
    ]
    smoke = next(s for s in job["steps"] if s.get("name") == "Smoke-test the image")["run"]
    assert "firecrest-ci-middleware --help" in smoke and "id -u" in smoke
    attest = jobs["attest-image"]
    assert "middleware-image" in attest["needs"]
    subjects = [s["with"]["subject-name"] for s in attest["steps"]]
    assert "${{ needs.version.outputs.image }}-middleware" in subjects
