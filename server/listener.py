"""Accepting clients: the first read of each connection may carry file descriptors.

A local `attach` passes its terminal with its HELLO (SCM_RIGHTS), which asyncio transports would
silently drop, so the first message is read here with recvmsg; the connection then continues as
an ordinary transport (connect_accepted_socket works under asyncio and uvloop) and the bytes
already read are handed to the protocol first.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Callable

from tmuxish.server.connection import Connection

log = logging.getLogger(__name__)

FIRST_READ = 65536
MAX_FDS = 2
#: How long a client may take to send its first bytes before it is dropped.
FIRST_MESSAGE_TIMEOUT = 10.0


def recv_with_fds(sock: socket.socket) -> tuple[bytes, list[int]]:
    """One recvmsg; keeps at most MAX_FDS descriptors (close-on-exec), closes the rest."""
    fds = array.array("i")
    data, ancdata, flags, _ = sock.recvmsg(
        FIRST_READ, socket.CMSG_SPACE(MAX_FDS * fds.itemsize), socket.MSG_CMSG_CLOEXEC
    )
    received: list[int] = []
    for level, kind, payload in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            usable = len(payload) - len(payload) % fds.itemsize
            fds.frombytes(payload[:usable])
    received = list(fds)
    if flags & socket.MSG_CTRUNC or len(received) > MAX_FDS:
        for fd in received[MAX_FDS:]:
            with contextlib.suppress(OSError):
                os.close(fd)
        received = received[:MAX_FDS]
    return data, received


class Listener:
    def __init__(
        self, sock: socket.socket, factory: Callable[[list[int], bytes], Connection]
    ) -> None:
        self.sock = sock
        self._factory = factory
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: dict[socket.socket, asyncio.TimerHandle] = {}

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        loop.add_reader(self.sock.fileno(), self._on_accept)

    def pause(self) -> None:
        """Stop accepting; new clients wait in the backlog (used across a server re-exec)."""
        if self._loop is not None:
            self._loop.remove_reader(self.sock.fileno())
            for conn in list(self._pending):
                self._drop(conn)

    def close(self) -> None:
        self.pause()
        self.sock.close()

    def _on_accept(self) -> None:
        assert self._loop is not None
        for _ in range(64):
            try:
                conn, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.warning("accept failed: %s", exc)
                return
            conn.setblocking(False)
            self._pending[conn] = self._loop.call_later(FIRST_MESSAGE_TIMEOUT, self._drop, conn)
            self._loop.add_reader(conn.fileno(), self._on_first, conn)

    def _drop(self, conn: socket.socket) -> None:
        timer = self._pending.pop(conn, None)
        if timer is not None:
            timer.cancel()
        if self._loop is not None:
            self._loop.remove_reader(conn.fileno())
        conn.close()

    def _on_first(self, conn: socket.socket) -> None:
        assert self._loop is not None
        try:
            data, fds = recv_with_fds(conn)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._drop(conn)
            return
        timer = self._pending.pop(conn)
        timer.cancel()
        self._loop.remove_reader(conn.fileno())
        if not data:
            for fd in fds:
                os.close(fd)
            conn.close()
            return
        self._loop.create_task(self._hand_over(conn, data, fds))

    async def _hand_over(self, conn: socket.socket, data: bytes, fds: list[int]) -> None:
        assert self._loop is not None
        # The bytes already read must reach the protocol before anything the transport reads,
        # so the connection feeds them to itself in connection_made.
        protocol = self._factory(fds, data)
        try:
            await self._loop.connect_accepted_socket(lambda: protocol, conn)
        except OSError as exc:
            log.warning("could not set up a connection: %s", exc)
            for fd in fds:
                with contextlib.suppress(OSError):
                    os.close(fd)
            conn.close()
