"""What `sbatch` reads from a batch script and its command line, as Slurm does.

Kept apart from the job manager so the parsing rules can be tested on their own:
`#SBATCH` lines count only in the leading comment block (sbatch stops at the
first line that is neither blank nor a comment), a `#` starts a comment inside
a directive, command-line options (here: the fields of the FirecREST request)
win over directives, and `--time` takes Slurm's formats. Options are checked
like sbatch's getopt_long: a long option may be abbreviated to a unique
prefix, and an unknown one makes sbatch print getopt's complaint and exit 1.
"""

from __future__ import annotations

import re
import shlex

#: Short options sbatch knows, mapped to their long names (only those the sandbox honours).
SHORT_OPTIONS = {
    "-J": "job-name",
    "-o": "output",
    "-e": "error",
    "-i": "input",
    "-t": "time",
    "-A": "account",
    "-p": "partition",
    "-D": "chdir",
}
#: Long options that take no value (or only an optional `=value`).
FLAGS = {
    "contiguous",
    "exclusive",
    "get-user-env",
    "help",
    "hold",
    "ignore-pbs",
    "kill-on-invalid-dep",
    "no-kill",
    "no-requeue",
    "overcommit",
    "oversubscribe",
    "parsable",
    "quiet",
    "reboot",
    "requeue",
    "spread-job",
    "test-only",
    "usage",
    "use-min-nodes",
    "verbose",
    "version",
    "wait",
    "wait-all-nodes",
}
#: Every long option of sbatch 22.05 (`sbatch --help`), for getopt_long's checks.
LONG_OPTIONS = FLAGS | {
    "account",
    "acctg-freq",
    "array",
    "batch",
    "bb",
    "bbf",
    "begin",
    "chdir",
    "cluster-constraint",
    "clusters",
    "comment",
    "constraint",
    "container",
    "core-spec",
    "cores-per-socket",
    "cpu-freq",
    "cpus-per-gpu",
    "cpus-per-task",
    "deadline",
    "delay-boot",
    "dependency",
    "distribution",
    "error",
    "exclude",
    "export",
    "export-file",
    "extra-node-info",
    "gid",
    "gpu-bind",
    "gpu-freq",
    "gpus",
    "gpus-per-node",
    "gpus-per-socket",
    "gpus-per-task",
    "gres",
    "gres-flags",
    "hint",
    "input",
    "job-name",
    "licenses",
    "mail-type",
    "mail-user",
    "mcs-label",
    "mem",
    "mem-bind",
    "mem-per-cpu",
    "mem-per-gpu",
    "mincpus",
    "network",
    "nice",
    "nodefile",
    "nodelist",
    "nodes",
    "ntasks",
    "ntasks-per-core",
    "ntasks-per-gpu",
    "ntasks-per-node",
    "ntasks-per-socket",
    "open-mode",
    "output",
    "partition",
    "power",
    "priority",
    "profile",
    "propagate",
    "qos",
    "reservation",
    "signal",
    "sockets-per-node",
    "switches",
    "thread-spec",
    "threads-per-core",
    "time",
    "time-min",
    "tmp",
    "uid",
    "wckey",
    "wrap",
}
#: sbatch's short options (its getopt string without the argument markers).
SHORT_LETTERS = set("AabBcCdDeFGhHiJkLmMnNoOpqQsStvVwWx")
_TRY = 'Try "sbatch --help" for more information\n'
_TIME = re.compile(r"^(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?$")


class SbatchError(ValueError):
    """sbatch refused the script: the text is what it prints on stderr."""


def _long_name(word: str) -> str:
    """getopt_long's reading of `--word`: exact, or the one option it abbreviates."""
    if word in LONG_OPTIONS:
        return word
    matches = sorted(name for name in LONG_OPTIONS if name.startswith(word))
    if len(matches) == 1:
        return matches[0]
    if matches:
        possibilities = " ".join(f"'--{name}'" for name in matches)
        raise SbatchError(f"sbatch: option '--{word}' is ambiguous; possibilities: {possibilities}\n{_TRY}")
    raise SbatchError(f"sbatch: unrecognized option '--{word}'\n{_TRY}")


