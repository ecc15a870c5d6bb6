"""Accepting clients: the first read of each connection may carry file descriptors.

A local `attach` passes its terminal with its HELLO (SCM_RIGHTS), which asyncio transports would
silently drop, so the first message is read here with recvmsg; the connection then continues as
an ordinary transport (connect_accepted_socket works under asyncio and uvloop) and the bytes
already read are handed to the protocol first. Accepting itself, with its bounds and its back-off
when the process is out of descriptors, is :class:`tmuxish.server.acceptor.Acceptor`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable

from tmuxish import protocol
from tmuxish.server.acceptor import Acceptor, Received, close_fds, recv_with_fds
from tmuxish.server.connection import Connection

log = logging.getLogger(__name__)

FIRST_READ = 65536
MAX_FDS = 2
#: How long a client may take to send its first bytes before it is dropped.
FIRST_MESSAGE_TIMEOUT = 10.0
#: Accepted connections that have not sent anything yet.
MAX_PENDING = 128
#: Connections past their first message (clients, attached or not). Each costs a descriptor
#: and some memory; a runaway script opening connections in a loop meets this, not the fd limit.
MAX_CONNECTIONS = 1000


def _first_message(conn: socket.socket) -> Received:
    received = recv_with_fds(conn, FIRST_READ, MAX_FDS)
    if not received.data:
        close_fds(received.fds)
        raise EOFError
    return received


class Listener:
    def __init__(
        self,
        sock: socket.socket,
        factory: Callable[[list[int], bytes], Connection],
        active: Callable[[], int] = lambda: 0,
        max_connections: int = MAX_CONNECTIONS,
    ) -> None:
        self.sock = sock
        self._factory = factory
        self._active = active
        self.max_connections = max_connections
        self._loop: asyncio.AbstractEventLoop | None = None
        self._acceptor = Acceptor(
            sock,
            _first_message,
            self._deliver,
            name="listener",
            max_pending=MAX_PENDING,
            timeout=FIRST_MESSAGE_TIMEOUT,
            refuse=self._out_of_fds,
        )
        self._refused = 0

    @property
    def pending(self) -> int:
        return self._acceptor.pending

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._acceptor.start(loop)

    def pause(self) -> None:
        """Stop accepting; new clients wait in the backlog (used across a server re-exec)."""
        self._acceptor.pause()

    def close(self) -> None:
        self._acceptor.close()
        self.sock.close()

    def _deliver(self, conn: socket.socket, received: Received) -> None:
        assert self._loop is not None
        fds = received.fds
        if received.truncated or len(fds) > MAX_FDS:
            close_fds(fds[MAX_FDS:])
            fds = fds[:MAX_FDS]
        if self._active() >= self.max_connections:
            self._refuse(conn, fds)
            return
        self._loop.create_task(self._hand_over(conn, received.data, fds))

    def _out_of_fds(self, conn: socket.socket, received: Received) -> None:
        close_fds(received.fds)
        text = (
            "the server is out of file descriptors (too many open files); "
            "end some sessions or raise its limit (ulimit -n)"
        )
        with contextlib.suppress(OSError):
            conn.send(protocol.error(None, "error", text))

    def _refuse(self, conn: socket.socket, fds: list[int]) -> None:
        """Over the cap. Refused after the first read, not at accept: closing a unix socket with
        unread data makes the peer's next read fail with ECONNRESET instead of showing this."""
        self._refused += 1
        if self._refused == 1 or self._refused % 1000 == 0:
            log.warning(
                "refused a connection: %d clients connected (%d refused so far)",
                self._active(),
                self._refused,
            )
        text = f"the server has too many connections ({self.max_connections}); try again later"
        with contextlib.suppress(OSError):
            conn.send(protocol.error(None, "error", text))  # before HELLO, as a refusal is
        close_fds(fds)
        conn.close()

    async def _hand_over(self, conn: socket.socket, data: bytes, fds: list[int]) -> None:
        assert self._loop is not None
        # The bytes already read must reach the protocol before anything the transport reads,
        # so the connection feeds them to itself in connection_made.
        protocol_ = self._factory(fds, data)
        try:
            await self._loop.connect_accepted_socket(lambda: protocol_, conn)
        except OSError as exc:
            log.warning("could not set up a connection: %s", exc)
            close_fds(fds)
            conn.close()
