"""One version ties the release together (README: Versioning): the image action.yml runs, the
package's version, the changelog's newest release, and the major tag users reference."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
MAJOR = VERSION.split(".")[0]
CHANGELOG = (ROOT / "CHANGELOG.md").read_text()


def test_action_yml_runs_the_image_of_the_package_version():
    image = yaml.safe_load((ROOT / "action.yml").read_text())["runs"]["image"]
    assert image == f"docker://ghcr.io/firecrest-ci/firecrest-ci:{VERSION}"


def test_changelog_keeps_an_unreleased_section_above_the_package_version():
    headings = re.findall(r"^## \[([^\]]+)\]", CHANGELOG, flags=re.M)
    assert headings[:2] == ["Unreleased", VERSION], headings
    assert re.search(rf"^## \[{re.escape(VERSION)}\] - \d{{4}}-\d{{2}}-\d{{2}}$", CHANGELOG, flags=re.M)
    # Keep a Changelog's link references for every heading.
    for heading in headings:
        assert re.search(rf"^\[{re.escape(heading)}\]: https://", CHANGELOG, flags=re.M), heading


def test_readme_and_example_reference_the_major_tag():
    readme = (ROOT / "README.md").read_text()
    example = (ROOT / "workflows" / "github" / "hpc-ci.yml").read_text()
    for text in (readme, example):
        uses = re.findall(r"uses: firecrest-ci/firecrest-ci@(\S+)", text)
        assert uses == [f"v{MAJOR}"], uses
    assert "## Versioning" in readme
