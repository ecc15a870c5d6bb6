"""The OSC 133 scanner and the per-session shell tracker (server/shellhook.py): pure, no I/O."""

from __future__ import annotations

from typing import Any

from tmuxish.server.shellhook import (
    MAX_MARK,
    RING_BYTES,
    Mark,
    MarkScanner,
    ShellTracker,
)
from tmuxish.server.shellrc import integrate

STREAM = (
    b"prompt$ \x1b]133;A\x07$ \x1b]133;B\x1b\\echo hi\r\n\x1b]133;C;tmuxish=ab12\x07hi\r\n"
    b"\x1b]133;D;3;tmuxish=ab12\x07tail \x1b]2;title\x07\x1b]133"
)


def pieces(scanner: MarkScanner, chunks: list[bytes]) -> list[Any]:
    """Text joined between marks, so results compare whatever the chunking."""
    out: list[Any] = []
    for chunk in chunks:
        for piece in scanner.feed(chunk):
            if isinstance(piece, Mark):
                out.append(piece._replace(raw=b""))  # compared by meaning; raw: see raws()
            elif out and isinstance(out[-1], bytes):
                out[-1] += piece
            else:
                out.append(piece)
    return out


def test_marks_and_text_in_order() -> None:
    got = pieces(MarkScanner(), [STREAM])
    assert got == [
        b"prompt$ ",
        Mark("A", ()),
        b"$ ",
        Mark("B", ()),
        b"echo hi\r\n",
        Mark("C", ("tmuxish=ab12",)),
        b"hi\r\n",
        Mark("D", ("3", "tmuxish=ab12")),
        b"tail \x1b]2;title\x07",
        # the unfinished "\x1b]133" at the end is held, not passed on
    ]
    assert got[7].status == 3 and got[7].param("tmuxish") == "ab12"
    assert got[5].status is None
    assert raws([STREAM]) == RAW_MARKS


RAW_MARKS = [
    b"\x1b]133;A\x07",
    b"\x1b]133;B\x1b\\",
    b"\x1b]133;C;tmuxish=ab12\x07",
    b"\x1b]133;D;3;tmuxish=ab12\x07",
]


def raws(chunks: list[bytes]) -> list[bytes]:
    scanner = MarkScanner()
    return [p.raw for chunk in chunks for p in scanner.feed(chunk) if isinstance(p, Mark)]


def test_every_split_point_gives_the_same_pieces() -> None:
    whole = pieces(MarkScanner(), [STREAM])
    for cut in range(1, len(STREAM)):
        assert pieces(MarkScanner(), [STREAM[:cut], STREAM[cut:]]) == whole, cut
        assert raws([STREAM[:cut], STREAM[cut:]]) == RAW_MARKS, cut
    one_by_one = pieces(MarkScanner(), [bytes([b]) for b in STREAM])
    assert one_by_one == whole


def test_an_unterminated_mark_is_text_once_too_long() -> None:
    scanner = MarkScanner()
    data = b"\x1b]133;" + b"x" * (2 * MAX_MARK)
    got = pieces(scanner, [data, b"after\x1b]133;D;0\x07"])
    assert got[0] == b"\x1b]133;" + b"x" * (2 * MAX_MARK) + b"after"
    assert got[1] == Mark("D", ("0",))
    assert not scanner.holding


def test_tracker_follows_prompt_and_commands() -> None:
    events: list[tuple[str, dict[str, Any]]] = []
    t = ShellTracker()
    t.listener = lambda name, data: events.append((name, data))
    woken: list[int] = []
    t.when_idle(lambda: woken.append(0))
    assert woken == [0]  # nothing known to be running: a shell without marks is idle
    woken.clear()
    t.when_idle(lambda: woken.append(1), prompt=True)
    assert not woken and t.state == "unknown" and not t.integrated
    t.feed(b"\x1b]133;A\x07$ \x1b]133;B\x07")
    assert t.integrated and t.at_prompt and woken == [1]
    t.feed(b"x\r\n\x1b]133;C\x07out")
    assert t.state == "running" and t.busy
    t.when_idle(lambda: woken.append(2))
    assert woken == [1]
    t.feed(b"\r\n\x1b]133;D;130\x07\x1b]133;A\x07")
    assert woken == [1, 2] and t.at_prompt and not t.busy
    assert events and events[0][0] == "command-finished" and events[0][1]["exit_code"] == 130


def test_tracker_fallback_token_and_since() -> None:
    t = ShellTracker()
    t.pending_token = "tok"
    t.feed(b"\x1b]133;C;tmuxish=tok\x07")
    assert t.busy
    t.feed(b"\x1b]133;D;0;tmuxish=other\x07")
    assert t.pending_token == "tok"  # someone else's marker does not end our run
    t.feed(b"\x1b]133;D;0;tmuxish=tok\x07")
    assert t.pending_token is None and not t.busy
    start = t.mark()
    t.feed(b"hello")
    assert t.since(start) == b"hello"
    assert t.since(t.pos) == b""
    t.feed(b"z" * (3 * RING_BYTES))
    kept = t.since(0)
    assert RING_BYTES <= len(kept) <= 2 * RING_BYTES and kept.endswith(b"z")


