"""The screen model end to end: the real CLI under pexpect, its output fed to a terminal model.

Each test checks what a user's terminal would show (text, colours, cursor, scrollback, modes)
after the bytes a real `tmuxish attach` wrote to it, not what the server believes.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from helpers import Cli, wait_for
from term_model import PROMPT, Term, attached, capture_lines, lines_of, shell

from tmuxish.server.screen import Screen

MODES = ["direct", "relay"]


def escaped(data: bytes) -> str:
    """``data`` as a printf format: the program writes the bytes, the command line stays text."""
    return data.decode().replace("\x1b", "\\033").replace("\r", "\\r").replace("\n", "\\n")


def typed(cli: Cli, sid: int, text: str) -> None:
    """Type a command line into a detached session."""
    cli.run("send", "-l", str(sid), text)
    cli.run("send", str(sid), "Enter")


@pytest.mark.parametrize("mode", MODES)
def test_reattach_shows_prior_output_and_prompt(cli: Cli, mode: str) -> None:
    cli.env["TMUXISH_ATTACH_MODE"] = mode
    first = Term(cli, "new", "--", *shell(cli))
    first.wait_text(PROMPT.rstrip())
    first.send("echo out-$((6*7)); echo second-line\r")
    first.wait(lambda t: t.lines()[-1] == PROMPT.rstrip() and "second-line" in t.text(), "output")
    first.detach()

    again = Term(cli, "attach", "1")
    # The cursor is placed after the text: waiting for it waits for the whole repaint.
    again.wait(lambda t: "second-line" in t.text() and t.screen.cursor[1] == 3, "the repaint")
    lines = again.lines()
    assert lines == capture_lines(cli, "1")
    assert lines[:4] == [
        "PROMPT> echo out-$((6*7)); echo second-line",
        "out-42",
        "second-line",
        "PROMPT>",
    ]
    # The cursor sits after the prompt, where the shell will echo the next key.
    assert again.screen.cursor == (len(PROMPT), 3)
    again.send("echo back-$((1+1))\r")
    again.wait_text("back-2")
    again.detach()


@pytest.mark.parametrize("mode", ["direct", "relay"])
def test_attach_during_vi_then_quit(cli: Cli, tmp_path: Path, mode: str) -> None:
    cli.env["TMUXISH_ATTACH_MODE"] = mode
    sid = cli.new(*shell(cli))
    text = tmp_path / "scr_vi.txt"
    text.write_text("vi-line-one\nvi-line-two\n")
    typed(cli, sid, "echo before-$((1+2))")
    wait_for(lambda: "before-3" in capture_lines(cli, str(sid)), 20, "shell output")
    typed(cli, sid, f"vi -u NONE -N {text}")
    wait_for(lambda: "vi-line-two" in capture_lines(cli, str(sid)), 20, "vi on the screen")

    # Detaching from vi leaves the user's terminal on its own main screen again.
    peek = Term(cli, "attach", str(sid))
    peek.wait_text("vi-line-two")
    assert peek.screen.is_alt
    peek.detach()
    assert not peek.screen.is_alt and peek.screen.cursor_visible
    assert peek.raw.rfind(b"\x1b[?1049l") > peek.raw.rfind(b"\x1b[?1049h") >= 0

    term = Term(cli, "attach", str(sid))
    term.wait_text("vi-line-two")
    assert term.screen.is_alt
    assert "before-3" not in term.text()
    term.send(":q\r")

    def shell_back(t: Term) -> bool:
        lines = t.lines()
        return (
            not t.screen.is_alt
            and "before-3" in lines
            and t.screen.cursor == (len(PROMPT), len(lines) - 1)
            and lines == capture_lines(cli, str(sid))
        )

    term.wait(shell_back, "the shell's screen after quitting vi")
    lines = term.lines()
    assert lines[:2] == ["PROMPT> echo before-$((1+2))", "before-3"]
    assert lines[-1] == PROMPT.rstrip()
    assert term.screen.cursor == (len(PROMPT), len(lines) - 1)
    term.detach()


def test_attach_with_another_size_repaints_at_that_size(cli: Cli) -> None:
    # With the screen model fed on a worker thread, the resize an attach causes used to be
    # queued behind the repaint taken in the same step: a repaint of the old size.
    sid = cli.new(*shell(cli))
    typed(cli, sid, "seq 1 40")
    wait_for(lambda: "40" in capture_lines(cli, str(sid)), 20, "seq output")
    term = Term(cli, "attach", "--history", "5", str(sid), cols=100, rows=30)
    term.wait(lambda t: "40" in t.lines() and t.screen.cursor[1] == 29, "the repaint")
    assert (cli.session(sid)["cols"], cli.session(sid)["rows"]) == (100, 30)
    lines = term.lines()
    # 30 rows: the session's model pulled rows back from its scrollback to fill them.
    assert lines == capture_lines(cli, str(sid))
    assert lines[0] == "12" and lines[-1] == PROMPT.rstrip() and len(lines) == 30
    assert term.screen.cursor == (len(PROMPT), 29)
    assert lines_of(term.screen.history_text())[:5] == [str(i) for i in range(7, 12)]
    term.detach()


PAINT = (
    b"\x1b[2J\x1b[H"
    b"plain \x1b[1;31mbold-red\x1b[0m \x1b[38;5;208morange\x1b[0m "
    b"\x1b[44;97mwhite-on-blue\x1b[0m\r\n"
    b"\x1b[38;2;10;200;30mtruecolor\x1b[0m \x1b[4;3munder-italic\x1b[0m \x1b[7mreverse\x1b[0m"
    b"\x1b[5;3H\x1b[42m   \x1b[0m"
    b"\x1b[12;30H"
)


def test_colours_and_cursor_survive_reattach(cli: Cli) -> None:
    sid = cli.new("sh", "-c", f"printf '{escaped(PAINT)}'; exec sleep 1000")
    expected = Screen(80, 24)
    expected.feed(PAINT)
    want = expected.screen_text(escapes=True)
    # What we compare holds: base colours keep their own codes (issue 14), 256 colours theirs.
    assert "\x1b[38;5;208morange" in want and "\x1b[42m   " in want
    wait_for(lambda: "reverse" in cli.run("capture", str(sid)).stdout, 20, "the paint")
    assert cli.run("capture", "-e", str(sid)).stdout.rstrip("\n") == want.rstrip("\n")

    for _ in range(2):  # the first attach, then a re-attach after a detach
        term = Term(cli, "attach", str(sid))
        term.wait(
            lambda t: t.screen.screen_text(escapes=True) == want and t.screen.cursor == (29, 11),
            "colours and cursor repainted",
        )
        assert term.screen.cursor == expected.cursor == (29, 11)
        assert term.screen.cursor_visible
        term.detach()


@pytest.mark.parametrize(("history", "first"), [("10", 68), ("0", None), (None, 54)])
def test_attach_history_lands_in_scrollback(cli: Cli, history: str | None, first: int) -> None:
    sid = cli.new("sh", "-c", "seq 1 100; exec sleep 1000")
    wait_for(lambda: "100" in capture_lines(cli, str(sid)), 20, "seq output")
    args = ["--history", history] if history is not None else []
    term = Term(cli, "attach", *args, str(sid))
    term.wait_text("100")
    on_screen = [str(i) for i in range(78, 101)]
    assert term.lines() == on_screen
    everything = lines_of(term.screen.history_text())
    # Without --history the client writes one screenful of its own rows (24).
    scrollback = [str(i) for i in range(first, 78)] if first is not None else []
    assert everything == scrollback + on_screen
    assert term.screen.history_rows == len(scrollback)
    term.detach()


def test_capture_plain_escapes_and_history(cli: Cli) -> None:
    paint = b"".join(b"row-%d\r\n" % i for i in range(1, 41)) + b"\x1b[1;32mgreen\x1b[0m end"
    sid = cli.new("sh", "-c", f"printf '{escaped(paint)}'; exec sleep 1000")
    wait_for(lambda: "green end" in cli.run("capture", str(sid)).stdout, 20, "output")
    plain = capture_lines(cli, str(sid))
    assert plain == [f"row-{i}" for i in range(18, 41)] + ["green end"]
    colour = cli.run("capture", "-e", str(sid)).stdout
    assert "\x1b[1m\x1b[32mgreen\x1b[0m end" in colour
    assert "\x1b[" not in cli.run("capture", str(sid)).stdout
    full = capture_lines(cli, "--history", str(sid))
    assert full == [f"row-{i}" for i in range(1, 41)] + ["green end"]


QUERIER = r"""
import os, sys, termios, tty
old = termios.tcgetattr(0)
tty.setraw(0)
def ask(query, end):
    os.write(1, query)
    reply = b""
    while not reply.endswith(end):
        reply += os.read(0, 1)
    return reply
