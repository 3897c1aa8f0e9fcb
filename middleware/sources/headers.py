"""What every provider checks the same way on a webhook request: its two headers and its JSON."""

from __future__ import annotations

import json
import re
from typing import Any

import orjson

from middleware.sources.base import HeaderMap, Refusal

#: Header values stored with the delivery: printable ASCII that fits deliveries.event (50) and .id (100).
_EVENT_NAME = re.compile(r"[\x20-\x7e]{1,50}")
_DELIVERY_ID = re.compile(r"[\x21-\x7e]{1,100}")


def delivery_headers(headers: HeaderMap, event_header: str, id_header: str) -> tuple[str, str]:
    """The event name and the delivery id, or a 400 that names both headers."""
    event = (headers.get(event_header) or "").strip()
    delivery_id = (headers.get(id_header) or "").strip()
    if not event or not delivery_id:
        raise Refusal(400, f"{event_header} and {id_header} headers are required", "malformed")
    if not _EVENT_NAME.fullmatch(event) or not _DELIVERY_ID.fullmatch(delivery_id):
        raise Refusal(
            400, f"{event_header} (up to 50) and {id_header} (up to 100) must be printable ASCII", "malformed"
        )
    return event, delivery_id


def json_body(body: bytes) -> tuple[Any, bool]:
    """The parsed body, and whether any of its strings may hold a NUL character.

    A JSON text can only carry NUL escaped (`\\u0000`: raw control characters are invalid
    JSON), so a text without that escape needs no cleaning before PostgreSQL stores it.

    orjson reads a push in a third of the standard library's time. What it refuses and the
    standard library reads (lone surrogate escapes, 1e400, NaN, UTF-16, a byte order mark) is
    read by the standard library as before. One difference stays: an integer past 64 bits is
    a float to orjson. No forge sends one, and every number the sources read is checked to be
    an integer within its column's range (sources/fields.py), which refuses either reading.
    """
    try:
        return orjson.loads(body), b"\\u0000" in body
    except orjson.JSONDecodeError:
        pass
    try:
        return json.loads(body), b"\\u0000" in body
    except (ValueError, RecursionError) as error:  # also too deep, or an integer too long to read
        raise Refusal(400, f"the body is not valid JSON ({type(error).__name__})", "malformed") from None
