"""Shared fixtures: the recorded real FirecREST responses and real webhook payloads."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "data"


@pytest.fixture(scope="session")
def real_responses() -> dict[str, Any]:
    """Responses recorded from a real FirecREST v2 server on real Slurm."""
    path = DATA / "firecrest-v2" / "real-responses.json"
    assert path.exists(), f"missing test data {path} (data/ in the repository)"
    return json.loads(path.read_text())


def service_url(name: str) -> str:
    """URL of a real service started by `make test` (scripts/services.sh); fail loudly if absent."""
    import os

    value = os.environ.get(name, "")
    if not value:
        pytest.fail(
            f"{name} is not set: these tests need the real service. Run them with `make test`, "
            "which starts Redis and PostgreSQL (scripts/services.sh)."
        )
    return value
