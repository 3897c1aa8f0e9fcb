"""Typed reads of a provider's JSON payload: each field checked for its type and size, each failure
a readable MalformedPayload naming the field. One place for the three providers' parsers, so a
payload shaped to confuse is refused the same way whoever sent it."""

from __future__ import annotations

from typing import Any

from middleware.sources.base import MalformedPayload


def name(where: str, path: str) -> str:
    """The field's name in errors; `where` names the object `path` is read in (`push.changes[0]`)."""
    return f"{where}.{path}" if where else path


def get(data: Any, path: str, where: str = "") -> Any:
    """The value at dotted `path`."""
    current = data
    for part in path.split("."):
        if not isinstance(current, dict) or part not in current:
            raise MalformedPayload(f"missing field {name(where, path)}")
        current = current[part]
    return current


def present(data: Any, path: str, where: str = "") -> Any:
    """The value, or None when it (or an object on the way) is absent or null."""
    try:
        return get(data, path, where)
    except MalformedPayload:
        return None


def text(data: Any, path: str, *, where: str = "", max_len: int = 1000) -> str:
    value = get(data, path, where)
    if not isinstance(value, str):
        raise MalformedPayload(f"field {name(where, path)} must be a string")
    if len(value) > max_len:
        raise MalformedPayload(f"field {name(where, path)} is too long (over {max_len} characters)")
    return value


def optional_text(data: Any, path: str, *, where: str = "", max_len: int | None = None) -> str | None:
    value = present(data, path, where)
    if value is None:
        return None
    if not isinstance(value, str):
        raise MalformedPayload(f"field {name(where, path)} must be a string or null")
    if max_len is not None and len(value) > max_len:
        raise MalformedPayload(f"field {name(where, path)} is too long (over {max_len} characters)")
    return value


def positive(value: Any, path: str, bound: int) -> int:
    """`value` as a positive integer below `bound` (not a bool, which Python counts as an int)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < bound:
        raise MalformedPayload(f"field {path} must be a positive integer")
    return value


def integer(data: Any, path: str, bound: int = 2**31) -> int:
    return positive(get(data, path), path, bound)


def flag(data: Any, path: str, default: bool = False) -> bool:
    """True or false where present; `default` where the field is absent."""
    try:
        value = get(data, path)
    except MalformedPayload:
        return default
    if not isinstance(value, bool):
        raise MalformedPayload(f"field {path} must be true or false")
    return value