def directives(script: str) -> dict[str, str]:
    """Options from the `#SBATCH` lines of the leading comment block; later lines win.

    Raises SbatchError, with getopt's text, for an option sbatch does not know.
    """
    options: dict[str, str] = {}
    for line in script.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            break
        if not line.startswith("#SBATCH"):
            continue
        try:
            words = shlex.split(line[len("#SBATCH") :], comments=True)
        except ValueError:
            continue
        index = 0
        while index < len(words):
            word = words[index]
            if word.startswith("--"):
                given, has_value, value = word[2:].partition("=")
                try:
                    name = _long_name(given)
                except SbatchError:
                    if has_value:  # getopt quotes the whole word, value included
                        raise SbatchError(f"sbatch: unrecognized option '{word}'\n{_TRY}") from None
                    raise
                if not has_value and name not in FLAGS and index + 1 < len(words):
                    index += 1
                    value = words[index]
                options[name] = value
            elif word[:2] in SHORT_OPTIONS:
                value = word[2:]
                if not value and index + 1 < len(words):
                    index += 1
                    value = words[index]
                options[SHORT_OPTIONS[word[:2]]] = value
            elif word.startswith("-") and len(word) > 1 and word[1] not in SHORT_LETTERS:
                raise SbatchError(f"sbatch: invalid option -- '{word[1]}'\n{_TRY}")
            index += 1
    return options


def check_script(script: str) -> None:
    """sbatch's own checks on the script text."""
    if not script.strip():
        raise SbatchError("sbatch: error: Batch script is empty!\n")
    if not script.startswith("#!"):
        raise SbatchError(
            "sbatch: error: This does not look like a batch script.  The first\n"
            "sbatch: error: line must start with #! followed by the path to an interpreter.\n"
            "sbatch: error: For instance: #!/bin/sh\n"
        )
    if "\0" in script:
        raise SbatchError("sbatch: error: The Slurm batch script contains a NULL character\n")


def parse_time_limit(text: str) -> int | None:
    """Slurm's --time in seconds: M, M:S, H:M:S, D-H, D-H:M, D-H:M:S; None for no limit.

    Slurm rounds a limit up to whole minutes when it enforces it; the sandbox
    keeps the seconds so tests can use limits of a few seconds.
    """
    text = text.strip()
    if text.upper() in ("INFINITE", "UNLIMITED", "-1"):
        return None
    match = _TIME.match(text)
    if not match:
        raise SbatchError("sbatch: error: Invalid --time specification\n")
    days, first, second, third = match.groups()
    numbers = [int(first)] + [int(x) for x in (second, third) if x is not None]
    if days is not None:
        hours, minutes, seconds = ([*numbers, 0, 0])[:3]
        total = int(days) * 86400 + hours * 3600 + minutes * 60 + seconds
    elif len(numbers) == 1:
        total = numbers[0] * 60
    elif len(numbers) == 2:
        total = numbers[0] * 60 + numbers[1]
    else:
        total = numbers[0] * 3600 + numbers[1] * 60 + numbers[2]
    return None if total == 0 else total


def expand_pattern(pattern: str, job_id: str, name: str, user: str, node: str = "localhost") -> str:
    """Slurm's filename patterns: %j %A (job id), %x (name), %u (user), %N (node), %%."""
    table = {"j": job_id, "A": job_id, "x": name, "u": user, "N": node, "n": "0", "t": "0", "%": "%"}
    return re.sub(r"%([a-zA-Z%])", lambda m: table.get(m.group(1), m.group(0)), pattern)


def interpreter(script: str) -> list[str]:
    """The command the shebang names (run explicitly, so noexec spool directories still work)."""
    first = script.splitlines()[0][2:].strip() if script.startswith("#!") else ""
    return first.split(None, 1) if first else ["/bin/sh"]
