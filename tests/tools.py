"""Find the lint tools the dev requirements install next to this Python; fail loudly if missing."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

VENV_BIN = Path(sys.executable).parent


def tool(name: str) -> str:
    found = shutil.which(name, path=f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    if not found:
        pytest.fail(
            f"{name} is not installed: run the tests with `make test` (it installs requirements/dev.txt)"
        )
    return found


def tool_env() -> dict[str, str]:
    """PATH with the venv first, so actionlint finds shellcheck."""
    return {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
