"""Render action.yml's inputs and outputs as the README's tables (`make docs`).

action.yml is what GitHub reads, so it is the one source: the README's tables are generated
from it between marker comments, and `--check` (run by the tests) fails when they differ,
so the two cannot drift apart.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
#: Characters that would turn a description into markup or break the table row.
_MARKDOWN = re.compile(r"([\\`*|<>\[\]])")


def _cell(text: object) -> str:
    """One table cell: whitespace folded to single spaces, Markdown's special characters escaped."""
    return _MARKDOWN.sub(r"\\\1", " ".join(str(text).split()))


def _default(spec: Mapping[str, Any]) -> str:
    value = spec.get("default")
    if value is None or str(value) == "":
        return "—"
    return f"`{value}`"


def inputs_table(action: Mapping[str, Any]) -> str:
    """The inputs in action.yml's order: name, whether required, default, description."""
    rows = ["| Input | Required | Default | Description |", "|---|---|---|---|"]
    for name, spec in action.get("inputs", {}).items():
        required = "yes" if spec.get("required") else "no"
        rows.append(f"| `{name}` | {required} | {_default(spec)} | {_cell(spec.get('description', ''))} |")
    return "\n".join(rows)


def outputs_table(action: Mapping[str, Any]) -> str:
    """The outputs in action.yml's order: name and description."""
    rows = ["| Output | Description |", "|---|---|"]
    for name, spec in action.get("outputs", {}).items():
        rows.append(f"| `{name}` | {_cell(spec.get('description', ''))} |")
    return "\n".join(rows)


def _replace_between(text: str, marker: str, body: str) -> str:
    start, end = f"<!-- {marker}:start -->", f"<!-- {marker}:end -->"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
    if len(pattern.findall(text)) != 1:
        raise ValueError(f"README needs exactly one {start} ... {end} pair")
    return pattern.sub(lambda _: f"{start}\n{body}\n{end}", text)


def render(readme: str, action: Mapping[str, Any]) -> str:
    """The README with both generated tables replaced; everything else untouched."""
    readme = _replace_between(readme, "action-inputs", inputs_table(action))
    return _replace_between(readme, "action-outputs", outputs_table(action))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--action", type=Path, default=ROOT / "action.yml")
    parser.add_argument("--readme", type=Path, default=ROOT / "README.md")
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if README is stale")
    args = parser.parse_args(argv)
    action = yaml.safe_load(args.action.read_text())
    current = args.readme.read_text()
    try:
        wanted = render(current, action)
    except ValueError as error:
        print(f"{args.readme}: {error}", file=sys.stderr)
        return 2
    if wanted == current:
        return 0
    if args.check:
        print(f"{args.readme} is out of date with {args.action}: run `make docs`", file=sys.stderr)
        return 1
    args.readme.write_text(wanted)
    print(f"{args.readme}: tables regenerated from {args.action}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
