"""deploy/systemd: the units pass `systemd-analyze verify` and keep their promises (hardened, secrets
only as credentials, migrations before web and workers), and the example environment names only
real settings.

`systemd-analyze verify` needs no running systemd, but it checks that every Exec*= program exists.
It runs with `--root` on a throwaway tree holding the host's own unit files (the targets the units
hang off), the units as an operator installs them, and an executable stub at each program path."""

from __future__ import annotations

import configparser
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from middleware.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
SYSTEMD = ROOT / "deploy" / "systemd"
UNITS = sorted(SYSTEMD.glob("*.service"))
HOST_UNITS = Path("/usr/lib/systemd/system")
VENV = "/opt/firecrest-ci/venv"
ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(
    ANALYZE is None,
    reason="systemd-analyze is not installed (Debian: systemd; scripts/services.sh installs it)",
)


def unit(name: str) -> dict[str, list[str]]:
    """A unit's settings, every value of each key in order, continuation lines joined."""
    text = re.sub(r"\\\n\s*", " ", (SYSTEMD / name).read_text())
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        if line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            found.setdefault(key.strip(), []).append(value.strip())
    return found


def programs(text: str) -> set[str]:
    text = re.sub(r"\\\n\s*", " ", text)
    return {m for m in re.findall(r"^Exec\w+=[-@:+!]*(/\S+)", text, flags=re.M)}


def verify_tree(tmp_path: Path, units: dict[str, str]) -> Path:
    """A root with the host's unit files, `units` installed in /etc/systemd/system and stubs for
    their programs."""
    root = tmp_path / "root"
    library = root / "usr" / "lib" / "systemd" / "system"
    library.mkdir(parents=True)
    for entry in HOST_UNITS.iterdir():
        if entry.is_file():  # follows links to files; the .wants directories are not needed
            shutil.copyfile(entry, library / entry.name)
    installed = root / "etc" / "systemd" / "system"
    installed.mkdir(parents=True)
    for name, text in units.items():
        (installed / name).write_text(text)
        for program in programs(text):
            stub = root / program.lstrip("/")
            stub.parent.mkdir(parents=True, exist_ok=True)
            stub.write_text("#!/bin/sh\nexit 0\n")
            stub.chmod(0o755)
    return root


def verify(root: Path, *names: str) -> subprocess.CompletedProcess[str]:
    assert ANALYZE is not None
    return subprocess.run(
        [ANALYZE, "verify", f"--root={root}", *names], capture_output=True, text=True, timeout=60
    )


def ours(report: str) -> list[str]:
    """The lines of a verify report about our units (the host's own may have their quirks)."""
    return [line for line in report.splitlines() if "firecrest-ci" in line]


INSTALLED = {path.name: path.read_text() for path in UNITS}
INSTANCES = ["firecrest-ci-migrate.service", "firecrest-ci-web.service", "firecrest-ci-worker@1.service"]


def test_the_kit_has_web_worker_template_and_migrate():
    assert set(INSTALLED) == {
        "firecrest-ci-migrate.service",
        "firecrest-ci-web.service",
        "firecrest-ci-worker@.service",
    }


@needs_analyze
def test_systemd_analyze_verify_passes(tmp_path):
    done = verify(verify_tree(tmp_path, INSTALLED), *INSTANCES, "firecrest-ci-worker@2.service")
    report = done.stdout + done.stderr
    assert done.returncode == 0 and not ours(report), report


@needs_analyze
def test_verify_catches_a_misspelt_setting(tmp_path):
    broken = dict(INSTALLED)
    broken["firecrest-ci-web.service"] = broken["firecrest-ci-web.service"].replace(
        "ProtectSystem=strict", "ProtectSytem=strict"
    )
    done = verify(verify_tree(tmp_path, broken), "firecrest-ci-web.service")
    assert any("ProtectSytem" in line for line in ours(done.stdout + done.stderr)), done.stderr


