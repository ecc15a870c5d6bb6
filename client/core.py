"""The client core, free of I/O: what the blocking and the asyncio clients share.

Both shells (``client/connection.py`` with ``client/sync_client.py``, and
``client/async_client.py``) only move bytes; this module decides what the bytes mean: the
greeting and its check, which reply answers which request, how an attachment stands, and the
one wording of every way the connection to the server can fail.

Kept cheap to import (no typing, no asyncio): the everyday commands' fast path goes through it.
"""

from __future__ import annotations

# _socket, not socket: socket imports enum and selectors, ~7 ms of `tmuxish ls` (issue 15).
import _socket
import os
import sys

from tmuxish import __version__, protocol
from tmuxish.errors import (
    PermissionDenied,
    ServerGone,
    ServerUpgrading,
    TmuxishError,
    VersionMismatch,
    from_code,
)

#: Not typing.TYPE_CHECKING: importing typing (and re with it) costs `tmuxish ls` ~15 ms.
TYPE_CHECKING = False

if TYPE_CHECKING:
    from typing import Protocol

    class MessageQueue(Protocol):
        """What ``StreamState.take`` consumes: a deque, or a ``Pending``."""

        def __len__(self) -> int: ...
        def popleft(self) -> protocol.Message: ...

    from typing import Any

    from tmuxish.client.session_info import SessionInfo

#: How much one read from the server asks for.
RECV_SIZE = 262144

# -- how a connection fails: one wording each -------------------------------------------------


def lost_connection(exc: BaseException) -> ServerGone:
    """A read or write on the server connection failed (reset, broken pipe, ...)."""
    detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return ServerGone(f"lost connection to the server: {detail or type(exc).__name__}")


def server_closed() -> ServerGone:
    return ServerGone("the server closed the connection")


def server_garbage(exc: protocol.ProtocolError) -> ServerGone:
    return ServerGone(f"the server sent garbage: {exc}")


def no_answer(command: str | None = None) -> ServerGone:
    """The server accepted the connection but did not answer within the deadline."""
    what = "" if command is None else f" {command!r}"
    return ServerGone(f"the server did not answer{what} in time")


#: The event an events stream adds where it reconnected: events in the gap may be missing.
RECONNECTED_EVENT = "stream-reconnected"


def reconnected_event(cause: str) -> dict[str, Any]:
    """What the events stream yields after following the server through ``cause`` ("upgrade"
    or "crash"), in the server's event shape."""
    import time

    now = time.time()
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now))
    millis = int(now % 1 * 1000)
    return {
        "type": RECONNECTED_EVENT,
        "session": None,
        "name": None,
        "time": f"{stamp}.{millis:03d}+00:00",
        "cause": cause,
    }


def server_may_return(socket_path: object) -> bool:
    """After a connection closed with no word: a kept server that crashed leaves its socket
    (its keeper holds it and starts another); one that stops on purpose removes it first."""
    return socket_path is not None and os.path.exists(str(socket_path))


def upgrading() -> ServerUpgrading:
    return ServerUpgrading("the server is upgrading; connect again")


def server_messages(decoder: protocol.Decoder, data: bytes) -> list[protocol.Message]:
    """The messages in one read from the server; ServerGone if it closed or sent garbage."""
    if not data:
        raise server_closed()
    try:
        return list(decoder.feed(data))
    except protocol.ProtocolError as exc:
        raise server_garbage(exc) from exc


# -- who is listening ---------------------------------------------------------------------------

#: struct ucred: pid, uid, gid (three C ints).
_UCRED_SIZE = 12


def check_owner(sock: _socket.socket, path: object) -> None:
    """Refuse a server run by another user, before a byte of ours reaches it.

    SO_PEERCRED on a connected unix socket names whoever called ``listen()``: with ``-S`` in a
    shared directory, another user's server squatting on the path would otherwise receive our
    terminal and environment. Our own uid and root are trusted.
    """
    cred = sock.getsockopt(_socket.SOL_SOCKET, _socket.SO_PEERCRED, _UCRED_SIZE)
    uid = int.from_bytes(cred[4:8], sys.byteorder)
    if uid not in (os.getuid(), 0):
        raise PermissionDenied(
            f"the server on {path} belongs to uid {uid}, not to you (uid {os.getuid()}); "
            "refusing to talk to it"
        )


# -- the greeting -------------------------------------------------------------------------------


def hello() -> bytes:
    return protocol.hello({"pid": os.getpid(), "software": f"tmuxish {__version__}"})