cpr = ask(b"\x1b[5;7H\x1b[6n", b"R")
da = ask(b"\x1b[c", b"c")
termios.tcsetattr(0, termios.TCSADRAIN, old)
print("\ncpr=%r da=%r" % (cpr, da))
sys.exit(42 if cpr == b"\x1b[5;7R" and da.startswith(b"\x1b[?") else 1)
"""


def test_queries_answered_while_detached(cli: Cli, tmp_path: Path) -> None:
    script = tmp_path / "scr_query.py"
    script.write_text(QUERIER)
    sid = cli.new(sys.executable, str(script))
    proc = cli.run("wait", str(sid), check=False, timeout=30)
    assert proc.returncode == 42, cli.run("capture", str(sid)).stdout
    assert "cpr=b'\\x1b[5;7R'" in cli.run("capture", str(sid)).stdout
    session = cli.session(sid)
    assert session["status"] == "exited" and session["clients"] == 0


def test_queries_answered_with_only_a_read_only_client(cli: Cli, tmp_path: Path) -> None:
    # A read-only client's terminal answers too, but its input is dropped: the server must
    # answer for it, or the program waits for a reply that never comes.
    script = tmp_path / "scr_query.py"
    script.write_text(QUERIER)
    sid = cli.new("sh", "-c", f"read go; exec {sys.executable} {script}")
    watcher = Term(cli, "attach", "-r", str(sid))
    attached(cli, sid, 1)
    cli.run("send", str(sid), "Enter")
    proc = cli.run("wait", str(sid), check=False, timeout=30)
    assert proc.returncode == 42, cli.run("capture", str(sid)).stdout
    watcher.wait_eof()
    assert b"[session 1 exited with code 42]" in watcher.raw


WINCH = r"""
import os, signal, sys
count = 0
def show(*_):
    global count
    count += 1
    cols, rows = os.get_terminal_size(0)
    sys.stdout.write("\r\nsize-%d %dx%d" % (count, cols, rows))
    sys.stdout.flush()
