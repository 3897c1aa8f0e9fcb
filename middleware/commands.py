"""Comment commands: `<prefix> run [P1,P2][;VAR=value;...]` on a PR's first line.

Pure parsing. `,`, `;` and `=` separate the parts, so they can never appear
inside a name or a value; variable names are checked against the reserved
ones (FirecREST credentials, CI_*, and variables that change how a shell or
the dynamic loader behaves), a rule the API trigger shares.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_PIPELINE = re.compile(r"^[^\s,;=]+$")
RESERVED_PREFIXES = ("CI_", "GITLAB_", "FIRECREST_", "SLURM_", "LD_", "DYLD_")
RESERVED_NAMES = frozenset(
    {
        "AUTH_TOKEN_URL",
        "PATH",
        "HOME",
        "SHELL",
        "ENV",
        "BASH_ENV",
        "IFS",
        "PS4",
        "PROMPT_COMMAND",
        "PYTHONPATH",
        "PYTHONSTARTUP",
        "PERL5OPT",
        "NODE_OPTIONS",
        "GIT_ASKPASS",
        "GIT_SSH_COMMAND",
        "GIT_CONFIG_GLOBAL",
        "GIT_DIR",
    }
)
SYNTAX = "expected: `{prefix} run [pipeline1,pipeline2][;NAME=value;...]`"


class CommandError(ValueError):
    """The comment is a command but not a valid one; the message can be posted back."""


@dataclass(frozen=True)
class RunCommand:
    pipelines: tuple[str, ...] = ()
    variables: dict[str, str] = field(default_factory=dict)


def check_variable_name(name: str) -> str | None:
    """Why `name` cannot be set from outside, or None if it can."""
    if not _NAME.match(name):
        return "a variable name must match [A-Za-z_][A-Za-z0-9_]*"
    upper = name.upper()
    if upper in RESERVED_NAMES or upper.startswith(RESERVED_PREFIXES):
        return f"{name} is reserved and cannot be overridden"
    return None


def parse_command(body: str | None, prefix: str = "firecrest-ci") -> RunCommand | None:
    """A RunCommand, None when the first line is not a command, or CommandError."""
    if not body:
        return None
    lines = body.strip().splitlines()
    first = lines[0].strip() if lines else ""
    head = f"{prefix} run"
    if not first.startswith(head):
        return None
    rest = first[len(head) :]
    if rest and not rest[0].isspace() and rest[0] != ";":
        return None  # e.g. "firecrest-ci runner": not this command
    syntax = SYNTAX.format(prefix=prefix)
    names_part, _, vars_part = rest.strip().partition(";")
    pipelines: list[str] = []
    if names_part.strip():
        for raw in names_part.split(","):
            name = raw.strip()
            if not name or not _PIPELINE.match(name):
                raise CommandError(f"invalid pipeline name {raw.strip()!r}; {syntax}")
            if name in pipelines:
                raise CommandError(f"pipeline {name} is named twice; {syntax}")
            pipelines.append(name)
    variables: dict[str, str] = {}
    if vars_part.strip():
        for item in vars_part.split(";"):
            item = item.strip()
            if not item:
                continue
            name, sep, value = item.partition("=")
            name, value = name.strip(), value.strip()
            if not sep or "=" in value:
                raise CommandError(f"variable {item!r} must be NAME=value without ',;=' in it; {syntax}")
            if "," in value:
                raise CommandError(f"variable {name} has a ',' in its value; {syntax}")
            problem = check_variable_name(name)
            if problem:
                raise CommandError(f"{problem}; {syntax}")
            if name in variables:
                raise CommandError(f"variable {name} is set twice; {syntax}")
            variables[name] = value
    return RunCommand(tuple(pipelines), variables)
