"""Render the middleware's `Settings` model as docs/settings.md (`make docs`).

The model is the one source of truth: every variable's name, type and default come from it, and
its meaning from the field's description or, failing that, from the `#:` comment lines right
above the field in middleware/settings.py. `--check` (run by the tests) fails when the file is
stale, and rendering fails when a variable has no meaning, so the reference cannot drift.
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
import types
import typing
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

from pydantic.fields import FieldInfo

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from middleware.settings import Settings  # noqa: E402 - the repository root goes on the path first

SOURCE = ROOT / "middleware" / "settings.py"
TARGET = ROOT / "docs" / "settings.md"
#: Characters that would turn a meaning into markup or break the table row.
_MARKDOWN = re.compile(r"([\\*|<>\[\]])")


class Undocumented(ValueError):
    """A variable has neither a description nor a `#:` comment."""


def comments(source: str) -> dict[str, str]:
    """Field name -> the text of the `#:` comment block right above it in class Settings."""
    lines = source.splitlines()
    found: dict[str, str] = {}
    for node in ast.walk(ast.parse(source)):
        if not (isinstance(node, ast.ClassDef) and node.name == "Settings"):
            continue
        for statement in node.body:
            if not (isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name)):
                continue
            block: list[str] = []
            row = statement.lineno - 2
            while row >= 0 and lines[row].strip().startswith("#:"):
                block.insert(0, lines[row].strip().removeprefix("#:").strip())
                row -= 1
            if block:
                found[statement.target.id] = " ".join(block)
    return found


def type_text(annotation: Any) -> str:
    """What an operator writes, in words."""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is typing.Annotated:
        return type_text(args[0])
    if origin in (Union, types.UnionType):
        present = [arg for arg in args if arg is not type(None)]
        text = " or ".join(type_text(arg) for arg in present)
        return f"{text} (optional)" if len(present) < len(args) else text
    if origin is Literal:
        return "one of " + ", ".join(f"`{arg}`" for arg in args)
    if origin is tuple:
        return "comma-separated list"
    names = {bool: "boolean", int: "integer", float: "number", str: "text", Path: "path"}
    return names.get(annotation, getattr(annotation, "__name__", str(annotation)))


def bounds(info: FieldInfo) -> str:
    for meta in info.metadata:
        low = getattr(meta, "ge", None)
        if low is not None:
            return f", ≥ {low}"
    return ""


def default_text(info: FieldInfo) -> str:
    value = info.default
    if value is None or value == "":
        return "—"
    if isinstance(value, tuple):
        value = ",".join(str(v) for v in value)
    if isinstance(value, bool):
        value = "true" if value else "false"
    return f"`{value}`"


def secret(name: str, info: FieldInfo) -> bool:
    return info.repr is False


def file_variant(name: str, info: FieldInfo) -> bool:
    """Mirrors Settings._secret_files: a secret without its own `_file` setting."""
    return secret(name, info) and f"{name}_file" not in Settings.model_fields


def _cell(text: str) -> str:
    """One table cell: whitespace folded; special characters escaped outside `code` spans."""
    parts = " ".join(text.split()).split("`")
    return "`".join(part if odd % 2 else _MARKDOWN.sub(r"\\\1", part) for odd, part in enumerate(parts))


def render(source: str) -> str:
    """docs/settings.md for the model and the comments of `source` (middleware/settings.py)."""
    notes = comments(source)
    rows = ["| Variable | Type | Default | Meaning |", "|---|---|---|---|"]
    for name, info in Settings.model_fields.items():
        meaning = info.description or notes.get(name)
        if not meaning:
            raise Undocumented(f"{name.upper()} has no description and no `#:` comment in {SOURCE.name}")
        kind = type_text(info.annotation) + bounds(info)
        if secret(name, info):
            extra = f" (or `{name.upper()}_FILE`)" if file_variant(name, info) else ""
            kind += f", secret{extra}"
        rows.append(f"| `{name.upper()}` | {_cell(kind)} | {default_text(info)} | {_cell(meaning)} |")
    files = ", ".join(
        f"`{name.upper()}_FILE`" for name, info in Settings.model_fields.items() if file_variant(name, info)
    )
    return "\n".join(
        [
            "# Middleware settings",
            "",
            "<!-- Generated from middleware/settings.py by scripts/settings_docs.py (`make docs`); "
            "do not edit. -->",
            "",
            "The middleware (gunicorn, the Celery workers and `firecrest-ci-middleware`) reads these "
            "environment variables; names are case-insensitive. A wrong type or value refuses to start "
            "with one line naming the variable.",
            "",
            *rows,
            "",
            "## Secrets from files",
            "",
            f"Each secret can instead be read from a file: {files}. The file's content is the value, "
            "one trailing newline dropped. Setting both a variable and its `_FILE` variant, or naming "
            "a file that is missing, unreadable or empty, refuses to start. `GITHUB_APP_PRIVATE_KEY_FILE` "
            "is a setting of its own (above) and is read when the key is used.",
            "",
            "## Outside this model",
            "",
            "- `PROMETHEUS_MULTIPROC_DIR`: set it (to an empty directory) so that the in-memory "
            "counters of `/metrics` add up across gunicorn's processes; the figures read from the "
            "database need no setting.",
            "",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--output", type=Path, default=TARGET)
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if the file is stale")
    args = parser.parse_args(argv)
    try:
        wanted = render(SOURCE.read_text())
    except Undocumented as error:
        print(f"{SOURCE}: {error}", file=sys.stderr)
        return 2
    current = args.output.read_text() if args.output.exists() else ""
    if wanted == current:
        return 0
    if args.check:
        print(f"{args.output} is out of date with {SOURCE}: run `make docs`", file=sys.stderr)
        return 1
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(wanted)
    print(f"{args.output}: regenerated from {SOURCE}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
