"""docs/settings.md is generated from the Settings model (scripts/settings_docs.py, `make docs`):
it fails here when the two differ, or when a variable has no meaning written down."""

from __future__ import annotations

from pathlib import Path

import pytest

from middleware.settings import Settings
from scripts.settings_docs import SOURCE, TARGET, Undocumented, comments, main, render


def test_the_settings_reference_is_up_to_date():
    assert main(["--check"]) == 0, "docs/settings.md is stale: run `make docs`"


def test_every_variable_is_in_the_reference_with_its_default():
    text = TARGET.read_text()
    for name in Settings.model_fields:
        assert f"| `{name.upper()}` |" in text, name
    assert "| `DISPATCH_LEASE` | integer, ≥ 1 | `60` |" in text
    assert "| `ADMIN_TOKEN` | text, secret (or `ADMIN_TOKEN_FILE`) | — |" in text
    assert "| `LOG_LEVEL` | one of `DEBUG`, `INFO`, `WARNING`, `ERROR` | `INFO` |" in text


def test_a_stale_reference_fails_the_check_and_is_rewritten(tmp_path: Path):
    stale = tmp_path / "settings.md"
    stale.write_text(TARGET.read_text().replace("`DISPATCH_LEASE`", "`DISPATCH_LEAS`"))
    assert main(["--check", "--output", str(stale)]) == 1
    assert main(["--output", str(stale)]) == 0
    assert stale.read_text() == TARGET.read_text()


def test_a_variable_without_a_meaning_fails_the_rendering():
    source = SOURCE.read_text()
    assert comments(source)["public_url"]
    lines = source.splitlines()
    at = next(i for i, line in enumerate(lines) if line.strip().startswith("public_url:"))
    assert lines[at - 1].strip().startswith("#:")
    del lines[at - 1]
    with pytest.raises(Undocumented, match="PUBLIC_URL"):
        render("\n".join(lines))
