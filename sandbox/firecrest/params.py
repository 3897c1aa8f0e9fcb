"""Query parameters read the way FastAPI reads them for the real server.

Booleans accept FastAPI's spellings; anything unparsable is the real 400
with `errorType: "validation"`.
"""

from __future__ import annotations

from flask import request

from sandbox.firecrest.errors import validation_error

_TRUE = {"1", "true", "on", "yes", "t", "y"}
_FALSE = {"0", "false", "off", "no", "f", "n"}


def flag(name: str, default: bool = False) -> bool:
    raw = request.args.get(name)
    if raw is None:
        return default
    if raw.lower() in _TRUE:
        return True
    if raw.lower() in _FALSE:
        return False
    raise validation_error("query", name, "Input should be a valid boolean, unable to interpret input")


def integer(name: str, default: int | None = None) -> int | None:
    raw = request.args.get(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise validation_error(
            "query", name, "Input should be a valid integer, unable to parse string as an integer"
        ) from None


def required(name: str) -> str:
    raw = request.args.get(name)
    if raw is None:
        raise validation_error("query", name, "Field required")
    return raw
