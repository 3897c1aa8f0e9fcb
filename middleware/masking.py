"""One place that hides secret values in text shown to people (check runs, log pages).

Every log or summary that leaves the middleware passes through `mask`, so the
rule for what counts as a secret lives here and nowhere else.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

MASK = "[MASKED]"
# Values shorter than this are not masked: hiding "1" or "on" everywhere would make
# every log unreadable and would itself reveal the value (GitLab refuses to mask them too).
MIN_LENGTH = 4


def mask(text: str, secrets: Iterable[str]) -> str:
    """`text` with every occurrence of each secret value replaced by [MASKED].

    Longer values are replaced first, so a secret that contains another is hidden
    whole; empty and very short values are ignored. Multi-line secrets (keys) are
    also masked line by line, since logs often show them split.
    """
    values: set[str] = set()
    for secret in secrets:
        if not isinstance(secret, str):
            continue
        candidates = {secret, secret.strip(), *(line.strip() for line in secret.splitlines())}
        values.update(c for c in candidates if len(c) >= MIN_LENGTH)
    if not values or not text:
        return text
    pattern = re.compile("|".join(re.escape(v) for v in sorted(values, key=len, reverse=True)))
    return pattern.sub(MASK, text)
