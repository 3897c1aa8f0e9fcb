"""The README's input and output tables are generated from action.yml (scripts/action_docs.py,
`make docs`), and a README that disagrees with action.yml fails here."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from scripts.action_docs import inputs_table, outputs_table, render

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "action_docs.py"
ACTION = yaml.safe_load((ROOT / "action.yml").read_text())


def check(action: Path, readme: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), "--check", "--action", str(action), "--readme", str(readme)],
        capture_output=True,
        text=True,
    )


def test_readme_tables_match_action_yml():
    done = check(ROOT / "action.yml", ROOT / "README.md")
    assert done.returncode == 0, done.stderr


def test_a_changed_description_makes_the_check_fail_and_make_docs_fixes_it(tmp_path):
    action = tmp_path / "action.yml"
    readme = tmp_path / "README.md"
    readme.write_text((ROOT / "README.md").read_text())
    changed = dict(
        ACTION, inputs={**ACTION["inputs"], "partition": {"description": "Slurm partition | queue."}}
    )
    action.write_text(yaml.safe_dump(changed, sort_keys=False))
    done = check(action, readme)
    assert done.returncode == 1 and "make docs" in done.stderr
    fixed = subprocess.run(
        [sys.executable, str(SCRIPT), "--action", str(action), "--readme", str(readme)], capture_output=True
    )
    assert fixed.returncode == 0
    assert "| `partition` | no | — | Slurm partition \\| queue. |" in readme.read_text()
    assert check(action, readme).returncode == 0


def test_every_input_and_output_has_a_row_in_action_yml_order():
    rows = inputs_table(ACTION).splitlines()[2:]
    assert [row.split("`")[1] for row in rows] == list(ACTION["inputs"])
    assert "| `system` | yes | — |" in rows[0]
    assert [row.split("`")[1] for row in outputs_table(ACTION).splitlines()[2:]] == list(ACTION["outputs"])


def test_descriptions_cannot_become_markup():
    action = {"inputs": {"x": {"description": "a <b> | c * [d]\n  e"}}, "outputs": {}}
    assert inputs_table(action).splitlines()[2] == "| `x` | no | — | a \\<b\\> \\| c \\* \\[d\\] e |"


def test_readme_without_markers_is_refused(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("# no tables here\n")
    done = check(ROOT / "action.yml", readme)
    assert done.returncode == 2 and "action-inputs:start" in done.stderr
    text = "<!-- action-inputs:start -->\n<!-- action-inputs:end -->\n"
    rendered_twice = render(text + "<!-- action-outputs:start -->x<!-- action-outputs:end -->", ACTION)
    assert rendered_twice.count("| Input |") == 1 and rendered_twice.count("| Output |") == 1
