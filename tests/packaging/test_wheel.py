"""`pip install firecrest-ci` gives `ci-runner` with the runner's dependencies only; the middleware
comes with its extra, and its installed wheel carries what it reads at run time (migrations, the
CI/CD component). Built from this checkout and installed into fresh virtual environments."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def run(*args: str | Path, cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600, check=False
    )
    assert done.returncode == 0, f"{args[:3]} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
    return done.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    run(BIN / "python", "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", out, ROOT, cwd=out)
    (found,) = out.glob("firecrest_ci-*.whl")
    return found


def venv(where: Path, requirement: str) -> Path:
    """A fresh venv with `requirement` installed (uv: fast, from its cache when it can)."""
    run(BIN / "uv", "venv", "--quiet", "--python", sys.executable, where)
    python = where / "bin" / "python"
    run(BIN / "uv", "pip", "install", "--quiet", "--python", python, requirement)
    return python


def test_the_runner_installs_alone_and_answers_help(wheel: Path, tmp_path: Path) -> None:
    python = venv(tmp_path / "runner", str(wheel))
    assert "Run CI jobs on HPC systems through FirecREST" in run(python.parent / "ci-runner", "--help")
    missing = subprocess.run([python, "-c", "import flask"], capture_output=True, text=True, check=False)
    assert missing.returncode != 0  # the middleware's and the sandbox's libraries stay out


def test_the_middleware_extra_starts_and_carries_its_files(wheel: Path, tmp_path: Path) -> None:
    python = venv(tmp_path / "middleware", f"{wheel}[middleware]")
    check = (
        "from middleware.app import create_app\n"
        "from middleware.managed_gitlab.templates_project import COMPONENT\n"
        "app = create_app()\n"  # migrations run on the SQLite default
        "c = app.test_client()\n"
        "print(c.get('/healthz').status_code, c.get('/readyz').status_code)\n"
        "import hashlib\n"
        "print(hashlib.sha256(COMPONENT.read_bytes()).hexdigest())\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "REDIS_", "BROKER_"))}
    env.update(DATA_DIR=str(tmp_path / "state"), DEMO_MODE="1", PYTHONPATH="")
    out = run(python, "-c", check, cwd=tmp_path, env=env)
    published = ROOT / "workflows" / "gitlab" / "templates" / "firecrest-job.yml"
    assert out.split()[-3:] == ["200", "200", hashlib.sha256(published.read_bytes()).hexdigest()], out
