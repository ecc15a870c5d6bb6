"""Accepting connections on the event loop, and the first read of each, with every resource bounded.

Both listening sockets of the server (the client socket and OCI console sockets) go through
:class:`Acceptor`: it accepts in batches, backs off when the process is out of descriptors or
memory (the listening socket stays readable then, so retrying at once would spin the loop and
flood the log), keeps at most ``max_pending`` accepted connections waiting for their first
message, and drops each one that has not delivered it within ``timeout`` seconds.
:func:`recv_with_fds` is the one place a message with SCM_RIGHTS descriptors is received.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import errno
import logging
import os
import select
import socket
from collections.abc import Callable
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

#: accept() errors that mean "out of descriptors or memory": wait, do not retry at once.
RESOURCE_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
ACCEPT_BATCH = 16
RETRY_DELAY = 1.0

_INT_SIZE = array.array("i").itemsize


class Received:
    """One message read with :func:`recv_with_fds`; the caller owns ``fds``."""

    __slots__ = ("data", "fds", "truncated")

    def __init__(self, data: bytes, fds: list[int], truncated: bool) -> None:
        self.data = data
        self.fds = fds
        #: The sender passed more descriptors than there was room for; all kept ones are listed.
        self.truncated = truncated


def close_fds(fds: list[int]) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)


def recv_with_fds(sock: socket.socket, max_bytes: int, max_fds: int) -> Received:
    """One recvmsg of at most ``max_bytes`` and ``max_fds`` descriptors, all close-on-exec.

    ``socket.recv_fds`` would drop MSG_CMSG_CLOEXEC (CPython gh-107898), so a program started
    meanwhile could inherit the fds. A truncated cmsg can end mid-int: only whole ints count.
    BlockingIOError propagates with nothing consumed.
    """
    data, ancdata, flags, _ = sock.recvmsg(
        max_bytes, socket.CMSG_SPACE(max_fds * _INT_SIZE), socket.MSG_CMSG_CLOEXEC
    )
    fds = array.array("i")
    for level, kind, payload in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(payload[: len(payload) - len(payload) % _INT_SIZE])
    return Received(data, list(fds), bool(flags & socket.MSG_CTRUNC))


class Acceptor(Generic[T]):
    """Accepts on ``sock`` and hands each connection over once ``receive`` has read from it.

    ``receive(conn)`` is tried as soon as a connection is accepted and again each time it is
    readable: BlockingIOError means "nothing yet", EOFError drops the connection quietly, any
    other exception drops it with one log line. Its result goes to ``deliver(conn, result)``,
    which then owns ``conn``.
    ``admit(conn)`` may refuse a connection before anything is read (the acceptor closes it).
    ``refuse(conn, result)`` is told about a connection accepted on the reserve descriptor when
    the process is out of descriptors; it may send a last word, the acceptor closes ``conn``.
    """

    def __init__(
        self,
        sock: socket.socket,
        receive: Callable[[socket.socket], T],
        deliver: Callable[[socket.socket, T], None],
        *,
        name: str,
        max_pending: int,
        timeout: float,
        admit: Callable[[socket.socket], bool] | None = None,
        refuse: Callable[[socket.socket, T], None] | None = None,
        retry_delay: float = RETRY_DELAY,
    ) -> None:
        self.sock = sock
        self.name = name
        self.max_pending = max_pending
        self.timeout = timeout
        self.retry_delay = retry_delay
        self._receive = receive
        self._deliver = deliver
        self._admit = admit
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: dict[socket.socket, asyncio.TimerHandle] = {}
        self._reading = False
        self._retry: asyncio.TimerHandle | None = None
        #: Set while accepting is paused for lack of resources; logged once per episode.
        self._starved = False
        self._refused = 0
        self._evicted = 0
        self._refuse = refuse
        #: With ``refuse``: a descriptor kept in hand so that, out of descriptors, one client at
        #: a time can still be accepted and told why rather than left waiting in the backlog.
        self._reserve = -1
        self._on_reserve: socket.socket | None = None

    @property
    def pending(self) -> int:
        """Accepted connections still waiting for their first message."""
        return len(self._pending)

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._open_reserve()
        self._watch(True)

    def close(self) -> None:
        """pause(), and give back the reserve descriptor; the caller closes the socket."""
        self.pause()
        if self._reserve >= 0:
            os.close(self._reserve)
            self._reserve = -1

    def pause(self) -> None:
        """Stop accepting and drop waiting connections; new ones wait in the backlog."""
        self._watch(False)
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        for conn in list(self._pending):
            self._drop(conn)

    def _watch(self, on: bool) -> None:
        if self._loop is None or on == self._reading or self.sock.fileno() < 0:
            return
        if on:
            self._loop.add_reader(self.sock.fileno(), self._on_accept)
        else:
            self._loop.remove_reader(self.sock.fileno())
        self._reading = on

    def _on_accept(self) -> None:
        for _ in range(ACCEPT_BATCH):
            if not self._reading:
                return  # a delivery paused or closed us
            try:
                conn, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                if exc.errno in RESOURCE_ERRNOS:
                    if not self._backlog_waiting():
                        # accept() takes a descriptor before it looks at the backlog, so it
                        # fails like this with nobody waiting: nothing to make room for.
                        break
                    if self._evict_oldest(exc) or self._accept_on_reserve():
                        continue
                    self._starve(exc)
                    return
                log.warning("%s: accept failed: %s", self.name, exc)
                continue
            try:
                self._accepted(conn)
            except Exception:
                log.exception("%s: handling a new connection failed", self.name)
                self._drop(conn)
        if self._starved:
            self._starved = False
            log.warning("%s: accepting again", self.name)

    def _starve(self, exc: OSError) -> None:
        """The listening socket stays readable: stop watching it and look again later."""
        if not self._starved:
            self._starved = True
            log.warning(
                "%s: accept failed (%s); pausing %.1fs at a time until it works again",
                self.name,
                exc.strerror,
                self.retry_delay,
            )
        assert self._loop is not None
        self._watch(False)
        self._retry = self._loop.call_later(self.retry_delay, self._resume)

    def _evict_oldest(self, exc: OSError) -> bool:
        """Close the oldest connection still silent, if any: it is the cheapest to lose, and its
        descriptor lets a client that waits in the backlog in."""
        oldest = next((c for c in self._pending if c is not self._on_reserve), None)
        if oldest is None:
            return False
        self._evicted += 1
        if self._evicted == 1 or self._evicted % 1000 == 0:
            log.warning(
                "%s: accept failed (%s); closed the oldest connection that sent nothing yet "
                "(%d so far)",
                self.name,
                exc.strerror,
                self._evicted,
            )
        self._drop(oldest)
        return True

    def _backlog_waiting(self) -> bool:
        """True if a connection waits to be accepted (poll needs no new descriptor)."""
        poller = select.poll()
        poller.register(self.sock.fileno(), select.POLLIN)
        try:
            return bool(poller.poll(0))
        except OSError:
            return True

    def _open_reserve(self) -> None:
        if self._refuse is not None and self._reserve < 0 and self._on_reserve is None:
            with contextlib.suppress(OSError):
                self._reserve = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)

    def _accept_on_reserve(self) -> bool:
        """Accept one connection in the reserve's place; it is refused once it has spoken."""
        if self._reserve < 0 or self._loop is None:
            return False
        os.close(self._reserve)
        self._reserve = -1
        try:
            conn, _ = self.sock.accept()
        except OSError:
            self._open_reserve()
            return False
        conn.setblocking(False)
        self._on_reserve = conn
        # Refused only after its first message is read: closing a unix socket with unread
        # data makes the peer's next read fail with ECONNRESET instead of showing why.
        self._pending[conn] = self._loop.call_later(self.timeout, self._expire, conn)
        self._loop.add_reader(conn.fileno(), self._on_readable, conn)
        self._on_readable(conn)
        return True

    def _resume(self) -> None:
        self._retry = None
        self._watch(True)

    def _accepted(self, conn: socket.socket) -> None:
        assert self._loop is not None
        conn.setblocking(False)
        if self._admit is not None and not self._admit(conn):
            conn.close()
            return
        if len(self._pending) >= self.max_pending:
            self._refused += 1
            if self._refused == 1 or self._refused % 1000 == 0:
                log.warning(
                    "%s: %d connections already wait for their first message; closed %d more",
                    self.name,
                    len(self._pending),
                    self._refused,
                )
            conn.close()
            return
        self._pending[conn] = self._loop.call_later(self.timeout, self._expire, conn)
        self._loop.add_reader(conn.fileno(), self._on_readable, conn)
        self._on_readable(conn)  # the message often arrives with the connection

    def _on_readable(self, conn: socket.socket) -> None:
        if conn not in self._pending:
            return
        try:
            result = self._receive(conn)
        except (BlockingIOError, InterruptedError):
            return
        except EOFError:
            self._drop(conn)  # the peer hung up: nothing worth a log line
            return
        except Exception as exc:
            log.warning("%s: %s", self.name, exc)
            self._drop(conn)
            return
        self._forget(conn)
        if conn is self._on_reserve and self._refuse is not None:
            try:
                self._refuse(conn, result)
            finally:
                conn.close()
                self._reserve_back()
            return
        self._deliver(conn, result)

    def _expire(self, conn: socket.socket) -> None:
        if conn in self._pending:
            log.info(
                "%s: no first message within %gs; closing the connection", self.name, self.timeout
            )
            self._drop(conn)

    def _forget(self, conn: socket.socket) -> None:
        timer = self._pending.pop(conn, None)
        if timer is not None:
            timer.cancel()
        # Unregister before the fd is closed or handed on: its number may be reused at once.
        if self._loop is not None and conn.fileno() >= 0:
            with contextlib.suppress(Exception):
                self._loop.remove_reader(conn.fileno())

    def _drop(self, conn: socket.socket) -> None:
        self._forget(conn)
        conn.close()
        if conn is self._on_reserve:
            self._reserve_back()

    def _reserve_back(self) -> None:
        self._on_reserve = None
        self._open_reserve()
