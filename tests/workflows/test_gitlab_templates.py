"""The GitLab component and example entrypoints validate against GitLab's CI schema,
each YAML document on its own (a component's `spec:` header is a separate document)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.tools import tool

ROOT = Path(__file__).resolve().parents[2]
FILES = sorted((ROOT / "workflows" / "gitlab").rglob("*.yml"))


def validate(document: object, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "document.json"
    path.write_text(json.dumps(document))
    return subprocess.run(
        [tool("check-jsonschema"), "--builtin-schema", "vendor.gitlab-ci", str(path)],
        capture_output=True,
        text=True,
    )


def test_there_are_a_component_and_two_examples():
    names = {str(p.relative_to(ROOT / "workflows" / "gitlab")) for p in FILES}
    assert {
        "templates/firecrest-job.yml",
        "examples/.gitlab-ci.yml",
        "examples/matrix.gitlab-ci.yml",
    } <= names


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_every_document_validates(path, tmp_path):
    documents = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    assert documents
    for document in documents:
        done = validate(document, tmp_path)
        assert done.returncode == 0, done.stdout + done.stderr


def test_the_schema_check_rejects_a_broken_pipeline(tmp_path):
    done = validate({"job": {"script": "x", "when": "sometimes"}}, tmp_path)
    assert done.returncode != 0


def test_component_declares_the_inputs_the_issue_names():
    spec = next(
        yaml.safe_load_all((ROOT / "workflows" / "gitlab" / "templates" / "firecrest-job.yml").read_text())
    )
    assert {"system", "script", "account", "partition", "time", "staging"} <= set(spec["spec"]["inputs"])