def check_hello(message: protocol.Message, any_version: bool = False) -> dict[str, Any]:
    """The server's info from its HELLO; the error it sent, or why its greeting is no good.

    ``any_version``: a server of another protocol version is accepted (for
    ``protocol.VERSIONLESS_COMMANDS``; see :func:`version_mismatch`)."""
    if message[0] == protocol.ERROR:
        raise from_code(message[2], message[3])
    if message[0] == protocol.EVENT and message[1] == protocol.UPGRADE_EVENT:
        raise upgrading()
    if message[0] != protocol.HELLO:
        raise ServerGone("the server did not greet us")
    if message[1] != protocol.PROTOCOL_VERSION and not any_version:
        raise version_mismatch(message[1])
    info: dict[str, Any] = message[2]
    return info


def version_mismatch(theirs: int) -> VersionMismatch:
    return VersionMismatch(
        protocol.version_mismatch_text(protocol.PROTOCOL_VERSION, theirs, "client")
    )


# -- requests and replies -----------------------------------------------------------------------


class Requests:
    """Request ids, and which message answers which request."""

    def __init__(self) -> None:
        self._next_id = 1

    def frame(self, command: str, args: dict[str, Any]) -> tuple[int, bytes]:
        """A fresh id and the REQUEST frame that carries it."""
        req_id = self._next_id
        self._next_id += 1
        return req_id, protocol.request(req_id, command, args)

    @staticmethod
    def answer(message: protocol.Message) -> tuple[int, Any, TmuxishError | None] | None:
        """(request id, result, error) if ``message`` answers a request, else None.

        A connection-wide failure (an ERROR without an id, or the server going away for an
        upgrade) raises: every request on the connection fails with it.
        """
        kind = message[0]
        if kind == protocol.REPLY:
            return message[1], message[2], None
        if kind == protocol.ERROR:
            error = from_code(message[2], message[3])
            if message[1] is None:
                raise error
            return message[1], None, error
        if kind == protocol.EVENT and message[1] == protocol.UPGRADE_EVENT:
            raise upgrading()
        return None


# -- an attachment ------------------------------------------------------------------------------


class Pending(list[protocol.Message]):
    """Messages read but not yet taken, oldest first, with deque's names for the two ends.

    A list, not a collections.deque: importing collections costs `tmuxish ls` ~1.7 ms (issue 15),
    and a blocking connection holds a handful of messages at a time.
    """

    def popleft(self) -> protocol.Message:
        return self.pop(0)

    def appendleft(self, message: protocol.Message) -> None:
        self.insert(0, message)


class StreamState:
    """Turns the messages of an attached connection into output chunks and an end state."""

    def __init__(self, reset: bytes = b"") -> None:
        self.exit_code: int | None = None
        self.detach_reason: str | None = None
        #: Bytes that undo the terminal modes the program turned on.
        self.reset = reset

    @property
    def ended(self) -> bool:
        return self.exit_code is not None or self.detach_reason is not None

    def take(self, pending: MessageQueue) -> bytes:
        """Consume ``pending``; return the output it held (joined), noting exit and detach."""
        chunks: list[bytes] = []
        while pending and not self.ended:
            message = pending.popleft()
            kind = message[0]
            if kind == protocol.OUTPUT:
                chunks.append(message[1])
            elif kind == protocol.EXITED:
                self.exit_code = message[1]
            elif kind == protocol.DETACHED:
                self.detach_reason = message[1]
            elif kind == protocol.EVENT:
                if message[1] == protocol.RESET_EVENT and isinstance(message[2], dict):
                    data = message[2].get("data")
                    if isinstance(data, bytes):
                        self.reset = data
            elif kind == protocol.ERROR and message[1] is None:
                raise from_code(message[2], message[3])
            # Anything else (a late reply) does not concern the stream.
        if len(chunks) == 1:
            return chunks[0]
        return b"".join(chunks)


class StreamView:
    """What both attach streams expose about how the attachment stands."""

    def __init__(self, session: SessionInfo, initial: bytes, reset: bytes) -> None:
        self.session = session
        self._state = StreamState(reset)
        self._initial = initial
        self._closed = False

    @property
    def exit_code(self) -> int | None:
        return self._state.exit_code

    @property
    def detach_reason(self) -> str | None:
        return self._state.detach_reason

    @property
    def ended(self) -> bool:
        return self._state.ended

    @property
    def reset(self) -> bytes:
        """Bytes that undo the terminal modes the program turned on (to restore a terminal)."""
        return self._state.reset

    def take_initial(self) -> bytes:
        """The repaint the attach reply carried, once; then nothing."""
        chunk, self._initial = self._initial, b""
        return chunk
