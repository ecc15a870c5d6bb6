"""The screen model: real byte streams in, repaint checked by replaying it into a second Screen."""

from __future__ import annotations

import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator

import pytest

pytest.importorskip("pyghostty")

from tmuxish.server import screen as screen_mod
from tmuxish.server.screen import Screen, ScreenUnavailable, history_cap, warm_up

# Every mode libghostty tracks that a program can flip; compared between source and replica.
DEC_MODES = (
    1,
    4,
    5,
    6,
    7,
    8,
    9,
    12,
    25,
    45,
    47,
    66,
    67,
    69,
    1000,
    1002,
    1003,
    1004,
    1005,
    1006,
    1007,
    1015,
    1016,
    1035,
    1036,
    1039,
    1045,
    1047,
    1049,
    2004,
    2026,
    2027,
    2031,
    2048,
)
ANSI_MODES = (2, 4, 12, 20)

SGR = re.compile(r"\x1b\[[0-9;:]*m")


def state(s: Screen) -> dict[str, object]:
    """Everything observable about a screen, including what its own repaint would say."""
    return {
        "text": s.screen_text(escapes=True),
        "plain": s.screen_text(),
        "cursor": s.cursor,
        "cursor_visible": s.cursor_visible,
        "is_alt": s.is_alt,
        "title": s.title,
        "dec": {m: s.mode(m) for m in DEC_MODES},
        "ansi": {m: s.mode(m, ansi=True) for m in ANSI_MODES},
        # A repaint is a fixed point: it captures wrap flags, pending wrap, the SGR pen, scroll
        # region, tab stops, charsets, hyperlink, kitty keyboard flags and cursor shape, none of
        # which have a getter of their own.
        "repaint": s.repaint(),
    }


def replica(src: Screen) -> Screen:
    """A fresh screen of the same size that has seen only src.repaint()."""
    dst = Screen(src.cols, src.rows)
    dst.feed(src.repaint())
    return dst


def assert_replays(data: bytes, tail: bytes = b"", cols: int = 80, rows: int = 24) -> Screen:
    """Feed data, check the repaint reproduces it, then that both react alike to more output."""
    src = Screen(cols, rows)
    src.feed(data)
    dst = replica(src)
    assert state(dst) == state(src)
    if tail:
        src.feed(tail)
        dst.feed(tail)
        assert state(dst) == state(src)
    return src


def numbered(n: int, start: int = 0) -> bytes:
    return b"".join(b"line %04d\r\n" % i for i in range(start, start + n))


# -- repaint round trips -----------------------------------------------------------------------


def test_empty_screen_replays() -> None:
    assert_replays(b"", tail=b"hello")


def test_colours_and_attributes() -> None:
    data = (
        b"$ ls --color\r\n"
        b"\x1b[0m\x1b[01;34mdir\x1b[0m  \x1b[01;32mexec\x1b[0m  \x1b[38;5;208m256\x1b[0m "
        b"\x1b[38;2;10;200;30mtruecolor\x1b[0m \x1b[48;2;1;2;3mbg\x1b[0m\r\n"
        b"\x1b[1mbold\x1b[22m \x1b[2mfaint\x1b[22m \x1b[3mitalic\x1b[23m \x1b[4munder\x1b[24m "
        b"\x1b[4:3mcurly\x1b[4:0m \x1b[5mblink\x1b[25m \x1b[7mreverse\x1b[27m "
        b"\x1b[8mhidden\x1b[28m "
        b"\x1b[9mstrike\x1b[29m \x1b[53mover\x1b[55m \x1b[58;5;1m\x1b[4mulcolour\x1b[0m\r\n"
        b"\x1b[44m blue background to the edge\x1b[K\x1b[0m\r\n"
        b"\x1b[1;33;41m$ \x1b[0m"
    )
    src = assert_replays(data, tail=b"typed \x1b[32mgreen")
    assert "\x1b[" in src.screen_text(escapes=True)
    assert "\x1b[" not in src.screen_text()


