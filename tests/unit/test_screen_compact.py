"""Screen.compact: libghostty's in-memory compression of cold history changes nothing visible.

Differential: two screens see the same bytes, one of them is compacted between steps; every
reader (capture with and without history, the attach history, the repaint) must agree.
"""

from __future__ import annotations

import random

import pytest

pytest.importorskip("pyghostty")

from tmuxish.server.screen import Screen


def _compact_fully(s: Screen) -> None:
    # Bounded: a 15k-row history needs ~26 steps; a loop here would hide a library that never
    # reports completion.
    for _ in range(1000):
        if not s.compact(budget=0.05):
            return
    raise AssertionError("compaction never completed")


def _readers(s: Screen) -> dict[str, object]:
    return {
        "history_plain": s.history_text(),
        "history_vt": s.history_text(escapes=True),
        "screen": s.screen_text(escapes=True),
        "history_rows": s.history_rows,
        "history_30": s.history(30),
        "history_all": s.history(1_000_000),
        "repaint": s.repaint(),
        "cursor": s.cursor,
    }


def _mixed_output(rng: random.Random, lines: int) -> bytes:
    """Colours, wide and combining characters, hyperlinks, soft-wrapped long lines."""
    out = []
    for i in range(lines):
        kind = rng.randrange(6)
        if kind == 0:
            out.append(b"\x1b[3%dmcolour %d\x1b[0m plain\r\n" % (rng.randrange(8), i))
        elif kind == 1:
            out.append("wide 表示 %d e\u0301 \U0001f600\r\n".encode() % i)
        elif kind == 2:
            out.append(b"\x1b]8;;https://example.com/%d\x1b\\link %d\x1b]8;;\x1b\\\r\n" % (i, i))
        elif kind == 3:
            out.append(b"long %d " % i + b"x" * rng.randrange(80, 300) + b"\r\n")
        elif kind == 4:
            out.append(b"\x1b[1;4;48;2;10;20;30mstyled %d\x1b[0m\r\n" % i)
        else:
            out.append(b"line %05d the quick brown fox jumps over the lazy dog\r\n" % i)
    return b"".join(out)


def _twins(cols: int = 80, rows: int = 24) -> tuple[Screen, Screen]:
    return Screen(cols, rows), Screen(cols, rows)


def test_compacted_history_reads_the_same() -> None:
    rng = random.Random(7)
    plain, packed = _twins()
    for step in range(4):
        data = _mixed_output(rng, 1500)
        plain.feed(data)
        packed.feed(data)
        _compact_fully(packed)
        assert _readers(packed) == _readers(plain), f"step {step}"
        # Reading restored pages; compacting again must still agree.
        _compact_fully(packed)
        assert _readers(packed) == _readers(plain), f"step {step}, second pass"
    assert plain.history_rows > 3000


def test_resize_after_compaction_reflows_the_same() -> None:
    rng = random.Random(11)
    plain, packed = _twins()
    data = _mixed_output(rng, 3000)
    plain.feed(data)
    packed.feed(data)
    for cols, rows in ((50, 20), (120, 40), (80, 24)):
        _compact_fully(packed)
        plain.resize(cols, rows)
        packed.resize(cols, rows)
        assert _readers(packed) == _readers(plain), f"{cols}x{rows}"
        more = _mixed_output(rng, 200)
        plain.feed(more)
        packed.feed(more)
        assert _readers(packed) == _readers(plain), f"{cols}x{rows} after more output"


def test_alternate_screen_and_clear_after_compaction() -> None:
    plain, packed = _twins()
    data = b"".join(b"row %05d\r\n" % i for i in range(4000))
    for s in (plain, packed):
        s.feed(data)
    _compact_fully(packed)
    for chunk in (
        b"\x1b[?1049h\x1b[Hfull screen app\x1b[5;5Hhere",
        b"\x1b[?1049l",
        b"after the app\r\n",
        b"\x1b[3J",  # erase the history
        b"".join(b"again %04d\r\n" % i for i in range(1200)),
    ):
        plain.feed(chunk)
        packed.feed(chunk)
        assert _readers(packed) == _readers(plain), chunk[:20]
        _compact_fully(packed)
        assert _readers(packed) == _readers(plain), chunk[:20]


def test_history_cap_still_applies_when_compacted() -> None:
    # The byte cap counts rows at their uncompressed size: compaction keeps as many rows as
    # without it, not more.
    plain = Screen(80, 24, history_lines=1000)
    packed = Screen(80, 24, history_lines=1000)
    for k in range(30):
        data = b"".join(b"capped %02d %04d\r\n" % (k, i) for i in range(200))
        plain.feed(data)
        packed.feed(data)
        _compact_fully(packed)
    assert packed.history_rows == plain.history_rows
    assert packed.history_text() == plain.history_text()


def test_compact_on_an_empty_screen_and_without_history() -> None:
    s = Screen(80, 24)
    _compact_fully(s)
    s.feed(b"hello")
    _compact_fully(s)
    assert s.screen_text().startswith("hello")
    off = Screen(80, 24, history_lines=0)
    off.feed(b"".join(b"%d\r\n" % i for i in range(500)))
    _compact_fully(off)
    assert off.history_rows == 0
