"""Comment commands: `<prefix> run [P1,P2][;VAR=value;...]` on a PR's first line.

Pure parsing. `,`, `;` and `=` separate the parts, so they can never appear
inside a name or a value; variable names follow a strict pattern and are
checked against reserved families (RESERVED below), a rule the API trigger
and the registration of a pipeline's allowed names share.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import NamedTuple

#: Upper case only: lower-case names such as `http_proxy` are read by some tools and not by others.
VARIABLE_NAME = re.compile(r"[A-Z][A-Z0-9_]{0,63}")
_PIPELINE = re.compile(r"[^\s,;=]+")


class Family(NamedTuple):
    """Variables that steer one tool or layer; refused as a whole, so a new member is refused too."""

    what: str
    prefixes: tuple[str, ...] = ()
    names: frozenset[str] = frozenset()
    suffixes: tuple[str, ...] = ()

    def covers(self, name: str) -> bool:
        return name in self.names or name.startswith(self.prefixes) or name.endswith(self.suffixes)


#: Comment and API variables become GitLab pipeline variables of the job that holds the FirecREST
#: credentials and runs git, Python (ci-runner) and a shell; pipeline variables override project
#: ones. Whoever may run a pipeline must not be able to redirect the credentials (proxies, trust
#: stores, token URL), run code in that job (loader, interpreters, git helpers, shell start-up) or
#: change how the CI or Slurm run and account for the job. A family is refused as a whole.
# fmt: off
RESERVED: tuple[Family, ...] = (
    Family("this service and its FirecREST credentials", ("FIRECREST_",), frozenset({"AUTH_TOKEN_URL"})),
    Family(
        "the CI's own variables and runner settings",
        ("CI_", "GITLAB_", "FF_", "RUNNER_", "DOCKER_", "KUBERNETES_", "ARTIFACT_", "CACHE_", "GITHUB_",
         "ACTIONS_", "INPUT_"),
        frozenset({"CI", "GET_SOURCES_ATTEMPTS", "RESTORE_CACHE_ATTEMPTS", "EXECUTOR_JOB_SECTION_ATTEMPTS",
                   "TRANSFER_METER_FREQUENCY", "SECURE_FILES_DOWNLOAD_PATH", "TRIGGER_PAYLOAD"}),
    ),
    Family("Slurm's input and output variables", ("SLURM_", "SBATCH_", "SALLOC_", "SRUN_")),
    Family("git and ssh: configuration, helpers and the commands they run", ("GIT_", "SSH_")),
    Family(
        "TLS trust stores, HTTP clients and credential files",
        ("SSL_", "OPENSSL_", "CURL_", "REQUESTS_", "GNUTLS_", "KRB5"),
        frozenset({"SSLKEYLOGFILE", "NETRC", "WGETRC"}),
    ),
    Family("proxies", suffixes=("_PROXY",)),  # HTTP_PROXY, HTTPS_PROXY, ALL_PROXY, NO_PROXY, ...
    Family("Python and its package installers", ("PYTHON", "PIP_", "UV_"), frozenset({"VIRTUAL_ENV"})),
    Family(
        "the dynamic loader, the C library and name resolution",
        ("LD_", "DYLD_"),
        frozenset({"GCONV_PATH", "GLIBC_TUNABLES", "LOCPATH", "NLSPATH", "HOSTALIASES", "RES_OPTIONS",
                   "LOCALDOMAIN", "RESOLV_HOST_CONF"}),
    ),
    Family(
        "shells: start-up files, prompts, word splitting, home and search paths",
        ("BASH_", "ZSH_", "XDG_"),
        frozenset({"ENV", "IFS", "PS1", "PS2", "PS3", "PS4", "PROMPT_COMMAND", "SHELLOPTS", "BASHOPTS",
                   "CDPATH", "GLOBIGNORE", "HISTFILE", "ZDOTDIR", "SHELL", "HOME", "PATH", "USER",
                   "LOGNAME"}),
    ),
    Family("commands other tools start", names=frozenset({"EDITOR", "VISUAL", "PAGER", "BROWSER"})),
    Family("Perl's start-up options and library paths", ("PERL",)),
    Family("Ruby's start-up options, gems and bundler", ("RUBY", "GEM_", "BUNDLE_")),
    Family("Node.js and npm options", ("NODE_", "NPM_CONFIG_")),
    Family(
        "the Java VM's start-up options",
        names=frozenset({"JAVA_TOOL_OPTIONS", "JDK_JAVA_OPTIONS", "_JAVA_OPTIONS", "CLASSPATH"}),
    ),
)
# fmt: on
SYNTAX = "expected: `{prefix} run [pipeline1,pipeline2][;NAME=value;...]`"


class CommandError(ValueError):
    """The comment is a command but not a valid one; the message can be posted back."""


@dataclass(frozen=True)
class RunCommand:
    pipelines: tuple[str, ...] = ()
    variables: dict[str, str] = field(default_factory=dict)


def check_variable_name(name: str) -> str | None:
    """Why `name` cannot be set from outside, or None if it can."""
    if not VARIABLE_NAME.fullmatch(name):
        return (
            f"{name!r} is not a variable name: 1 to 64 of A-Z, 0-9 and _, starting with a letter "
            "([A-Z][A-Z0-9_]{0,63})"
        )
    for family in RESERVED:
        if family.covers(name):
            return f"{name} is reserved ({family.what}) and cannot be set from a comment or a trigger"
    return None


def check_allowed_variables(
    pipeline: str, names: Iterable[str], allowed: frozenset[str] | None
) -> str | None:
    """Why `pipeline`, which may narrow the names it takes (None: any), refuses some of `names`."""
    refused = sorted(set(names) - allowed) if allowed is not None else []
    if not refused:
        return None
    takes = f"it allows only {', '.join(sorted(allowed))}" if allowed else "it allows none"
    return f"pipeline {pipeline} does not allow the variable(s) {', '.join(refused)}; {takes}"


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
            if not name or not _PIPELINE.fullmatch(name):
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