def test_sgr_pen_at_cursor_is_restored() -> None:
    # The program set a colour and has not printed yet: the next text must come out in it.
    assert_replays(b"prompt \x1b[1;33;44m", tail=b"X\r\n")


def test_background_colour_erase() -> None:
    assert_replays(b"\x1b[42m\x1b[2J\x1b[5;5Hon green\x1b[0m\x1b[10;1H\x1b[45m\x1b[K\x1b[0m")


def test_cursor_moves_and_visibility() -> None:
    data = b"a\x1b[10;20Hb\x1b[3Ac\x1b[5Dd\x1b[2Be\x1b[15Gf\r\x1b[?25l"
    src = assert_replays(data, tail=b"\x1b[?25hg")
    assert src.cursor_visible


def test_cursor_position_and_hidden_cursor() -> None:
    src = Screen(80, 24)
    src.feed(b"hello\x1b[7;33H\x1b[?25l")
    dst = replica(src)
    assert dst.cursor == src.cursor == (32, 6)
    assert dst.cursor_visible is False


def test_vim_style_alternate_screen() -> None:
    shell = b"user@host:~$ vim file.txt\r\n"
    vim = (
        b"\x1b[?1049h\x1b[22;0;0t\x1b[?1h\x1b=\x1b[H\x1b[2J\x1b[?2004h\x1b[?1000h\x1b[?1006h"
        b"\x1b[1;23r\x1b[?25l"
        + b"".join(b"\x1b[%d;1H\x1b[34m~\x1b[0m" % r for r in range(2, 23))
        + b"\x1b[1;1Hfirst line of the file"
        + b'\x1b[24;1H\x1b[7m"file.txt" 1L, 22B\x1b[0m\x1b[24;60H1,1\x1b[1;1H\x1b[?25h'
        + b"\x1b]2;file.txt - VIM\x07\x1b[6 q"
    )
    src = assert_replays(shell + vim, tail=b"\x1b[2;1H\x1b[Kinserted\x1b[1;23r\x1b[23;1H\n")
    assert src.is_alt
    assert src.title == "file.txt - VIM"
    dst = replica(src)
    assert dst.is_alt and dst.mode(1049)
    assert dst.mode(1) and dst.mode(66) and dst.mode(2004) and dst.mode(1000) and dst.mode(1006)
    rp = src.repaint()
    assert b"\x1b=" in rp  # keypad application via DECKPAM, not only DECNKM
    assert rp.index(b"\x1b[?1049h") < rp.index(b"inserted")
    assert b"\x1b]2;file.txt - VIM\x07" in rp
    assert b"\x1b[6 q" in rp  # vim's bar cursor


def test_leaving_alternate_screen_needs_a_fresh_repaint() -> None:
    # libghostty's formatter sees only the active screen: a client that attached during vim
    # has a blank primary screen underneath, which is why the session repaints again.
    src = Screen(80, 24)
    src.feed(b"$ echo before\r\nbefore\r\n$ vim\r\n\x1b[?1049h\x1b[H\x1b[2Jvim text")
    dst = replica(src)
    src.feed(b"\x1b[?1049l")
    dst.feed(b"\x1b[?1049l")
    assert not src.is_alt and not dst.is_alt
    assert "before" in src.screen_text() and "before" not in dst.screen_text()
    assert state(replica(src)) == state(src)


