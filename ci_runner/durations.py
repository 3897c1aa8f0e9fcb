"""Parse the human durations CI users write: `90`, `30m`, `1h30m`, `HH:MM:SS`."""

from __future__ import annotations

import re

from ci_runner.errors import UsageError

_UNITS = {"d": 86400, "h": 3600, "m": 60, "s": 1}
_COMPOUND = re.compile(r"(\d+(?:\.\d+)?)([dhms])")


def parse_duration(text: str, *, what: str = "duration") -> float:
    """Return seconds; a bare number is seconds, `H:M:S` or `M:S` are clock forms."""
    value = text.strip().lower()
    if not value:
        raise UsageError(f"{what} is empty: use e.g. 30m, 1h30m or 01:30:00")
    if re.fullmatch(r"\d+(?:\.\d+)?", value):
        seconds = float(value)
    elif re.fullmatch(r"\d+(?::\d{1,2}){1,2}", value):
        parts = [int(p) for p in value.split(":")]
        seconds = 0.0
        for part in parts:
            seconds = seconds * 60 + part
    elif re.fullmatch(r"(?:\d+(?:\.\d+)?[dhms])+", value.replace(" ", "")):
        seconds = sum(float(n) * _UNITS[u] for n, u in _COMPOUND.findall(value.replace(" ", "")))
    else:
        raise UsageError(f"{what} {text!r} is not a duration: use e.g. 90, 30m, 1h30m or 01:30:00")
    if seconds <= 0:
        raise UsageError(f"{what} {text!r} must be longer than zero")
    return seconds


def format_duration(seconds: float) -> str:
    """`HH:MM:SS`, the form Slurm users read in sacct."""
    total = max(0, round(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}"
