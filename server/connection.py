"""One client connection to the server: handshake, request dispatch, and the attached stream.

Every byte a client sends enters through ``data_received`` and every failure leaves through
``_fail``: one exception chokepoint and one disconnect path, so no client can take the server down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any, cast

from tmuxish import protocol
from tmuxish.errors import BadRequest, TmuxishError
from tmuxish.keys import DetachFilter
from tmuxish.server.console_socket import peer_credentials
from tmuxish.server.policy import ClientSize
from tmuxish.server.terminal import DirectTerminal

if TYPE_CHECKING:
    from tmuxish.server.daemon import Server
    from tmuxish.server.session import Session

log = logging.getLogger(__name__)

#: Transport write buffer water marks per client: above HIGH the client is "behind".
WRITE_HIGH = 1024 * 1024
WRITE_LOW = 256 * 1024


class Connection(asyncio.Protocol):
    def __init__(
        self, server: Server, fds: list[int] | None = None, initial: bytes = b""
    ) -> None:
        self.server = server
        self._initial = initial
        #: Descriptors the client passed with its first message (its terminal, for direct attach).
        self.passed_fds = fds or []
        self.terminal: DirectTerminal | None = None
        self.transport: asyncio.Transport | None = None
        self.decoder = protocol.Decoder(protocol.MAX_CLIENT_FRAME, release_idle=True)
        self.greeted = False
        self.closed = False
        self.peer_pid = 0
        # Attachment state (see session.Attachment).
        self.session: Session | None = None
        self.readonly = False
        self.behind = False
        self.attached_in_alt = False
        self.size = ClientSize(0, 0, 0.0)
        self._behind_since: float | None = None
        self._stall_timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    # -- asyncio.Protocol ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement the interface without subclassing asyncio.Transport.
        self.transport = cast(asyncio.Transport, transport)
        transport = self.transport
        self.server.connections.add(self)
        sock = transport.get_extra_info("socket")
        uid, pid = peer_credentials(sock)
        self.peer_pid = pid or 0
        if uid not in (os.getuid(), 0):
            log.warning("refused connection from uid %s (pid %s)", uid, pid)
            transport.write(
                protocol.error(
                    None,
                    "permission-denied",
                    f"this tmuxish server belongs to uid {os.getuid()}; uid {uid} may not use it",
                )
            )
            self._close()
            return
        transport.set_write_buffer_limits(high=WRITE_HIGH, low=WRITE_LOW)
        transport.write(
            protocol.hello({"pid": os.getpid(), "software": f"tmuxish {self.server.version}"})
        )
        if self._initial:
            initial, self._initial = self._initial, b""
            self.data_received(initial)

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        try:
            for message in self.decoder.feed(data):
                self._dispatch(message)
                if self.closed:
                    break
        except protocol.ProtocolError as exc:
            self._fail("bad-request", f"protocol error: {exc}")
        except Exception:
            log.exception("connection from pid %d: internal error", self.peer_pid)
            self._fail("error", "internal server error (see the server log)")
        # Deadlines for an unfinished handshake or frame, and the server-wide buffer budget.
        self.server.limits.watch(self)

    def eof_received(self) -> bool | None:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._leave_session()
        for fd in self.passed_fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self.passed_fds = []
        for task in self._tasks:
            task.cancel()
        self.server.connections.discard(self)
        self.server.limits.watch(self)

    def pause_writing(self) -> None:
        self.behind = True
        self._behind_since = time.monotonic()
        if self.session is not None:
            self.session.client_behind_changed()
            stall = self.server.stall_timeout
            if stall > 0 and self._stall_timer is None:
                self._stall_timer = asyncio.get_running_loop().call_later(stall, self._stalled)

    def resume_writing(self) -> None:
        self.behind = False
        self._behind_since = None
        if self._stall_timer is not None:
            self._stall_timer.cancel()
            self._stall_timer = None
        if self.session is not None:
            self.session.client_behind_changed()

    # -- dispatch --------------------------------------------------------------------------------

    def _dispatch(self, message: protocol.Message) -> None:
        kind = message[0]
        if not self.greeted:
            if kind != protocol.HELLO:
                raise protocol.ProtocolError("expected HELLO first")
            version = message[1]
            if version != protocol.PROTOCOL_VERSION:
                text = protocol.version_mismatch_text(protocol.PROTOCOL_VERSION, version, "server")
                self._fail("version-mismatch", text)
                return
            self.greeted = True
            return
        if self.server.upgrading:
            return  # the next server process answers; this one is only flushing
        if kind == protocol.REQUEST:
            self._request(message[1], message[2], message[3])
        elif kind == protocol.INPUT:
            if self.session is None:
                raise protocol.ProtocolError("INPUT while not attached")
            if not self.readonly:
                self.size = ClientSize(self.size.cols, self.size.rows, time.monotonic())
                self.session.write_input(message[1])
        elif kind == protocol.RESIZE:
            if self.session is None:
                raise protocol.ProtocolError("RESIZE while not attached")
            self.size = ClientSize(message[1], message[2], time.monotonic(), self.readonly)
            self.session.apply_size()
        elif kind == protocol.DETACH:
            if self.session is None:
                raise protocol.ProtocolError("DETACH while not attached")
            self._detach_now()
        else:
            raise protocol.ProtocolError(f"unexpected message type {kind} from a client")

    def _request(self, req_id: int, command: str, args: dict[str, Any]) -> None:
        handler = self.server.handlers.get(command)
        if handler is None:
            self._reply_error(req_id, BadRequest(f"unknown command {command!r}"))
            return
        try:
            result = handler(self, args)
        except TmuxishError as exc:
            self._reply_error(req_id, exc)
            return
        except (KeyError, TypeError, ValueError) as exc:
            self._reply_error(req_id, BadRequest(f"bad arguments for {command}: {exc}"))
            return
        if isinstance(result, Awaitable):
            task = asyncio.ensure_future(self._await_reply(req_id, result))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        else:
            self.send_frame(protocol.reply(req_id, result))

    async def _await_reply(self, req_id: int, pending: Awaitable[Any]) -> None:
        try:
            result = await pending
        except TmuxishError as exc:
            self._reply_error(req_id, exc)
            return
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("request %d failed", req_id)
            self._reply_error(req_id, TmuxishError("internal server error (see the server log)"))
            return
        self.send_frame(protocol.reply(req_id, result))

    def _reply_error(self, req_id: int | None, exc: TmuxishError) -> None:
        self.send_frame(protocol.error(req_id, exc.code, str(exc)))

    # -- attachment ------------------------------------------------------------------------------

    def attach_to(
        self,
        session: Session,
        cols: int,
        rows: int,
        readonly: bool,
        history: int,
        direct: DetachFilter | None = None,
    ) -> bytes:
        """Attach; with ``direct`` the server drives the terminal the client passed itself."""
        if self.session is not None:
            raise BadRequest("this connection is already attached")
        if direct is not None and not self.passed_fds:
            raise BadRequest("direct attach needs the terminal passed with HELLO")
        if direct is not None and not os.isatty(self.passed_fds[0]):
            raise BadRequest("direct attach needs a terminal; the descriptor passed is not one")
        self.readonly = readonly
        self.size = ClientSize(cols, rows, time.monotonic(), readonly)
        self.session = session
        try:
            initial = session.attach(self, history)
        except BaseException:
            self.session = None
            raise
        if direct is None:
            return initial
        loop = asyncio.get_running_loop()
        fd = self.passed_fds.pop(0)
        try:
            self.terminal = DirectTerminal(
                fd,
                loop,
                direct,
                on_input=self._terminal_input,
                on_detach=self._detach_now,
                on_gone=self._terminal_gone,
                on_behind=self._terminal_behind,
            )
        except BaseException:
            # Popped from passed_fds, so connection_lost would not close it: do it here.
            os.close(fd)
            self._leave_session()
            raise
        self.terminal.write(initial)
        return b""

    def _terminal_input(self, data: bytes) -> None:
        if self.session is not None and not self.readonly:
            self.size = ClientSize(self.size.cols, self.size.rows, time.monotonic())
            self.session.write_input(data)

    def _terminal_behind(self, behind: bool) -> None:
        if behind:
            self.pause_writing()
        else:
            self.resume_writing()

    def _terminal_gone(self) -> None:
        if self.session is not None:
            self._leave_session()
            self.send_frame(protocol.encode([protocol.DETACHED, "terminal gone"]))
        self._end_terminal()

    def _detach_now(self) -> None:
        if self.session is None:
            return
        self._send_reset(self.session)
        self._leave_session()
        self.send_frame(protocol.encode([protocol.DETACHED, "detached"]))

    def _end_terminal(self, last: bytes = b"") -> None:
        terminal, self.terminal = self.terminal, None
        if terminal is not None:
            terminal.finish(last)

    def _leave_session(self) -> None:
        if self._stall_timer is not None:
            self._stall_timer.cancel()
            self._stall_timer = None
        session, self.session = self.session, None
        if session is not None:
            session.detach(self)
        self._end_terminal()

    def send_output(self, header: bytes, data: bytes) -> None:
        if self.terminal is not None:
            self.terminal.write(data)
            if self.terminal is not None and self.terminal.buffered > self.server.max_behind_bytes:
                self.drop("client too slow: output backlog limit reached")
            return
        transport = self.transport
        if transport is None or self.closed:
            return
        transport.writelines((header, data))
        if transport.get_write_buffer_size() > self.server.max_behind_bytes:
            self.drop("client too slow: output backlog limit reached")

    def send_frame(self, frame: bytes) -> None:
        if self.transport is not None and not self.closed:
            self.transport.write(frame)

    def _send_reset(self, session: Session) -> None:
        """Tell the client how to undo the modes the program turned on in its terminal."""
        data = session.reset_modes()
        if self.terminal is not None:
            # We write to the terminal ourselves; the client must not reset it after us.
            self._end_terminal(data or protocol.SANE_MODES)
            self.send_frame(protocol.encode([protocol.EVENT, "reset", {"data": b""}]))
        elif data:
            self.send_frame(protocol.encode([protocol.EVENT, "reset", {"data": data}]))

    def session_exited(self, code: int) -> None:
        if self.session is not None:
            self._send_reset(self.session)
        self.session = None
        self.send_frame(protocol.encode([protocol.EXITED, code]))
        self._close()

    def upgrade_notice(self) -> None:
        """The server is re-executing: attached clients reconnect by themselves afterwards."""
        self._leave_session()
        self.send_frame(protocol.encode([protocol.EVENT, "upgrade", {}]))
        self._close(grace=1.0)

    def drop(self, reason: str) -> None:
        """Detach a client that cannot keep up; the others go on at full speed."""
        log.warning("dropping client pid %d: %s", self.peer_pid, reason)
        self._leave_session()
        self.send_frame(protocol.encode([protocol.DETACHED, reason]))
        self._close(grace=self.server.drop_grace)

    def _stalled(self) -> None:
        self._stall_timer = None
        if self.behind and self.session is not None:
            self.drop(f"client stopped reading for {self.server.stall_timeout:g}s")

    def _fail(self, code: str, text: str) -> None:
        log.info("closing connection from pid %d: %s", self.peer_pid, text)
        self.send_frame(protocol.error(None, code, text))
        self._close()

    def _close(self, grace: float = 5.0) -> None:
        if self.closed or self.transport is None:
            return
        self.closed = True
        self._leave_session()
        transport = self.transport
        transport.close()
        # close() flushes first; a peer that never reads would pin the buffer forever.
        asyncio.get_running_loop().call_later(grace, transport.abort)
