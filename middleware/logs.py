"""JSON log lines (python-json-logger), each carrying the delivery, repository and outcome."""

from __future__ import annotations

import logging
import sys

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter

LOGGER = "firecrest_ci.middleware"


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever sys.stderr is now (gunicorn and test capture swap it)."""

    @property
    def stream(self) -> object:
        return sys.stderr

    @stream.setter
    def stream(self, _value: object) -> None:
        return


def json_formatter(*, leave_out: tuple[str, ...] = ()) -> logging.Formatter:
    """One JSON object per record: `time`, `level`, `name`, `message` and the record's extras,
    but those named in `leave_out`."""
    return JsonFormatter(
        "%(asctime)s %(levelname)s %(name)s %(message)s",
        rename_fields={"levelname": "level", "asctime": "time"},
        reserved_attrs=[*RESERVED_ATTRS, *leave_out],
    )


def configure(json_lines: bool = True, level: int = logging.INFO) -> None:
    handler = _StderrHandler()
    if json_lines:
        handler.setFormatter(json_formatter())
    logger = logging.getLogger(LOGGER)
    logger.handlers[:] = [handler]
    logger.setLevel(level)
    logger.propagate = False


def logger() -> logging.Logger:
    return logging.getLogger(LOGGER)
