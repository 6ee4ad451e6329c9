"""Text from outside (names, paths, error texts) made safe to show: one line, control characters as escapes.

The one escaper of the terminal (:mod:`joulescore.cli.console`), the label
(:mod:`joulescore.report.label`) and the HTML report (:mod:`joulescore.report.html`),
so that a stored name reads the same everywhere: ``\\x1b`` for ESC, ``\\n`` for a
newline, ``\\u202e`` for a bidi override, ``\\x00`` for NUL.
"""

from __future__ import annotations

import unicodedata
from typing import Any

#: characters that move the cursor, ring, recolour or reorder a terminal's text: C0/C1 controls, format
#: characters (bidi overrides, zero-width marks), lone surrogates (undecodable file-name bytes), line separators
UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
#: format characters that only join glyphs (emoji sequences, Indic and Persian scripts): kept
JOINERS = frozenset("\u200c\u200d")
SHORT_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def is_unsafe(ch: str) -> bool:
    """Whether a character would act on, rather than show in, a terminal or page."""
    return unicodedata.category(ch) in UNSAFE_CATEGORIES and ch not in JOINERS


def escape_char(ch: str) -> str:
    """``\\n``, ``\\x1b``, ``\\u202e`` or ``\\U000e0001``: the character as Python would write it."""
    if ch in SHORT_ESCAPES:
        return SHORT_ESCAPES[ch]
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def escape_control(text: str, keep: str = "") -> str:
    """Control characters (ESC, CR, NUL, C1 codes, bidi overrides...) as visible escapes; ``keep`` is kept."""
    if text.isprintable():
        return text
    return "".join(escape_char(ch) if is_unsafe(ch) and ch not in keep else ch for ch in text)


def visible(value: Any) -> str:
    """One line of text from any value, every control character (newlines and tabs too) shown as an escape."""
    return escape_control(str(value))