@needs_analyze
def test_verify_catches_a_missing_program(tmp_path):
    root = verify_tree(tmp_path, INSTALLED)
    (root / VENV.lstrip("/") / "bin" / "celery").unlink()
    done = verify(root, "firecrest-ci-worker@1.service")
    assert done.returncode != 0
    assert any("celery" in line and "not executable" in line for line in ours(done.stderr)), done.stderr


@pytest.mark.parametrize("name", sorted(INSTALLED))
def test_hardened(name):
    settings = unit(name)
    for key, value in {
        "DynamicUser": "yes",
        "User": "firecrest-ci",
        "StateDirectory": "firecrest-ci",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "NoNewPrivileges": "yes",
        "CapabilityBoundingSet": "",
    }.items():
        assert settings.get(key) == [value], (name, key)
    assert settings["EnvironmentFile"] == ["/etc/firecrest-ci/firecrest-ci.env"]  # no "-": missing is loud


@pytest.mark.parametrize("name", sorted(INSTALLED))
def test_secrets_only_as_credentials(name):
    settings = unit(name)
    credentials = {v.split(":", 1)[0]: v.split(":", 1)[1] for v in settings["LoadCredential"]}
    assert set(credentials) >= {"database_url", "middleware_secret_key", "admin_token", "gitlab_token"}
    assert all(path.startswith("/etc/firecrest-ci/credentials/") for path in credentials.values())
    files = {}
    for assignment in " ".join(settings["Environment"]).split():
        key, _, value = assignment.partition("=")
        if key.endswith("_FILE"):
            files[key] = value
        assert not re.search(r"(TOKEN|SECRET|KEY|PASSWORD)$", key), f"{name}: {key} set in the unit"
    assert files == {f"{c.upper()}_FILE": f"%d/{c}" for c in credentials}


def test_migrations_run_before_web_and_workers():
    migrate = unit("firecrest-ci-migrate.service")
    assert migrate["Type"] == ["oneshot"]
    assert migrate["ExecStart"] == [f"{VENV}/bin/firecrest-ci-middleware migrate"]
    assert "RemainAfterExit" not in migrate  # each start of web or a worker runs it again (upgrades)
    for name in ("firecrest-ci-web.service", "firecrest-ci-worker@.service"):
        settings = unit(name)
        assert "firecrest-ci-migrate.service" in settings["Requires"][0].split()
        assert "firecrest-ci-migrate.service" in settings["After"][0].split()
        assert settings["WantedBy"] == ["multi-user.target"]


def test_the_programs_are_the_packages_and_its_dependencies():
    web, worker = unit("firecrest-ci-web.service"), unit("firecrest-ci-worker@.service")
    assert web["Type"] == ["notify"]  # gunicorn's arbiter reports READY=1
    # The settings are checked (one line for a wrong one), then gunicorn replaces the process.
    assert web["ExecStart"][0].split() == [f"{VENV}/bin/firecrest-ci-middleware", "web"]
    assert (ROOT / "middleware" / "gunicorn.conf.py").is_file()  # the wheel carries it there
    celery = worker["ExecStart"][0].split()
    assert celery[:5] == [f"{VENV}/bin/celery", "-A", "middleware.worker:celery", "worker", "-Q"]
    assert celery[celery.index("-n") + 1] == "%i@%H"  # the instance names the node
    here = Path(sys.executable).parent
    assert (here / "gunicorn").exists() and (here / "celery").exists()
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert "firecrest-ci-middleware" in scripts


def test_the_example_environment_names_only_settings():
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string("[env]\n" + (SYSTEMD / "firecrest-ci.env.example").read_text())
    names = set(parser["env"])
    known = {field.upper() for field in Settings.model_fields} | {"WORKER_CONCURRENCY"}
    assert names and names <= known, names - known
    assert not any(re.search(r"(TOKEN|SECRET|KEY|PASSWORD|DATABASE_URL)$", n) for n in names)
    assert "${WORKER_CONCURRENCY}" in unit("firecrest-ci-worker@.service")["ExecStart"][0]
