"""The asciicast encoder: v2 and v3 headers and events, and UTF-8 split across reads."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tmuxish import asciicast
from tmuxish.asciicast import Asciicast, TextStream


def test_v2_header_and_absolute_times() -> None:
    cast = Asciicast(
        "v2", 80, 24, timestamp=1700000000, term="xterm-256color", title="web", command="sh"
    )
    head = json.loads(cast.header())
    assert head == {
        "version": 2,
        "width": 80,
        "height": 24,
        "timestamp": 1700000000,
        "command": "sh",
        "title": "web",
        "env": {"TERM": "xterm-256color"},
    }
    lines = [
        cast.output(0.0, "a"),
        cast.output(1.25, "b"),
        cast.resize(2.5, 100, 30),
        cast.input(2.75, "q"),
        cast.marker(3.0, "m"),
    ]
    assert all(line.endswith("\n") and line.count("\n") == 1 for line in lines)
    assert [json.loads(line) for line in lines] == [
        [0.0, "o", "a"],
        [1.25, "o", "b"],
        [2.5, "r", "100x30"],
        [2.75, "i", "q"],
        [3.0, "m", "m"],
    ]
    assert cast.exit(4.0, 3) == ""  # v2 has no exit event


def test_v3_header_relative_times_and_exit() -> None:
    cast = Asciicast("v3", 80, 24, timestamp=1, term="xterm", env={"SHELL": "/bin/sh"})
    assert json.loads(cast.header()) == {
        "version": 3,
        "term": {"cols": 80, "rows": 24, "type": "xterm"},
        "timestamp": 1,
        "env": {"SHELL": "/bin/sh"},
    }
    lines = [cast.output(0.5, "a"), cast.output(0.75, "b"), cast.resize(2.0, 90, 20)]
    lines.append(cast.exit(3.0, 7))
    assert [json.loads(line) for line in lines] == [
        [0.5, "o", "a"],
        [0.25, "o", "b"],
        [1.25, "r", "90x20"],
        [1.0, "x", "7"],
    ]


def test_v3_intervals_add_up_to_the_real_times() -> None:
    """Rounding each interval on its own would drift; they are taken between rounded times."""
    cast = Asciicast("v3", 80, 24, timestamp=0)
    times = [i * 0.1000003 for i in range(1, 2000)]
    text = cast.header() + "".join(cast.output(t, "x") for t in times)
    _, events = asciicast.read(text.splitlines())
    got = [t for t, _, _ in events]
    assert got == pytest.approx(times, abs=2e-6)


def test_times_are_microseconds_and_never_negative() -> None:
    cast = Asciicast("v2", 80, 24, timestamp=0)
    assert json.loads(cast.output(0.1 + 0.2, "x"))[0] == 0.3
    assert json.loads(cast.output(-0.5, "x"))[0] == 0.0


def test_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="v4"):
        Asciicast("v4", 80, 24, timestamp=0)


def test_escapes_and_non_ascii_round_trip() -> None:
    cast = Asciicast("v2", 80, 24, timestamp=0)
    data = '\x1b[1;31mé€😀\x00\r\n"\\'
    assert json.loads(cast.output(0, data))[2] == data


@given(st.text(), st.lists(st.integers(0, 64), max_size=8))
def test_utf8_split_anywhere_decodes_whole(text: str, cuts: list[int]) -> None:
    data = text.encode("utf-8")
    points = sorted({min(c, len(data)) for c in cuts})
    stream = TextStream()
    pieces = [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]
    assert "".join(stream.decode(p) for p in pieces) == text


def test_utf8_split_character_is_held_back_not_mangled() -> None:
    stream = TextStream()
    assert stream.decode(b"h" + "é".encode()[:1]) == "h"
    assert stream.decode("é".encode()[1:] + b"llo") == "éllo"


def test_invalid_bytes_become_replacement_characters() -> None:
    assert TextStream().decode(b"a\xffb") == "a\ufffdb"


def test_reset_forgets_a_partial_character() -> None:
    stream = TextStream()
    assert stream.decode("€".encode()[:2]) == ""
    stream.reset()
    assert stream.decode(b"ok") == "ok"


def test_read_skips_comments_and_blank_lines() -> None:
    header, events = asciicast.read(
        ['{"version": 3, "term": {"cols": 1, "rows": 1}}', "# note", "", '[1.5, "o", "a"]']
    )
    assert header["version"] == 3
    assert list(events) == [(1.5, "o", "a")]
