"""scripts/services.sh installs the services it misses as root, or through passwordless sudo
when it is not root (GitHub's hosted runners, where CI runs `make test`), and otherwise says
what to install. Run against stand-ins for id, sudo and apt-get: nothing is installed."""

from __future__ import annotations

import shutil
import stat
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "services.sh"


def executable(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


def install_missing(
    tmp_path: Path, *, uid: int, sudo: str | None
) -> tuple[subprocess.CompletedProcess[str], str]:
    """Source the script and call install_missing with only stand-ins and a few tools on PATH.

    `sudo` is None (no sudo), "passwordless" or "password" (every `sudo -n` refused). The
    stand-in apt-get logs whether it came through sudo and whether policy-rc.d was in place.
    """
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "calls.log"
    policy = tmp_path / "policy-rc.d"
    for name in ("tee", "chmod", "rm", "env", "true"):
        found = shutil.which(name)
        assert found, name
        (bin_dir / name).symlink_to(found)
    executable(bin_dir / "id", f'#!/bin/sh\n[ "$1" = -u ] && echo {uid} && exit 0\nexit 1\n')
    executable(
        bin_dir / "apt-get",
        f'#!/bin/sh\nif [ -x "{policy}" ]; then p=policy; else p=no-policy; fi\n'
        f'echo "apt-get $* via=${{VIA_SUDO:-direct}} $p front=$DEBIAN_FRONTEND" >> "{log}"\n',
    )
    if sudo == "passwordless":
        executable(bin_dir / "sudo", '#!/bin/sh\n[ "$1" = -n ] && shift\nVIA_SUDO=sudo exec "$@"\n')
    elif sudo == "password":
        executable(bin_dir / "sudo", "#!/bin/sh\necho 'sudo: a password is required' >&2\nexit 1\n")
    # Whatever this machine has installed, nothing counts as present: no redis-server on
    # PATH, no PostgreSQL (pg_bin redefined); only nginx's absolute path may still be found.
    script = f'source "{SCRIPT}"; pg_bin() {{ return 1; }}; POLICY_RC_D="{policy}"; install_missing'
    done = subprocess.run(
        ["/bin/bash", "-c", script], env={"PATH": str(bin_dir)}, capture_output=True, text=True, timeout=60
    )
    assert not policy.exists(), "policy-rc.d must be removed on exit"
    return done, log.read_text() if log.exists() else ""


def test_the_script_parses():
    done = subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_sourcing_only_defines_functions():
    done = subprocess.run(
        ["bash", "-c", f'source "{SCRIPT}"; declare -F start stop install_missing as_root'],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[-4:] == ["start", "stop", "install_missing", "as_root"]


def test_not_root_installs_through_sudo(tmp_path):
    done, calls = install_missing(tmp_path, uid=1001, sudo="passwordless")
    assert done.returncode == 0, done.stderr
    lines = calls.splitlines()
    assert len(lines) == 2, calls
    assert lines[0].startswith("apt-get update -qq via=sudo policy front=noninteractive")
    assert lines[1].startswith("apt-get install -y -qq --no-install-recommends redis-server postgresql")
    assert lines[1].endswith("via=sudo policy front=noninteractive")


def test_root_installs_directly(tmp_path):
    done, calls = install_missing(tmp_path, uid=0, sudo=None)
    assert done.returncode == 0, done.stderr
    lines = calls.splitlines()
    assert len(lines) == 2, calls
    assert all("via=direct policy front=noninteractive" in line for line in lines), calls
    assert "redis-server postgresql" in lines[1]


@pytest.mark.parametrize("sudo", [None, "password"], ids=["no-sudo", "sudo-wants-a-password"])
def test_not_root_without_passwordless_sudo_says_what_to_install(tmp_path, sudo):
    done, calls = install_missing(tmp_path, uid=1001, sudo=sudo)
    assert done.returncode == 1
    assert calls == ""
    assert "not root and no passwordless sudo" in done.stderr
    assert "apt-get install redis-server postgresql" in done.stderr
