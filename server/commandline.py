"""Typing a command line into a shell so that it arrives whole and is run once: the wrapper for
shells without the integration, pieces for a terminal in line mode, the wait for a line editor,
and the cancel of a line the shell found incomplete. Used by ``run`` (server/commandrun.py).

A terminal in canonical mode (a shell without line editing, or any shell before its editor
starts) keeps 4095 bytes of a line and drops the rest; a SIGINT may be missed by a shell that
is not blocked in its read. Both would make a run hang, or run something other than asked.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable
from typing import TYPE_CHECKING

from tmuxish.server import shellrc

if TYPE_CHECKING:
    from tmuxish.server.daemon import Server
    from tmuxish.server.session import Session

#: How long a run whose line was incomplete waits for the shell to prompt anew after its Ctrl-C
#: (see ``LineCancel``): the next run's line must not reach the terminal before the Ctrl-C.
CANCEL_WAIT = 2.0
#: Ctrl-C again this long after the last one if the shell has not prompted anew (and is quiet).
CANCEL_RETRY = 0.25
#: Quiet: no output for this long. Done once the shell has prompted and then been quiet.
CANCEL_SETTLE = 0.1
#: The longest line (in bytes) typed whole into a terminal in canonical mode: the kernel keeps
#: 4095 bytes of a line and drops the rest. A longer command for an integrated shell waits for
#: its line editor (non-canonical mode) to read, or is typed in pieces with the wrapper.
LINE_SAFE = 4000
#: How long, and how often, a long line waits for the line editor (see ``editor_reads``).
EDITOR_WAIT = 1.0
EDITOR_POLL = 0.005


#: Characters of the command per typed line of a fallback run. A shell without line editing
#: (dash) reads in the terminal's canonical mode, where a line stops at 4095 bytes and the rest
#: is dropped: a long command would run cut short. Quoted, a character takes at most 4 bytes.
LINE_PIECE = 500


def quote_pieces(command: str) -> str:
    """``command`` as one shell word in single quotes, split into typed lines of at most
    ``LINE_PIECE`` characters joined by backslash-newline (a line continuation)."""
    pieces = [command[i : i + LINE_PIECE] for i in range(0, len(command), LINE_PIECE)] or [""]
    return "\\\n".join("'" + p.replace("'", "'\\''") + "'" for p in pieces)


def fallback_line(command: str, token: str, saved: str) -> str:
    # The command is quoted into a variable and run with eval in the shell itself (cd and
    # variables stay), comments and trailing & included. `command eval` because a POSIX shell
    # drops the rest of the typed line when a plain eval meets a syntax error, end marker
    # included (zsh does not, and its `command` runs no builtins). The INT trap keeps an
    # interrupted command from aborting the rest of the line (POSIX shells drop the rest of
    # a list when its command dies of SIGINT): the end marker still comes, with status 130.
    # Programs the command starts get SIGINT's default back when they exec. The shell's own
    # traps are saved to ``saved`` first and put back after, so a user's INT trap survives the
    # run: through a file (in the server's private directory, removed with the session)
    # because dash's $(trap) shows the subshell's traps, none. Only builtins follow the end
    # marker: once it is out, `run` returns and the next input may come.
    path = "'" + saved.replace("'", "'\\''") + "'"
    return (
        f"__tmuxish_c={quote_pieces(command)}; trap >{path} 2>/dev/null; trap : INT; "
        f"printf '\\033]133;C;tmuxish={token}\\007'; if [ -n \"${{ZSH_VERSION-}}\" ]; "
        f'then eval "$__tmuxish_c"; else command eval "$__tmuxish_c"; fi; '
        f"printf '\\033]133;D;%s;tmuxish={token}\\007' \"$?\"; unset __tmuxish_c; "
        f"trap - INT; [ -r {path} ] && . {path}\r"
    )


def traps_file(server: Server, session: Session, cleaned: set[int]) -> str:
    """Where a fallback run keeps the shell's traps (see ``fallback_line``); the directory is
    made, and the file goes when the session does (``cleaned``: sessions that know already)."""
    directory = shellrc.integration_dir(str(server.socket_path))
    os.makedirs(directory, mode=0o700, exist_ok=True)
    path = os.path.join(directory, f"traps.{session.id}")
    if session.id not in cleaned:
        cleaned.add(session.id)
        session.cleanup.append(lambda: _unlink(path))
    return path


def _unlink(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


class LineCancel:
    """Takes an integrated shell from a continuation prompt back to its primary prompt with
    Ctrl-C, then calls ``done``.

    A shell may leave a SIGINT pending when it lands outside its blocking read (bash after
    echoing ^C, zsh between drawing the prompt and reading): it acts on it only at the next
    key, which would be the next run's. A second SIGINT, which finds it blocked in that read,
    is acted on: so Ctrl-C goes again while the shell neither prompts anew nor prints. Each
    Ctrl-C the shell acts on draws one more prompt, which a later run would take for its own
    (and the SIGINT flushes what was typed by then): so this ends only once the shell has
    prompted and then been quiet for a moment. ``done`` is called by ``CANCEL_WAIT`` whatever
    happens.
    """

    def __init__(self, session: Session, done: Callable[[], None]) -> None:
        self.session = session
        self._done = done
        self._loop = asyncio.get_running_loop()
        now = self._loop.time()
        self._deadline = now + CANCEL_WAIT
        self._kicked = now
        self._last_heard = now
        self._prompted = False
        session.write_input(b"\x03")
        self._timer = self._loop.call_later(CANCEL_SETTLE, self._tick)

    def heard(self, prompt: bool) -> None:
        """The shell printed something (a primary prompt mark if ``prompt``)."""
        self._last_heard = self._loop.time()
        self._prompted = self._prompted or prompt

    def _tick(self) -> None:
        now = self._loop.time()
        quiet = now - self._last_heard >= CANCEL_SETTLE
        if (self._prompted and quiet) or now >= self._deadline or not self.session.running:
            self._done()
            return
        if not self._prompted and quiet and now - self._kicked >= CANCEL_RETRY:
            self.session.write_input(b"\x03")
            self._kicked = now
        self._timer = self._loop.call_later(CANCEL_SETTLE / 2, self._tick)

    def stop(self) -> None:
        self._timer.cancel()


async def editor_reads(session: Session, deadline: float | None) -> bool:
    """Wait (up to ``EDITOR_WAIT`` or ``deadline``) until the shell's line editor reads the
    terminal, which it does in non-canonical mode: a shell just back at its prompt may not have
    started it yet, and a line typed meanwhile lands in canonical mode. False if it does not."""
    loop = asyncio.get_running_loop()
    until = loop.time() + EDITOR_WAIT
    if deadline is not None:
        until = min(until, deadline)
    while session.line_mode():
        if loop.time() >= until or not session.running:
            return False
        await asyncio.sleep(EDITOR_POLL)
    return True