@pytest.mark.parametrize(
    ("name", "seq"),
    [
        ("bracketed paste", b"\x1b[?2004h"),
        ("mouse x10", b"\x1b[?9h"),
        ("mouse normal", b"\x1b[?1000h"),
        ("mouse button", b"\x1b[?1002h\x1b[?1006h"),
        ("mouse any urxvt", b"\x1b[?1003h\x1b[?1015h"),
        ("mouse utf8 sgr-pixels", b"\x1b[?1000h\x1b[?1005h\x1b[?1016h"),
        ("focus events", b"\x1b[?1004h"),
        ("cursor keys", b"\x1b[?1h"),
        ("keypad DECKPAM", b"\x1b="),
        ("keypad DECNKM", b"\x1b[?66h"),
        ("backarrow", b"\x1b[?67h"),
        ("alternate scroll off", b"\x1b[?1007l"),
        ("meta sends escape", b"\x1b[?1036l\x1b[?1039h"),
        ("reverse video", b"\x1b[?5h"),
        ("reverse wrap", b"\x1b[?45h\x1b[?1045h"),
        ("cursor blink", b"\x1b[?12h"),
        ("grapheme clustering", b"\x1b[?2027h"),
        ("in-band resize", b"\x1b[?2048h"),
        ("kitty keyboard", b"\x1b[>5u"),
        ("modifyOtherKeys", b"\x1b[>4;2m"),
        ("linefeed mode", b"\x1b[20h"),
    ],
)
def test_input_modes_replay(name: str, seq: bytes) -> None:
    assert_replays(b"$ prog\r\n" + seq + b"ready", tail=b"\r\nmore\n")


def test_keypad_mode_emits_deckpam() -> None:
    src = Screen(80, 24)
    src.feed(b"\x1b=")
    assert src.mode(66)
    assert b"\x1b=" in src.repaint()
    src.feed(b"\x1b>")
    assert b"\x1b=" not in src.repaint()


def test_title_replays() -> None:
    src = assert_replays("\x1b]2;héllo 日本 title\x1b\\$ ".encode())
    assert src.title == "héllo 日本 title"
    assert "\x1b]2;héllo 日本 title\x07".encode() in src.repaint()
    assert b"\x1b]2;" not in Screen(80, 24).repaint()


def test_title_cannot_smuggle_control_sequences() -> None:
    # libghostty keeps DEL and C1 controls in a title; U+009B is CSI to some terminals.
    src = Screen(80, 24)
    src.feed("\x1b]2;a\x7fb\u009b31mc\x07".encode())
    assert "\u009b" in src.title
    rp = src.repaint()
    assert b"\x1b]2;ab31mc\x07" in rp
    assert b"\xc2\x9b" not in rp and b"\x7f" not in rp


def test_palette_changes_are_not_replayed() -> None:
    src = Screen(80, 24)
    src.feed(b"\x1b]4;1;rgb:ff/00/00\x1b\\\x1b]10;rgb:12/34/56\x07\x1b[31mred")
    rp = src.repaint()
    assert b"\x1b]4;" not in rp and b"\x1b]10;" not in rp
    assert state(replica(src))["text"] == state(src)["text"]


def test_wide_and_combining_characters() -> None:
    data = "日本語テキスト | e\u0301 | \U0001f600 | 한국어 | x\u200dy\r\n".encode()
    data += b"a" * 79 + "界".encode()  # does not fit in the last column: wraps early
    data += b"\r\n" + b"b" * 78 + "字".encode()  # exactly fills the row
    src = assert_replays(data, tail="后".encode())
    assert "日本語テキスト" in src.screen_text()


def test_grapheme_clustering_is_on_before_the_text() -> None:
    # Mode 2027 changes how wide a ZWJ sequence is; set after the text, the replica would lay
    # the family emoji out as three wide characters instead of one.
    family = "\U0001f468\u200d\U0001f469\u200d\U0001f467".encode()
    src = assert_replays(b"\x1b[?2027h" + family + b"x", tail=family + b"y")
    assert src.cursor == (6, 0)


def test_lines_longer_than_the_width() -> None:
    data = b"".join(bytes([65 + i]) * 200 + b"\r\n" for i in range(5)) + b"x" * 170
    src = assert_replays(data, tail=b"y" * 30 + b"\r\nz")
    # Soft wraps show as separate rows in the capture, like tmux without -J.
    assert src.screen_text().split("\n")[0] == "A" * 80


def test_pending_wrap_at_the_right_margin() -> None:
    # The cursor sits past the last column; CUP alone would lose that and the next
    # character would overwrite column 80 instead of wrapping.
    assert_replays(b"\x1b[24;1H" + b"x" * 80, tail=b"y")
    assert_replays(b"\x1b[5;1H" + "ab日".encode() * 20, tail=b"z")