def test_output_is_kept_only_while_a_mark_is_out(monkeypatch: Any) -> None:
    """Failed before: every session kept 256-512 KiB of its output for good, marks or not."""
    from tmuxish.server import shellhook

    now = [1000.0]
    monkeypatch.setattr(shellhook.time, "monotonic", lambda: now[0])
    t = ShellTracker()
    t.feed(b"x" * (RING_BYTES + 10))
    assert t.since(0) == b""  # no mark was ever handed out: nothing kept
    mark = t.mark()
    t.feed(b"after")
    assert t.since(mark) == b"after"
    now[0] += shellhook.RING_KEEP + 1
    t.feed(b"y" * 100)
    assert t.since(mark) == b""  # the mark expired: the ring was given back
    assert len(t._ring) == 0
    again = t.mark()
    t.feed(b"fresh")
    assert t.since(again) == b"fresh"


def test_integration_only_for_a_plain_bash_or_zsh(tmp_path: Any) -> None:
    d = str(tmp_path / "shell")
    argv, env, shell = integrate(["/bin/bash"], {"A": "1"}, d, "t0k")
    assert shell == "bash" and argv[1:] == ["--rcfile", f"{d}/bashrc", "-i"]
    assert env == {"A": "1", "TMUXISH_MARK": "t0k"}
    argv, env, shell = integrate(["zsh"], {"ZDOTDIR": "/mine"}, d, "t0k")
    assert shell == "zsh" and argv == ["zsh"]
    assert env["ZDOTDIR"] == f"{d}/zsh" and env["TMUXISH_ZDOTDIR"] == "/mine"
    assert env["TMUXISH_MARK"] == "t0k"
    for command in (["bash", "-c", "x"], ["bash", "script.sh"], ["dash"], ["sh"]):
        assert integrate(command, {}, d, "t0k") == (command, {}, None)


def test_marks_without_the_shells_token_are_a_programs() -> None:
    t = ShellTracker()
    t.mark_token = "t0k"
    finished: list[dict[str, Any]] = []
    t.listener = lambda kind, data: finished.append(data) if kind == "command-finished" else None
    t.feed(b"\x1b]133;A;tmuxish=t0k\x07\x1b]133;B;tmuxish=t0k\x07")
    assert t.at_prompt
    t.feed(b"\x1b]133;C;tmuxish=t0k\x07")
    assert t.state == "running"
    # What the command prints: a nested shell's marks, or a file that has some.
    t.feed(b"\x1b]133;D;0\x07\x1b]133;A\x07\x1b]133;B\x07\x1b]133;D;3;tmuxish=other\x07")
    assert t.state == "running" and t.busy and finished == []
    t.feed(b"\x1b]133;D;7;tmuxish=t0k\x07\x1b]133;A;tmuxish=t0k\x07")
    assert t.at_prompt and [f["exit_code"] for f in finished] == [7]


OSC_STREAM = (
    b"[x]" * 40  # more brackets than find_osc walks one by one
    + b"a\x07b\x1b]2;first title\x07c\x1b]0;second\x1b\\\x1b]52;c;"
    + b"Q" * 9000
    + b"\x07"
    b"\x1b]133;D;1\x07\x1b]2;cancelled\x1b[0m\x07\x1b\x07"
)


def test_osc_scanner_every_split_point() -> None:
    from tmuxish.server.shellhook import MAX_OSC, OscScanner

    def scan(chunks: list[bytes]) -> list[tuple[str, bytes]]:
        scanner = OscScanner()
        return [item for chunk in chunks for item in scanner.feed(chunk)]

    whole = scan([OSC_STREAM])
    assert whole == [
        ("bell", b""),
        ("2", b"first title"),
        ("0", b"second"),
        ("52", (b"c;" + b"Q" * 9000)[: MAX_OSC - 3]),  # kept bounded; its BEL is no bell
        ("133", b"D;1"),
        # "\x1b]2;cancelled" was cut short by another escape sequence: no title
        ("bell", b""),
        ("bell", b""),
    ]
    for cut in range(1, len(OSC_STREAM)):
        assert scan([OSC_STREAM[:cut], OSC_STREAM[cut:]]) == whole, cut


def test_tracker_events_bell_title_finished() -> None:
    events: list[tuple[str, dict[str, Any]]] = []
    t = ShellTracker()
    t.listener = lambda name, data: events.append((name, data))
    for b in b"\x1b]2;t1\x07\x07\x1b]2;t1\x07\x1b]133;C\x07x\x1b]133;D;0\x07":
        t.feed(bytes([b]))
    assert [e[0] for e in events] == ["title", "bell", "command-finished"]
    assert events[0][1] == {"title": "t1"} and events[2][1]["exit_code"] == 0
