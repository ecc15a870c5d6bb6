"""A client attached to a session: its size, its flow state, its terminal if the server drives it,
and the one way an attachment ends.

A server connection is a protocol peer (requests and replies) until an ``attach`` request makes it
an attachment; from then on it carries only the stream (INPUT, RESIZE, DETACH from the client;
OUTPUT, EXITED, DETACHED, EVENT to it) until ``end`` says how it ended: what the client is told,
whether its terminal is reset, and whether the connection closes.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import TYPE_CHECKING, NamedTuple

from tmuxish import protocol
from tmuxish.server.policy import ClientSize
from tmuxish.server.terminal import DirectTerminal

if TYPE_CHECKING:
    from tmuxish.keys import DetachFilter
    from tmuxish.server.connection import Connection
    from tmuxish.server.session import Session

log = logging.getLogger(__name__)


class Ending(NamedTuple):
    """How an attachment ends."""

    #: The last stream message the client gets; None when it cannot get one (it is gone).
    frame: bytes | None
    #: Undo the terminal modes the program turned on (the user goes back to their shell).
    reset: bool
    #: Close the connection, flushing for this many seconds at most; None: it stays open.
    close: float | None


def detached(reason: str = protocol.DETACHED_BY_USER) -> Ending:
    """The user detached (reason "detached"); or their terminal went away."""
    return Ending(protocol.detached(reason), reason == protocol.DETACHED_BY_USER, None)


def dropped(reason: str, grace: float) -> Ending:
    """The server let go of a client that could not keep up; the others go on."""
    return Ending(protocol.detached(reason), False, grace)


def exited(code: int | None) -> Ending:
    """The program ended; EXITED carries its code, so an unknown one ends with DETACHED."""
    frame = (
        protocol.exited(code)
        if code is not None
        else protocol.detached(protocol.DETACHED_EXIT_UNKNOWN)
    )
    return Ending(frame, True, 5.0)


#: The server is re-executing itself: the client reconnects and attaches again by itself.
UPGRADE = Ending(protocol.upgrade_event(), False, 1.0)
#: The connection is gone: nobody to tell anything.
LOST = Ending(None, False, None)


class ClientAttachment:
    """What a session sees of one attached client (``session.Attachment``)."""

    def __init__(
        self,
        conn: Connection,
        session: Session,
        size: ClientSize,
        readonly: bool,
        counted: bool = True,
    ) -> None:
        self.conn = conn
        self.session = session
        self.readonly = readonly
        self.counted = counted
        self.size = size
        self.behind = False
        self.attached_in_alt = False
        self.ended = False
        #: Set when the server drives the client's terminal itself (direct attach).
        self.terminal: DirectTerminal | None = None
        self._stall_timer: asyncio.TimerHandle | None = None
        self._input_holds = 0

    def drive_terminal(self, fd: int, detach_filter: DetachFilter, initial: bytes) -> None:
        """Read keystrokes from and write output to the terminal ``fd`` (which this now owns),
        starting with ``initial``."""
        try:
            self.terminal = DirectTerminal(
                fd,
                asyncio.get_running_loop(),
                detach_filter,
                on_input=self.typed,
                on_detach=lambda: self.end(detached()),
                on_gone=lambda: self.end(detached("terminal gone")),
                on_behind=self.behind_changed,
            )
        except BaseException:
            os.close(fd)
            raise
        if self._input_holds:
            # The session was already full when we attached, which held the socket: hold the
            # terminal instead (the socket carries only resizes and detaches now).
            self.conn.hold_reading(False)
            self.terminal.pause_input()
        self.terminal.write(initial)

    # -- from the client -------------------------------------------------------------------------

    def typed(self, data: bytes) -> None:
        """Input from the client's terminal: it reaches the program, and under the `latest`
        policy it makes this client's size the session's, as in tmux."""
        if self.ended or self.readonly:
            return
        self.size = ClientSize(self.size.cols, self.size.rows, time.monotonic())
        self.session.apply_size()
        self.session.write_input(data)

    def resized(self, cols: int, rows: int) -> None:
        self.size = ClientSize(cols, rows, time.monotonic(), self.readonly)
        self.session.apply_size()

    # -- to the client ---------------------------------------------------------------------------

    def send_output(self, header: bytes, data: bytes) -> None:
        limit = self.conn.server.max_behind_bytes
        if self.terminal is not None:
            self.terminal.write(data)
            backlog = self.terminal.buffered
        else:
            backlog = self.conn.write_stream(header, data)
        if backlog > limit:
            self.drop("client too slow: output backlog limit reached")

    def send_frame(self, frame: bytes) -> None:
        self.conn.send_frame(frame)

    def session_exited(self, code: int | None) -> None:
        self.end(exited(code))

    # -- flow control ----------------------------------------------------------------------------

    def behind_changed(self, behind: bool) -> None:
        """The client's output backlog crossed a water mark (socket or terminal)."""
        if self.ended or behind == self.behind:
            return
        self.behind = behind
        if self._stall_timer is not None:
            self._stall_timer.cancel()
            self._stall_timer = None
        stall = self.conn.server.stall_timeout
        if behind and stall > 0:
            self._stall_timer = asyncio.get_running_loop().call_later(stall, self._stalled)
        self.session.client_behind_changed()

    def _stalled(self) -> None:
        self._stall_timer = None
        if self.behind:
            self.drop(f"client stopped reading for {self.conn.server.stall_timeout:g}s")

    def drop(self, reason: str) -> None:
        log.warning("dropping client pid %d: %s", self.conn.peer_pid, reason)
        self.end(dropped(reason, self.conn.server.drop_grace))

    def pause_input(self) -> None:
        """The program is not reading: take no input from this client until ``resume_input``
        (its terminal, or its socket, is not read, as a terminal would do). A read-only
        client's input goes nowhere, so it is never held (its detach keys keep working)."""
        if self.readonly:
            return
        self._input_holds += 1
        if self._input_holds == 1:
            self._hold_input(True)

    def resume_input(self) -> None:
        if self._input_holds == 0:
            return
        self._input_holds -= 1
        if self._input_holds == 0:
            self._hold_input(False)

    def _hold_input(self, hold: bool) -> None:
        if self.terminal is not None:
            if hold:
                self.terminal.pause_input()
            else:
                self.terminal.resume_input()
        else:
            self.conn.hold_reading(hold)

    # -- the way out -----------------------------------------------------------------------------

    def end(self, ending: Ending) -> None:
        """End the attachment (once): leave the session, reset and let go of the terminal, tell
        the client, and close the connection if ``ending`` says so."""
        if self.ended:
            return
        self.ended = True
        if self._stall_timer is not None:
            self._stall_timer.cancel()
            self._stall_timer = None
        if self._input_holds:
            self._input_holds = 1
            self.resume_input()  # a relaying connection reads again (to see its peer leave)
        session = self.session
        session.detach(self)
        reset = session.reset_modes() if ending.reset else b""
        terminal, self.terminal = self.terminal, None
        if terminal is None:
            if reset:
                self.conn.send_frame(protocol.reset_event(reset))
        elif ending.reset:
            # We reset the terminal ourselves; the client must not reset it after us.
            terminal.finish(reset or protocol.SANE_MODES)
            self.conn.send_frame(protocol.reset_written_event())
        else:
            terminal.finish()
        if ending.frame is not None:
            self.conn.send_frame(ending.frame)
        self.conn.attachment_ended(self, ending.close)
