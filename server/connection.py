"""One client connection to the server: handshake, then either requests or one attachment.

A connection is a protocol peer (requests and replies) or, after ``attach``, a session attachment
(the stream; see server/attachment.py), never both: requests on an attached connection are refused.
Every byte a client sends enters through ``data_received``; every failure leaves through ``_fail``
and every close through ``_close``: one exception chokepoint and one disconnect path, so no client
can take the server down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, cast

from tmuxish import protocol
from tmuxish.errors import BadRequest, TmuxishError
from tmuxish.keys import DetachFilter
from tmuxish.server import attachment
from tmuxish.server.attachment import ClientAttachment
from tmuxish.server.console_socket import peer_credentials
from tmuxish.server.policy import ClientSize

if TYPE_CHECKING:
    from tmuxish.server.daemon import Server
    from tmuxish.server.session import Session

log = logging.getLogger(__name__)

#: How long an upgrade waits for the client of a run to read the output it was sent.
RUN_DRAIN = 10.0

#: Transport write buffer water marks per client: above HIGH the client is "behind".
WRITE_HIGH = 1024 * 1024
WRITE_LOW = 256 * 1024
#: What attached clients are told when their session ends without a known exit code.


class Connection(asyncio.Protocol):
    def __init__(self, server: Server, fds: list[int] | None = None, initial: bytes = b"") -> None:
        self.server = server
        self._initial = initial
        #: Descriptors the client passed with its first message (its terminal, for direct attach).
        self.passed_fds = fds or []
        self.transport: asyncio.Transport | None = None
        self.decoder = protocol.Decoder(protocol.MAX_CLIENT_FRAME, release_idle=True)
        self.greeted = False
        #: The client's protocol version, when it is not ours (see protocol.VERSIONLESS_COMMANDS).
        self.other_version: int | None = None
        self.closed = False
        #: The server closed this connection for an upgrade (the client comes back).
        self.upgrading = False
        self.peer_pid = 0
        #: Set while this connection is a session attachment.
        self.attachment: ClientAttachment | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        #: Reasons not to read the client's socket (its program's input queue is full).
        self._read_holds = 0
        #: Told when the transport's write buffer goes over (True) or back under (False) its
        #: high-water mark: streams other than an attachment (a command run).
        self.writing_watchers: list[Callable[[bool], None]] = []

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
        if self.attachment is not None:
            self.attachment.end(attachment.LOST)
        for fd in self.passed_fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self.passed_fds = []
        for task in self._tasks:
            task.cancel()
        self.server.connections.discard(self)
        self.server.limits.watch(self)

    def pause_writing(self) -> None:
        if self.attachment is not None:
            self.attachment.behind_changed(True)
        for watcher in list(self.writing_watchers):
            watcher(True)

    def resume_writing(self) -> None:
        if self.attachment is not None:
            self.attachment.behind_changed(False)
        for watcher in list(self.writing_watchers):
            watcher(False)

    # -- dispatch --------------------------------------------------------------------------------

    def _dispatch(self, message: protocol.Message) -> None:
        kind = message[0]
        if not self.greeted:
            if kind != protocol.HELLO:
                raise protocol.ProtocolError("expected HELLO first")
            version = message[1]
            if version != protocol.PROTOCOL_VERSION:
                # Served, but only the frozen requests (protocol.VERSIONLESS_COMMANDS).
                self.other_version = version
            self.greeted = True
            return
        if self.server.upgrading:
            return  # the next server process answers; this one is only flushing
        if self.other_version is not None and not (
            kind == protocol.REQUEST and message[2] in protocol.VERSIONLESS_COMMANDS
        ):
            text = protocol.version_mismatch_text(
                protocol.PROTOCOL_VERSION, self.other_version, "server"
            )
            self._fail("version-mismatch", text)
            return
        if kind == protocol.REQUEST:
            if self.attachment is not None:
                self._reply_error(
                    message[1],
                    BadRequest(
                        f"this connection is attached to session {self.attachment.session.id}; "
                        "send requests on another connection"
                    ),
                )
                return
            self._request(message[1], message[2], message[3])
            return
        if kind not in (protocol.INPUT, protocol.RESIZE, protocol.DETACH):
            raise protocol.ProtocolError(f"unexpected message type {kind} from a client")
        attached = self.attachment
        if attached is None:
            raise protocol.ProtocolError("stream message while not attached")
        if kind == protocol.INPUT:
            attached.typed(message[1])
        elif kind == protocol.RESIZE:
            attached.resized(message[1], message[2])
        else:
            attached.end(attachment.detached())

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
        """Become an attachment of ``session``; with ``direct`` the server drives the terminal
        the client passed itself. Returns what the client must see first (b"" if direct)."""
        if self.attachment is not None:
            raise BadRequest("this connection is already attached")
        if direct is not None and not self.passed_fds:
            raise BadRequest("direct attach needs the terminal passed with HELLO")
        if direct is not None and not os.isatty(self.passed_fds[0]):
            raise BadRequest("direct attach needs a terminal; the descriptor passed is not one")
        attached = ClientAttachment(
            self, session, ClientSize(cols, rows, time.monotonic(), readonly), readonly
        )
        initial = session.attach(attached, history)
        self.attachment = attached
        if direct is None:
            return initial
        try:
            attached.drive_terminal(self.passed_fds.pop(0), direct, initial)
        except BaseException:
            attached.end(attachment.LOST)
            raise
        return b""

    def attachment_ended(self, attached: ClientAttachment, close: float | None) -> None:
        """The attachment said how it ended; the connection is a protocol peer again, or closes."""
        if self.attachment is attached:
            self.attachment = None
        if close is not None:
            self._close(close)

    def hold_reading(self, hold: bool) -> None:
        """Stop (or start again) reading the client's socket: its input has nowhere to go."""
        self._read_holds = max(0, self._read_holds + (1 if hold else -1))
        transport = self.transport
        if transport is None or self.closed or self._read_holds not in (0, 1):
            return
        with contextlib.suppress(RuntimeError):
            if self._read_holds:
                transport.pause_reading()
            else:
                transport.resume_reading()

    # -- output ----------------------------------------------------------------------------------

    def write_stream(self, header: bytes, data: bytes) -> int:
        """Write an OUTPUT frame (header and payload, not copied); the backlog after it."""
        transport = self.transport
        if transport is None or self.closed:
            return 0
        transport.writelines((header, data))
        return transport.get_write_buffer_size()

    def send_frame(self, frame: bytes) -> None:
        if self.transport is not None and not self.closed:
            self.transport.write(frame)

    def upgrade_notice(self) -> None:
        """The server is re-executing: attached clients reconnect by themselves afterwards."""
        self.upgrading = True
        if self.attachment is not None:
            self.attachment.end(attachment.UPGRADE)
        else:
            self.send_frame(protocol.upgrade_event())
            # A run's output already read from the PTY exists only in our buffer: its client
            # gets the time to read it (and then follows the command on the next server).
            self._close(grace=RUN_DRAIN if self.streaming_run else 1.0)

    @property
    def streaming_run(self) -> bool:
        """A ``run`` streams its command's output on this connection."""
        return bool(self.writing_watchers)

    # -- the way out -----------------------------------------------------------------------------

    def _fail(self, code: str, text: str) -> None:
        log.info("closing connection from pid %d: %s", self.peer_pid, text)
        self.send_frame(protocol.error(None, code, text))
        self._close()

    def _close(self, grace: float = 5.0) -> None:
        """Flush and close; a peer that never reads is cut off after ``grace`` seconds."""
        if self.closed or self.transport is None:
            return
        if self.attachment is not None:
            self.attachment.end(attachment.LOST)  # what the client needed to know is sent
        self.closed = True
        transport = self.transport
        transport.close()
        # close() flushes first; a peer that never reads would pin the buffer forever.
        asyncio.get_running_loop().call_later(grace, transport.abort)
