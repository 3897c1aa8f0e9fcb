"""A plain clone is enough: nothing the two commands, the tests or the benchmarks run reads
outside the repository, and what was copied in keeps its licence."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: Ways code has reached beside the repository (`../shared`): a path built on ROOT.parent, or the
#: folder's name as a path part.
OUTSIDE = re.compile(r"ROOT\.parent\b|parents\[\d\]\.parent\b|\.\./shared|[\"']shared[\"']\s*/")


def tracked(*patterns: str) -> list[Path]:
    names = subprocess.run(
        ["git", "ls-files", *patterns], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    return [ROOT / name for name in names]


def test_no_code_reads_beside_the_repository():
    files = tracked("*.py", "*.sh", "Makefile", ".ci/*", "*.yml", "*.toml")
    offenders = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in files
        if path.exists() and path.name != "test_plain_clone.py"
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1)
        if OUTSIDE.search(line)
    ]
    assert offenders == []


def test_recorded_data_is_in_the_repository_with_its_licences():
    for folder in ("github", "gitlab", "bitbucket"):
        webhooks = ROOT / "data" / "webhooks" / folder
        assert "MIT" in (webhooks / "LICENSE").read_text(), folder
        assert list(webhooks.rglob("*.json")), folder
    assert (ROOT / "data" / "firecrest-v2" / "real-responses.json").stat().st_size > 0


def test_the_project_licence_is_the_one_the_readme_and_the_package_name():
    licence = (ROOT / "LICENSE").read_text()
    assert licence.startswith("BSD 3-Clause License")
    assert 'license = "BSD-3-Clause"' in (ROOT / "pyproject.toml").read_text()
    assert "BSD-3-Clause: see `LICENSE`" in (ROOT / "README.md").read_text()
