"""A job's log as HTML for the run viewer: ANSI colours as CSS classes, secrets masked, bounded.

The pages' Content-Security-Policy allows stylesheets from the service only, so colours are
classes (ansi2html with `inline=False`) styled by `static/runs-ansi.css`, which is this
module's `stylesheet()` written to a file (a test keeps the two the same).
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable
from pathlib import Path

from ansi2html import Ansi2HTMLConverter
from markupsafe import Markup

from middleware.masking import mask

#: The most of a log one page shows; ansi2html takes about half a second per megabyte.
MAX_LOG_BYTES = 1_000_000
STYLESHEET = Path(__file__).resolve().parent / "static" / "runs-ansi.css"
#: Operating-system commands (hyperlinks, window titles): never shown, never turned into links.
_OSC = re.compile(r"\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?")
#: Control characters left after the colours are converted (cursor moves, bells, stray ESC).
_CONTROL = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|[\x00-\x08\x0b-\x1f\x7f]")


def _converter() -> Ansi2HTMLConverter:
    # The dracula palette: every colour of 31-37 and 90-97 keeps WCAG AA contrast (4.5:1) on the
    # log's black background; ansi2html's default red and blue do not (the browser tests check).
    return Ansi2HTMLConverter(inline=False, dark_bg=True, line_wrap=True, escaped=True, scheme="dracula")


def stylesheet() -> str:
    """The CSS of ansi2html's classes (what `static/runs-ansi.css` holds)."""
    styles = _converter().produce_headers()
    body = styles.replace('<style type="text/css">', "").replace("</style>", "").strip()
    return f"/* Generated from ansi2html by middleware.web.runs_logs.stylesheet(); do not edit. */\n{body}\n"


def _overwrite_lines(text: str) -> str:
    """A carriage return starts the line again (progress bars): keep what was written last."""
    lines = text.replace("\r\n", "\n").split("\n")
    return "\n".join(line.rsplit("\r", 1)[-1] for line in lines)


def render(text: str, secrets: Iterable[str], *, truncated: bool = False) -> Markup:
    """The log as HTML (a `<pre>`'s content), every secret masked.

    Secrets are masked in the raw text and again in the HTML (where `&`, `<` or quotes in a
    value were escaped). A log cut at its size limit may end inside a secret, so its last,
    partial line is dropped.
    """
    values = [s for s in secrets if s]
    if truncated and "\n" in text:
        text = text[: text.rindex("\n") + 1]
    elif truncated:
        text = ""
    text = _overwrite_lines(_OSC.sub("", mask(text, values)))
    converted = _converter().convert(text, full=False)
    converted = _CONTROL.sub("", converted)
    escaped = [html.escape(v, quote=q) for v in values for q in (True, False)]
    return Markup(mask(converted, [*values, *escaped]))  # noqa: S704 - ansi2html escaped the text
