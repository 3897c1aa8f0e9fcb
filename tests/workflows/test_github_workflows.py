"""The ready workflows for users pass actionlint (with shellcheck) and zizmor; action.yml passes zizmor."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.tools import tool, tool_env

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = sorted((ROOT / "workflows" / "github").glob("*.yml"))


def test_there_are_workflows():
    names = {path.name for path in WORKFLOWS}
    assert "hpc-ci.yml" in names
    # The self-test is the repository's own workflow now, not one for users to copy.
    assert "self-test.yml" not in names
    assert (ROOT / ".github" / "workflows" / "self-test.yml").is_file()


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda p: p.name)
def test_actionlint_with_shellcheck(workflow):
    tool("shellcheck")  # actionlint silently skips run: scripts without it
    done = subprocess.run(
        [tool("actionlint"), "-no-color", str(workflow)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=tool_env(),
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_actionlint_catches_a_broken_workflow(tmp_path):
    broken = tmp_path / "broken.yml"
    steps = "    steps:\n      - run: echo ${{ github.event.issue.title }\n"
    broken.write_text("on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n" + steps)
    done = subprocess.run([tool("actionlint"), str(broken)], capture_output=True, text=True, env=tool_env())
    assert done.returncode != 0


def test_zizmor_finds_nothing():
    done = subprocess.run(
        [tool("zizmor"), "--offline", "--no-progress", *map(str, WORKFLOWS), str(ROOT / "action.yml")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=tool_env(),
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "No findings to report" in done.stdout + done.stderr


def test_example_passes_secrets_only_through_inputs_and_outputs_through_env():
    text = (ROOT / "workflows" / "github" / "hpc-ci.yml").read_text()
    assert "client_secret: ${{ secrets.FIRECREST_CLIENT_SECRET }}" in text
    for line in text.splitlines():
        if line.strip().startswith("run:"):
            assert "${{" not in line, f"template expansion inside run: {line}"
