"""The repaint's colour post-processing: the 16 base colours with their own SGR codes."""

from __future__ import annotations

import pytest

pytest.importorskip("pyghostty")

from tmuxish.server.screen import base_colours


@pytest.mark.parametrize(
    ("formatter", "tmux"),
    [
        (b"\x1b[38;5;0m", b"\x1b[30m"),
        (b"\x1b[38;5;1m", b"\x1b[31m"),
        (b"\x1b[38;5;7m", b"\x1b[37m"),
        (b"\x1b[38;5;8m", b"\x1b[90m"),
        (b"\x1b[38;5;15m", b"\x1b[97m"),
        (b"\x1b[48;5;0m", b"\x1b[40m"),
        (b"\x1b[48;5;4m", b"\x1b[44m"),
        (b"\x1b[48;5;11m", b"\x1b[103m"),
        (b"\x1b[48;5;15m", b"\x1b[107m"),
        # 256-colour, true colour and underline colours have no base code: unchanged.
        (b"\x1b[38;5;16m", b"\x1b[38;5;16m"),
        (b"\x1b[48;5;208m", b"\x1b[48;5;208m"),
        (b"\x1b[38;2;1;2;3m", b"\x1b[38;2;1;2;3m"),
        (b"\x1b[58;5;3m", b"\x1b[58;5;3m"),
        # Text that merely looks like the parameters is left alone.
        (b"38;5;1m", b"38;5;1m"),
    ],
)
def test_base_colour_codes(formatter: bytes, tmux: bytes) -> None:
    assert base_colours(b"a" + formatter + b"b") == b"a" + tmux + b"b"


def test_a_whole_line() -> None:
    line = b"\x1b[0m\x1b[1m\x1b[38;5;1mred\x1b[0m \x1b[48;5;11m\x1b[38;5;200mx\x1b[0m"
    assert base_colours(line) == b"\x1b[0m\x1b[1m\x1b[31mred\x1b[0m \x1b[103m\x1b[38;5;200mx\x1b[0m"
