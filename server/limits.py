"""Bounds on what client connections may hold: time to finish a handshake or a frame, bytes of
unfinished frames server-wide, and memory given back to the system after a burst.

The listener caps how many connections there are; this caps what each one pins. A connection
that has said HELLO and holds no unfinished frame costs a few KiB and has no deadline (an idle
``wait`` or an attached client that types nothing is normal); everything else has one.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tmuxish.server.connection import Connection

log = logging.getLogger(__name__)

#: Seconds from a connection's first byte to its HELLO.
HANDSHAKE_TIMEOUT = 10.0
#: Seconds from the first byte of a frame to its last: 8 MiB (the largest client frame) at
#: 140 KiB/s. Clients send keystrokes and pastes in small frames; only a stuck or hostile peer
#: leaves one unfinished this long.
FRAME_TIMEOUT = 60.0
#: Bytes of unfinished frames all connections together may hold; the connection that would
#: pass it is closed. Eight largest frames at once, and 1000 connections cannot pin 8 GiB.
MAX_BUFFERED = 64 * 1024 * 1024
#: Seconds after connections close (or a large frame completes) before free memory is handed
#: back to the system; one trim for a whole burst.
TRIM_DELAY = 1.0
#: Bytes of frames freed since the last trim that make one worth it.
TRIM_AFTER = 4 * 1024 * 1024
#: A closed connection counts as this many freed bytes (transport, protocol, buffers).
CONNECTION_COST = 16 * 1024


def _malloc_trim() -> Callable[[], None] | None:
    """glibc's malloc_trim(0): freed small blocks stay in the heap (RSS does not go down after
    thousands of connections close) until it is called. None where there is no glibc."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        func = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return None
    func.argtypes = [ctypes.c_size_t]
    func.restype = ctypes.c_int
    return lambda: func(0) and None


class ConnectionLimits:
    """``watch(conn)`` after every read and when the connection is lost; it does the rest."""

    def __init__(
        self,
        handshake_timeout: float = HANDSHAKE_TIMEOUT,
        frame_timeout: float = FRAME_TIMEOUT,
        max_buffered: int = MAX_BUFFERED,
    ) -> None:
        self.handshake_timeout = handshake_timeout
        self.frame_timeout = frame_timeout
        self.max_buffered = max_buffered
        #: Bytes of unfinished frames, all connections together.
        self.buffered = 0
        self._held: dict[Connection, int] = {}
        self._timers: dict[Connection, asyncio.TimerHandle] = {}
        self._freed = 0
        self._trim_timer: asyncio.TimerHandle | None = None
        self._trim = _malloc_trim()
        self.trims = 0

    def watch(self, conn: Connection) -> None:
        held = 0 if conn.closed else conn.decoder.pending
        before = self._held.pop(conn, 0)
        self.buffered += held - before
        if held:
            self._held[conn] = held
        if held < before:
            self._freed += before - held
        waiting = not conn.closed and (held > 0 or not conn.greeted)
        timer = self._timers.get(conn)
        if waiting and timer is None:
            loop = asyncio.get_running_loop()
            if conn.greeted:
                delay = self.frame_timeout
                text = f"a frame was left unfinished for {delay:g}s"
            else:
                delay = self.handshake_timeout
                text = f"no HELLO within {delay:g}s"
            self._timers[conn] = loop.call_later(delay, self._expire, conn, text)
        elif not waiting and timer is not None:
            del self._timers[conn]
            timer.cancel()
        if conn.closed:
            self._freed += CONNECTION_COST
        if held and self.buffered > self.max_buffered:
            self._expire(conn, "unfinished frames of all clients exceed the server's budget")
        elif self._freed >= TRIM_AFTER:
            self._trim_soon()

    def _expire(self, conn: Connection, text: str) -> None:
        self._timers.pop(conn, None)
        if conn.closed:
            return
        # The connection's own disconnect path: error frame, detach, close with a grace period.
        conn._fail("bad-request", text)
        self.watch(conn)

    def _trim_soon(self) -> None:
        if self._trim is None or self._trim_timer is not None:
            return
        self._trim_timer = asyncio.get_running_loop().call_later(TRIM_DELAY, self._trim_now)

    def _trim_now(self) -> None:
        self._trim_timer = None
        self._freed = 0
        if self._trim is not None:
            self._trim()
            self.trims += 1

    def close(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        if self._trim_timer is not None:
            self._trim_timer.cancel()
            self._trim_timer = None
