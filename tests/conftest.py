"""Shared fixtures: the recorded real FirecREST responses and real webhook payloads."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def real_responses() -> dict[str, Any]:
    """Responses recorded from a real FirecREST v2 server on real Slurm."""
    path = SHARED_DATA / "firecrest-v2" / "real-responses.json"
    assert path.exists(), f"missing test data {path}: the repository expects ../shared beside it"
    return json.loads(path.read_text())
