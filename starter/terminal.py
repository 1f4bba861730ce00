"""What `upgradectl` writes to a terminal: user text made harmless, and the consoles that print it.

Anything a user (or a back end) chose, such as a scale set name, an image reference, a file
name, a fleet's error message, may hold control characters (an escape sequence that clears or
recolours the terminal), bidi overrides that reorder what is shown, rich markup (`[/]`) or emoji
codes (`:b:`). `clean` turns every such character into a visible escape (`\\x1b`, `\\u202e`) and
caps the length; the consoles never interpret markup or emoji, so text is printed as it is.
"""

from __future__ import annotations

import unicodedata

from rich.console import Console
from rich.text import Text

VALUE_LIMIT = 80  # characters of one echoed value
PATH_LIMIT = 200  # characters of an echoed file name (paths run long)
LINE_LIMIT = 400  # characters of one line of a message
ELLIPSIS = "…"

# Bidi embeddings, overrides and isolates, and the marks: they reorder what a terminal shows.
_BIDI = {0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A)}


def _visible(char: str) -> str:
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def _unsafe(char: str) -> bool:
    code = ord(char)
    if code in _BIDI:
        return True
    # Cc: C0 controls (ESC, BEL, CR, ...), DEL and the C1 controls (CSI 0x9b, ...);
    # Zl/Zp: line and paragraph separators; Cs: lone surrogates (from undecodable bytes).
    return unicodedata.category(char) in ("Cc", "Zl", "Zp", "Cs")


def clean(value: object, limit: int | None = VALUE_LIMIT, *, keep_newlines: bool = False) -> str:
    """`value` as text that cannot drive a terminal, at most `limit` characters (then "…")."""
    text = value if isinstance(value, str) else str(value)
    cut = limit is not None and len(text) > limit
    if cut:
        text = text[:limit]
    out = "".join(
        char if not _unsafe(char) or (keep_newlines and char == "\n") else _visible(char) for char in text
    )
    return out + ELLIPSIS if cut else out


def clean_message(message: str) -> str:
    """A whole message: newlines kept, everything else made visible, every line capped."""
    return "\n".join(clean(line, LINE_LIMIT) for line in message.split("\n"))


def plain(value: object, style: str = "", limit: int | None = VALUE_LIMIT) -> Text:
    """A rich Text of cleaned user text: never markup, never emoji."""
    return Text(clean(value, limit), style=style)


def console(*, stderr: bool = False) -> Console:
    """A console that prints strings as they are: no markup, no emoji, no highlighting."""
    return Console(stderr=stderr, markup=False, emoji=False, highlight=False)
