"""Text from the data made safe to show: control and bidirectional characters as visible escapes.

Account ids, reasons, rule names and other strings come from logs and files that an
attacker may write. Printed raw, an ESC starts a terminal control sequence, CR/LF fake
extra lines, NUL truncates, and bidirectional controls (U+202E...) reorder what the
analyst reads. `visible` is the one place that turns them into `\\x1b`, `\\n`, `\\u202e`;
the terminal table and the HTML report both use it (HTML escaping comes after).
"""

from __future__ import annotations

import re

# C0 and C1 controls and DEL; line and paragraph separators; the bidirectional
# embeddings, overrides, isolates and marks; lone surrogates (cannot be encoded).
_UNSAFE = re.compile(
    "[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069\ud800-\udfff]"
)
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def visible(value: object) -> str:
    """``str(value)`` with every control or bidirectional character as a visible escape.

    ``"a\\x1b[2Jb"`` becomes ``a\\x1b[2Jb`` (a backslash, then ``x1b``); other text,
    including non-Latin scripts and emoji, is unchanged. Backslashes already in the
    text are kept as they are (``DOMAIN\\user`` stays readable).
    """
    text = str(value)
    return _UNSAFE.sub(_escape, text) if _UNSAFE.search(text) else text