def test_autowrap_off_and_insert_mode() -> None:
    # Set after the text is drawn, or they would garble the repaint itself.
    assert_replays(b"q" * 100 + b"\r\n" + b"r" * 100 + b"\x1b[?7l" + b"s" * 100, tail=b"tt")
    assert_replays(b"0123456789\x1b[1;3H\x1b[4h", tail=b"INS")


def test_origin_mode_with_scroll_region() -> None:
    data = b"header\x1b[5;20r\x1b[?6h\x1b[3;4Hin region"
    assert_replays(data, tail=b"\x1b[1;1HX\x1b[30;1H\nY")


def test_left_right_margins() -> None:
    data = b"\x1b[?69h\x1b[10;40s\x1b[5;15r\x1b[5;10Hwithin the margins, wrapping here"
    # Text after the repaint wraps at the right margin (column 40) back to column 10.
    src = assert_replays(data, tail=b"\x1b[10;10H" + b"m" * 40)
    assert src.screen_text().split("\n")[10] == " " * 9 + "m" * 9


def test_scroll_region_and_tab_stops() -> None:
    data = b"\x1b[3g\x1b[5G\x1bH\x1b[13G\x1bH\x1b[1;1Hcol\x1b[2;10r\x1b[10;1H"
    assert_replays(data, tail=b"\ta\tb\n\n\nscrolled")


def test_line_drawing_charset() -> None:
    data = b"\x1b(0lqqk\r\nx  x\r\nmqqj"
    src = assert_replays(data, tail=b"x")
    assert "┌──┐" in src.screen_text()


def test_hyperlinks() -> None:
    data = (
        b"\x1b]8;;https://example.com\x1b\\link\x1b]8;;\x1b\\ plain \x1b]8;id=7;http://a\x1b\\open"
    )
    assert_replays(data, tail=b" still linked")


def test_synchronized_update_in_progress() -> None:
    src = assert_replays(b"frame 1\x1b[?2026h\x1b[Hframe 2 half", tail=b" done\x1b[?2026l")
    assert not src.mode(2026)


def test_cursor_shapes() -> None:
    for seq in (b"\x1b[1 q", b"\x1b[2 q", b"\x1b[3 q", b"\x1b[4 q", b"\x1b[5 q", b"\x1b[6 q"):
        assert_replays(b"$ " + seq)


def test_unfinished_escape_sequence_is_completed_by_live_output() -> None:
    # A PTY read can end mid-sequence; the rest arrives after the repaint.
    for head, tail in (
        (b"abc\x1b[3", b"1mred"),
        (b"abc\x1b", b"[1;1HX"),
        (b"abc\x1b]2;ti", b"tle\x07after"),
        ("abc日".encode()[:-1], "日".encode()[-1:] + b"after"),
    ):
        src = assert_replays(head, tail=tail)
        assert "1m" not in src.screen_text() and "[1" not in src.screen_text()


def test_scrolling_5000_lines() -> None:
    data = b"".join(
        b"\x1b[3%dmline %05d\x1b[0m with some text\r\n" % (i % 8, i) for i in range(5000)
    )
    src = assert_replays(data + b"$ ", tail=b"ls")
    assert src.history_rows == 5000 - 23
    text = src.screen_text().split("\n")
    assert len(text) == 24
    assert text[0].startswith("line 04977")
    assert text[-1] == "$ ls"


def test_repaint_clears_whatever_was_there() -> None:
    src = Screen(80, 24)
    src.feed(b"session\r\ntext")
    dst = Screen(80, 24)
    dst.feed(b"\x1b[41m" + b"garbage " * 300)
    dst.feed(src.repaint())
    assert dst.screen_text(escapes=True) == src.screen_text(escapes=True)


@pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux as a second terminal")
def test_history_and_repaint_in_tmux_as_the_real_terminal() -> None:
    """Another emulator than libghostty draws the same screen and keeps the history."""
    src = Screen(80, 24)
    src.feed(b"".join(b"line %02d \x1b[3%dmcolour\x1b[0m\r\n" % (i, i % 8) for i in range(60)))
    src.feed("wide 日本語 ".encode() + b"x" * 100 + b"\x1b]2;tmux check\x07")
    src.feed(b"\x1b[?1h\x1b=\x1b[?1003h\x1b[?1006h\x1b[12;30H")
    tmp = tempfile.mkdtemp(dir="/tmp")  # short: AF_UNIX paths are limited
    sock = os.path.join(tmp, "s")
    payload = os.path.join(tmp, "p")
    with open(payload, "wb") as f:
        f.write(src.history(20) + src.repaint())
    tmux = ["tmux", "-S", sock, "-f", "/dev/null"]
    try:
        cmd = f"stty raw -echo; cat {payload}; exec sleep 60"
        subprocess.run([*tmux, "new", "-d", "-x", "80", "-y", "24", cmd], check=True)
        want = src.screen_text().split("\n")
        deadline = time.monotonic() + 10
        while True:
            got = subprocess.run(
                [*tmux, "capture-pane", "-p"], capture_output=True, text=True, check=True
            ).stdout.split("\n")[:24]
            if [ln.rstrip() for ln in got] == want or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert [ln.rstrip() for ln in got] == want
        fmt = "#{cursor_x},#{cursor_y},#{pane_title},#{keypad_cursor_flag},#{keypad_flag}"
        fmt += ",#{mouse_any_flag},#{mouse_sgr_flag},#{history_size}"
        info = subprocess.run(
            [*tmux, "display", "-p", fmt], capture_output=True, text=True, check=True
        ).stdout.strip()
        assert info == "29,11,tmux check,1,1,1,1,20"
        hist = subprocess.run(
            [*tmux, "capture-pane", "-p", "-S", "-20", "-E", "-1"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split("\n")[:20]
        assert hist == src.history_text().split("\n")[src.history_rows - 20 : src.history_rows]
    finally:
        subprocess.run([*tmux, "kill-server"], capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)


# -- resize ---------------------------------------------------------------------------------


def test_resize_changes_size_and_replays() -> None:
    src = Screen(80, 24)
    src.feed(numbered(30) + b"x" * 100)
    src.resize(100, 30)
    assert (src.cols, src.rows) == (100, 30)
    assert state(replica(src)) == state(src)
    src.resize(40, 10)
    assert (src.cols, src.rows) == (40, 10)
    text = src.screen_text().split("\n")
    assert len(text) == 10
    # The 100-character line reflows to the narrower width.
    assert text[-3:] == ["x" * 40, "x" * 40, "x" * 20]
    assert state(replica(src)) == state(src)
    cx, cy = src.cursor
    assert 0 <= cx < 40 and 0 <= cy < 10


def test_resize_to_the_same_size_is_a_no_op() -> None:
    src = Screen(80, 24)
    src.feed(b"abc")
    before = state(src)
    src.resize(80, 24)
    assert state(src) == before


# -- history -----------------------------------------------------------------------------------


def test_history_returns_the_last_lines_above_the_screen() -> None:
    src = Screen(80, 24)
    src.feed(numbered(100))
    # 100 lines and an empty row for the cursor: lines 77-99 are visible, 0-76 are history.
    assert src.history_rows == 77
    hist = src.history(10)
    text = SGR.sub("", hist.decode())
    assert [ln for ln in text.split("\r\n") if ln.startswith("line")] == [
        f"line {i:04d}" for i in range(67, 77)
    ]
    assert hist.count(b"\r\n") == 10
    assert src.history(0) == b""
    assert SGR.sub("", src.history(1000).decode()).count("line ") == 77


def test_history_lands_in_the_scrollback_of_the_client() -> None:
    src = Screen(80, 24)
    src.feed(b"".join(b"\x1b[3%dmcoloured %04d\x1b[0m\r\n" % (i % 7 + 1, i) for i in range(100)))
    src.feed(b"$ ")
    client = Screen(80, 24)
    client.feed(src.history(30) + src.repaint())
    assert client.history_rows == 30
    assert client.screen_text(escapes=True) == src.screen_text(escapes=True)
    src_hist = src.history_text(escapes=True).split("\n")[:-24]
    client_hist = client.history_text(escapes=True).split("\n")[:-24]
    assert client_hist == src_hist[-30:]
    assert "\x1b[" in client_hist[0]  # colours survived


def test_history_shorter_than_a_screen_adds_no_blank_lines() -> None:
    src = Screen(80, 24)
    src.feed(numbered(27))
    assert src.history_rows == 4
    client = Screen(80, 24)
    client.feed(src.history(50) + src.repaint())
    assert client.history_rows == 4
    assert client.history_text() == src.history_text()


def test_history_does_not_bleed_background_colour() -> None:
    src = Screen(20, 5)
    src.feed(b"\x1b[44mblue to the end of the line\r\n" * 10 + b"\x1b[0m")
    hist = src.history(3)
    for line in hist.split(b"\r\n")[:-1]:
        assert line.endswith(b"\x1b[0m")
    client = Screen(20, 5)
    client.feed(hist)
    assert client.screen_text(escapes=True) == "\n" * 4  # scrolled off, nothing blue left


def test_no_history_on_the_alternate_screen() -> None:
    src = Screen(80, 24)
    src.feed(numbered(100) + b"\x1b[?1049h")
    assert src.history(10) == b""


def test_history_text_and_screen_text() -> None:
    src = Screen(40, 5)
    src.feed(numbered(8) + b"last   ")
    assert src.screen_text() == "line 0004\nline 0005\nline 0006\nline 0007\nlast"
    assert src.history_text().split("\n") == [f"line {i:04d}" for i in range(8)] + ["last"]
    blank = Screen(10, 3)
    assert blank.screen_text() == "\n\n"


def test_history_byte_budget_bounds_memory() -> None:
    if not os.path.exists("/proc/self/statm"):
        pytest.skip("needs /proc to read the resident set size")

    def rss() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    chunk = b"".join(
        b"%05d \x1b[32mhistory budget test line\x1b[0m padding text\r\n" % i for i in range(80)
    )[:4096]
    src = Screen(80, 24, history_lines=1000)
    src.feed(chunk * 64)
    base, rows_base = rss(), src.history_rows
    for _ in range(50 * 1024 * 1024 // len(chunk * 64)):  # 50 MB
        src.feed(chunk * 64)
    # libghostty prunes whole pages of about 400 KB, so the budget holds to within a page or two.
    assert src.history_rows < 3000
    assert src.history_rows <= rows_base + 200
    assert rss() - base < 20 * 1024 * 1024


def test_history_budget_survives_resizes_with_output_in_between() -> None:
    # Clients attach at every size; without the cap re-applied after each reflow, libghostty
    # 0.1.3 let this history reach ~57,000 rows (65x its budget) and a soak server passed 1 GiB.
    src = Screen(80, 24, history_lines=1000)
    output = numbered(20_000)
    for _ in range(3):
        src.feed(output)
    budget = src.history_rows
    rnd = random.Random(1)
    for _ in range(20):
        src.resize(rnd.randint(20, 250), rnd.randint(5, 70))
        src.feed(output)
    src.resize(80, 24)
    src.feed(output)
    assert src.history_rows < 2 * budget, (budget, src.history_rows)


def test_history_budget_zero_keeps_no_history() -> None:
    src = Screen(80, 24, history_lines=0)
    src.feed(numbered(1000))
    assert src.history_rows == 0
    assert src.history(10) == b""


# -- replies to queries ------------------------------------------------------------------------


def test_responses_to_cursor_position_and_device_attributes() -> None:
    src = Screen(80, 24)
    src.feed(b"\x1b[5;10Hx\x1b[6n")
    assert src.take_responses() == b"\x1b[5;11R"
    assert src.take_responses() == b""
    src.feed(b"\x1b[c")
    assert src.take_responses() == b"\x1b[?62;22c"
    src.feed(b"\x1b[5n\x1b[>c")
    assert src.take_responses() == b"\x1b[0n\x1b[>1;10;0c"


def test_response_to_query_split_across_feeds() -> None:
    src = Screen(80, 24)
    src.feed(b"\x1b[")
    assert src.take_responses() == b""
    src.feed(b"6n")
    assert src.take_responses() == b"\x1b[1;1R"


def test_other_queries_answered() -> None:
    src = Screen(80, 24)
    src.feed(b"\x1b[?2004h\x1b[?2004$p\x1b[18t")
    assert src.take_responses() == b"\x1b[?2004;1$y\x1b[8;24;80t"


def test_responses_are_bounded() -> None:
    src = Screen(80, 24)
    src.feed(b"\x1b[5n" * 100_000)
    out = src.take_responses()
    assert 0 < len(out) <= screen_mod.MAX_RESPONSE_BYTES
    assert src.take_responses() == b""


# -- detach --------------------------------------------------------------------------------


def _defaults() -> dict[str, object]:
    fresh = Screen(80, 24)
    return {"dec": state(fresh)["dec"], "ansi": state(fresh)["ansi"]}


def test_reset_modes_leaves_the_client_terminal_sane() -> None:
    session = Screen(80, 24)
    stream = (
        b"$ app\r\n\x1b[?1049h\x1b[?1h\x1b=\x1b[?2004h\x1b[?1003h\x1b[?1006h\x1b[?1004h"
        b"\x1b[?25l\x1b[5;10r\x1b[?7l\x1b[4h\x1b(0\x1b[1;31m\x1b[>1u\x1b[?2048h\x1b[6 q"
    )
    session.feed(stream)
    # What the user's terminal went through while attached: the same bytes, then the reset.
    client = Screen(80, 24)
    client.feed(stream)
    reset = session.reset_modes()
    assert reset.startswith(b"\x1b[?1049l")
    for seq in (
        b"\x1b[?1003l",
        b"\x1b[?1006l",
        b"\x1b[?2004l",
        b"\x1b[?1004l",
        b"\x1b[?1l",
        b"\x1b>",
        b"\x1b[?25h",
        b"\x1b[0m",
        b"\x1b[?1000l",
        b"\x1b[?1002l",
    ):
        assert seq in reset
    client.feed(reset)
    assert not client.is_alt and client.cursor_visible
    assert {"dec": state(client)["dec"], "ansi": state(client)["ansi"]} == _defaults()
    client.feed(b"\x1b[H\x1b[2Jplain \x1b(Bq")  # SGR reset, ASCII charset
    assert client.screen_text(escapes=True).startswith("plain q")
    assert client.screen_text(escapes=True) == "plain q" + "\n" * 23


def test_reset_modes_on_the_primary_screen_keeps_the_cursor() -> None:
    session = Screen(80, 24)
    stream = b"$ prog\r\n\x1b[?2004h\x1b[?1000h\x1b[3;20r\x1b[10;7Hpos"
    session.feed(stream)
    reset = session.reset_modes()
    assert b"\x1b[?1049l" not in reset
    client = Screen(80, 24)
    client.feed(stream)
    before = client.cursor
    client.feed(reset)
    assert client.cursor == before == (9, 9)
    assert not client.mode(2004) and not client.mode(1000)
    client.feed(b"\x1b[24;1H\n")  # the scroll region is gone: the whole screen scrolls
    assert client.screen_text().split("\n")[0] == ""


def test_reset_modes_with_origin_mode_keeps_the_cursor() -> None:
    session = Screen(80, 24)
    stream = b"\x1b[5;15r\x1b[?6h\x1b[3;4Hx"
    session.feed(stream)
    client = Screen(80, 24)
    client.feed(stream)
    client.feed(session.reset_modes())
    assert client.cursor == session.cursor == (4, 6)
    assert not client.mode(6)


# -- lifecycle ---------------------------------------------------------------------------------


def test_warm_up_is_repeatable() -> None:
    warm_up()
    t0 = time.perf_counter()
    warm_up()
    assert time.perf_counter() - t0 < 0.5


def test_unavailable_when_pyghostty_cannot_load(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(screen_mod, "_loaded", None)
    monkeypatch.setitem(sys.modules, "pyghostty", None)
    with pytest.raises(ScreenUnavailable):
        Screen(80, 24)
    with pytest.raises(ScreenUnavailable):
        warm_up()


def test_closed_screen_raises_instead_of_crashing() -> None:
    src = Screen(80, 24)
    src.close()
    with pytest.raises(TypeError):
        src.feed(b"x")
    with pytest.raises(TypeError):
        src.repaint()
    src.close()


# -- speed -------------------------------------------------------------------------------------


def _chunks(data: bytes, size: int = 4096) -> Iterator[bytes]:
    return (data[i : i + size] for i in range(0, len(data), size))


def _throughput(data: bytes) -> float:
    src = Screen(80, 24)
    chunks = list(_chunks(data))
    feed = src.feed
    t0 = time.perf_counter()
    for chunk in chunks:
        feed(chunk)
    return len(data) / (time.perf_counter() - t0) / 1e6


def test_feed_throughput_and_repaint_time() -> None:
    plain = b"".join(
        b"%06d the quick brown fox jumps over the lazy dog 0123456789\r\n" % i
        for i in range(80_000)
    )
    colour = b"".join(
        b"\x1b[1;3%dmword%d\x1b[0m \x1b[38;5;%dmx\x1b[0m%s"
        % (i % 8, i, i % 256, b"\r\n" if i % 8 == 7 else b"")
        for i in range(200_000)
    )
    # Loose floors: catch a pathological slowdown (pyte-like, 1000x), not machine noise.
    assert _throughput(plain) > 20
    assert _throughput(colour) > 5
    src = Screen(80, 24)
    src.feed(colour[-100_000:])
    src.repaint()
    t0 = time.perf_counter()
    for _ in range(20):
        src.repaint()
    assert (time.perf_counter() - t0) / 20 < 0.02


def test_history_is_lines_kept_across_wide_resizes() -> None:
    # The cap used to be bytes of cells: a 200-column client cut 13,642 lines of history to
    # 5,487, a 10,000-column one to 94, for good. Now it is lines at any width (issue 12);
    # libghostty prunes whole pages, so at least the limit is kept, sometimes a page more.
    limit = 13_500
    src = Screen(80, 24, history_lines=limit)
    src.feed(numbered(22_000))  # past the limit: pages are pruned at every width
    assert src.history_rows >= limit
    last = src.history_text().split("\n")[-(limit + 24) :]
    for cols in (200, 10_000, 80, 10_000, 200, 80, 1000, 132, 80):
        src.resize(cols, 24)
        assert src.history_rows >= limit, cols
    assert src.history_text().split("\n")[-(limit + 24) :] == last
    # And output at the wide size keeps as many lines of its own.
    src.resize(10_000, 24)
    src.feed(numbered(14_000))
    assert src.history_rows >= limit


def test_history_cap_grows_with_the_width() -> None:
    assert history_cap(0, 80) == 0
    for cols in (80, 200, 1000, 10_000):
        assert history_cap(1000, cols) > history_cap(500, cols) > history_cap(500, cols // 2)


def test_a_repaint_leaves_no_per_screen_memory_behind() -> None:
    """The cursor shape comes from a render state, which copies the screen's rows: kept per
    screen it cost ~118 KiB for every session ever repainted (the keeper snapshots them all)."""

    def rss_kib() -> int:
        with open("/proc/self/smaps_rollup") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("Rss:"))

    screens = [Screen(80, 24) for _ in range(50)]
    screens[0].repaint()  # the formatter's one-time set-up is not per screen
    before = rss_kib()
    for screen in screens:
        screen.repaint()
    per_screen = (rss_kib() - before) / len(screens)
    assert per_screen < 30, f"{per_screen:.1f} KiB per repainted screen"
