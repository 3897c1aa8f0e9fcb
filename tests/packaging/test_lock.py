"""`make lock` keeps what the image's `pip install --require-hashes` needs: every pinned
requirement of requirements/runtime.txt with its hashes."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_lock_target_generates_hashes_for_the_runtime_requirements() -> None:
    recipe = re.search(r"^lock:.*?(?=^\S|\Z)", (ROOT / "Makefile").read_text(), re.M | re.S)
    assert recipe is not None
    runtime = [line for line in recipe.group(0).splitlines() if "requirements/runtime.txt" in line]
    assert runtime and all("--generate-hashes" in line for line in runtime), runtime


def test_every_runtime_requirement_carries_its_hashes() -> None:
    text = (ROOT / "requirements" / "runtime.txt").read_text()
    pins = re.findall(r"^([A-Za-z0-9_.\-\[\]]+)==\S+((?:\s*\\\n\s+--hash=sha256:[0-9a-f]{64})*)", text, re.M)
    assert pins
    assert [name for name, hashes in pins if "--hash=sha256:" not in hashes] == []
    assert "junitparser==" in text  # the runner's own JUnit parser is in the image
