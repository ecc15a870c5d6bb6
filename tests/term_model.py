"""A pexpect client of the real CLI whose output feeds a terminal model on the test side.

The model is the same libghostty-vt adapter the server uses (``tmuxish.server.screen.Screen``),
so a test can ask what a real terminal would show after the bytes the client received: screen
text, colours, cursor, modes and scrollback.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pexpect
from helpers import Cli, wait_for

from tmuxish.server.screen import Screen

PROMPT = "PROMPT> "
DETACH = b"\x10\x11"  # Ctrl-P Ctrl-Q


def shell(cli: Cli) -> list[str]:
    """An interactive ``sh`` with a prompt no output can be mistaken for."""
    cli.env["PS1"] = PROMPT
    cli.env["ENV"] = "/dev/null"
    return ["sh"]


def capture_lines(cli: Cli, *args: str) -> list[str]:
    """``tmuxish capture ARGS`` as a list of lines without trailing blank ones."""
    return cli.run("capture", *args).stdout.rstrip("\n").split("\n")


def lines_of(text: str) -> list[str]:
    return text.rstrip("\n").split("\n")


class Term:
    """One ``tmuxish`` command under a pexpect PTY of ``cols`` x ``rows``, modelled by a Screen."""

    def __init__(self, cli: Cli, *args: str, cols: int = 80, rows: int = 24) -> None:
        self.cli = cli
        # A model of the same size as the client's terminal, as a real terminal would be.
        self.screen = Screen(cols, rows)
        self.raw = bytearray()
        self.eof = False
        self.child: Any = cli.spawn(*args, rows=rows, cols=cols)

    def pump(self) -> None:
        """Feed everything the client has written so far into the model."""
        while not self.eof:
            try:
                data = self.child.read_nonblocking(65536, timeout=0)
            except pexpect.TIMEOUT:
                return
            except pexpect.EOF:
                self.eof = True
                return
            self.raw += data
            self.screen.feed(data)

    def text(self) -> str:
        self.pump()
        return self.screen.screen_text()

    def lines(self) -> list[str]:
        return lines_of(self.text())

    def wait(self, predicate: Callable[[Term], Any], what: str, timeout: float = 20.0) -> Any:
        def check() -> Any:
            self.pump()
            return predicate(self)

        try:
            return wait_for(check, timeout, what)
        except AssertionError as exc:
            raise AssertionError(
                f"{exc}; the client's screen:\n{self.screen.screen_text()}"
            ) from None

    def shows(self, *texts: str, gone: tuple[str, ...] = (), timeout: float = 10.0) -> str:
        """Wait until the screen shows every one of ``texts`` and none of ``gone``; its text."""

        def ready(t: Term) -> str | None:
            text = t.screen.screen_text()
            ok = all(x in text for x in texts) and not any(g in text for g in gone)
            return text if ok else None

        result: str = self.wait(ready, f"screen to show {texts} without {gone}", timeout)
        return result

    def line_with(self, text: str) -> str:
        """The first screen line holding ``text`` ("" while none does, e.g. mid-redraw)."""
        return next((line for line in self.lines() if text in line), "")

    def resize(self, rows: int, cols: int) -> None:
        self.screen.resize(cols, rows)
        self.child.setwinsize(rows, cols)

    def exit_status(self, timeout: float = 10.0) -> int:
        self.wait_eof(timeout)
        assert self.child.exitstatus is not None, self.child.signalstatus
        return int(self.child.exitstatus)

    def wait_text(self, needle: str, timeout: float = 20.0) -> str:
        result: str = self.wait(lambda t: needle in t.screen.screen_text(), repr(needle), timeout)
        return result

    def send(self, data: str | bytes) -> None:
        self.child.send(data)

    def wait_eof(self, timeout: float = 20.0) -> None:
        self.wait(lambda t: t.eof, "the client to exit", timeout)
        self.child.close()

    def detach(self) -> None:
        self.send(DETACH)
        self.wait_eof()
        assert b"[detached from session" in self.raw, bytes(self.raw[-300:])
        assert self.child.exitstatus == 0

    def prompt_row(self) -> int:
        """Index of the last row that shows the prompt."""
        lines = self.screen.screen_text().split("\n")
        found = [i for i, line in enumerate(lines) if line.startswith(PROMPT.rstrip())]
        assert found, self.screen.screen_text()
        return found[-1]


def attached(cli: Cli, sid: int, count: int = 1) -> None:
    wait_for(lambda: cli.session(sid)["clients"] == count, 20, f"{count} client(s) attached")
