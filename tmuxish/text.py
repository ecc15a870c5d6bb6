"""Text from users and programs made safe to write to a terminal."""

from __future__ import annotations

#: C0 controls, DEL and C1 controls: written raw they would drive the user's terminal (clear
#: it, retitle it, answer queries into its input) or break a one-line message over lines.
_CONTROLS = {c: f"\\x{c:02x}" for c in (*range(0x20), *range(0x7F, 0xA0))}


def printable(text: str) -> str:
    """``text`` with every control character shown as ``\\xNN``."""
    return text.translate(_CONTROLS)