signal.signal(signal.SIGWINCH, show)
show()
while True:
    signal.pause()
"""


def test_no_screen_model_makes_the_program_redraw(cli: Cli, tmp_path: Path) -> None:
    script = tmp_path / "scr_winch.py"
    script.write_text(WINCH)
    cli.env["TMUXISH_NO_SCREEN"] = "1"
    sid = cli.new(sys.executable, str(script))
    [info] = json.loads(cli.run("ls", "--json").stdout)
    assert info["screen"] is False
    table = cli.run("ls").stdout
    assert "no screen" in table, table
    proc = cli.run("capture", str(sid), check=False)
    assert proc.returncode != 0 and "no screen model" in proc.stderr

    seen = 1  # the program's first line went out while nobody was attached
    for _ in range(2):  # every attach needs the redraw, not only the first
        term = Term(cli, "attach", str(sid))

        def redrawn(t: Term) -> bool:
            sizes = [line for line in t.lines() if line.startswith("size-")]
            return bool(sizes) and sizes[-1].endswith(" 80x24")

        term.wait(redrawn, "a redraw at the restored size")
        numbers = [int(line.split()[0][5:]) for line in term.lines() if line.startswith("size-")]
        # Only SIGWINCH can have made it print (a size one row short comes first, but on a
        # loaded machine the program may read the size only after it was restored).
        assert min(numbers) > seen, term.lines()
        seen = max(numbers)
        term.detach()


@pytest.mark.parametrize("mode", MODES)
def test_detach_resets_modes(cli: Cli, mode: str) -> None:
    cli.env["TMUXISH_ATTACH_MODE"] = mode
    sid = cli.new(*shell(cli))
    enable = ("\x1b[?1000h", "\x1b[?2004h")
    for attempt in range(2):
        term = Term(cli, "attach", str(sid))
        term.wait_text(PROMPT.rstrip())
        if attempt == 0:
            # Turned on while attached: the live output carries the enables.
            term.send("printf '\\033[?1000h\\033[?2004h'; echo on-$((1+1))\r")
            term.wait_text("on-2")
        else:
            # Turned on before this attach: the repaint carries them.
            term.wait(lambda t: t.screen.mode(1000) and t.screen.mode(2004), "the repaint's modes")
        assert term.screen.mode(1000) and term.screen.mode(2004)
        term.detach()
        raw = bytes(term.raw)
        for on in enable:
            off = on[:-1] + "l"
            assert raw.rfind(off.encode()) > raw.rfind(on.encode()) >= 0, (on, raw[-400:])
        assert not term.screen.mode(1000) and not term.screen.mode(2004)
    attached(cli, sid, 0)


def test_a_flood_the_model_cannot_follow_is_shown_and_resynced(cli: Cli) -> None:
    # Dense colour output from `yes`, far faster than the emulator's share of the server's time
    # lets it parse: the model falls behind while the program runs on at full speed. Stopping
    # it lets the model resync from the tail, and the screen is right again.
    flood = escaped(b"\x1b[1;31mred\x1b[0m \x1b[4munderlined\x1b[0m \x1b[42mgreen\x1b[0m")
    # SIGINT may cut `yes` off inside an escape sequence: CAN ends it, as a terminal would.
    trap = "trap \"printf '\\030\\n'; echo stopped-\\$((6*7))\" INT"
    script = f"{trap}; yes \"$(printf '{flood}')\"; sleep 1000"
    sid = cli.new("sh", "-c", script)
    wait_for(lambda: "(screen behind)" in cli.run("ls").stdout, 20, "ls to say the model is behind")
    [info] = json.loads(cli.run("ls", "--json").stdout)
    assert info["screen_behind"] is True and info["status"] == "running"
    cli.run("send", str(sid), "C-c")

    def stopped() -> list[str] | None:
        lines = [line for line in capture_lines(cli, str(sid)) if line]
        return lines if lines and lines[-1].endswith("stopped-42") else None

    lines = wait_for(stopped, 20, "the program's last words on the captured screen")
    # The whole screen is the flood's last lines, then the ^C echo and the trap's words.
    # (The echoed ^C may cut a line short, or wrap at the margin: the last two lines vary.)
    assert all(line == "red underlined green" for line in lines[:-2]), lines
    assert len(lines) >= 22, lines
    wait_for(lambda: "(screen behind)" not in cli.run("ls").stdout, 20, "the model to resync")
