"""A blocking connection to the server: handshake and request/response.

Deliberately free of asyncio so that `ls`, `kill`, `send` and `capture` start fast.
"""

from __future__ import annotations

import os
import socket
from collections import deque

from tmuxish import __version__, protocol
from tmuxish.errors import (
    PermissionDenied,
    ServerGone,
    ServerNotRunning,
    TmuxishError,
    VersionMismatch,
    from_code,
)

#: Not typing.TYPE_CHECKING: importing typing (and re with it) costs `tmuxish ls` ~15 ms.
TYPE_CHECKING = False

if TYPE_CHECKING:
    from pathlib import Path
    from typing import Any

RECV_SIZE = 262144


def server_messages(decoder: protocol.Decoder, data: bytes) -> list[protocol.Message]:
    """The messages in one read from the server; ServerGone if it closed or sent garbage."""
    if not data:
        raise ServerGone("the server closed the connection")
    try:
        return list(decoder.feed(data))
    except protocol.ProtocolError as exc:
        raise ServerGone(f"the server sent garbage: {exc}") from exc


class Connection:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.decoder = protocol.Decoder()
        self.pending: deque[protocol.Message] = deque()
        self.server_info: dict[str, Any] = {}
        self._next_id = 1
        #: The server holds our terminal (direct attach) rather than relaying through us.
        self.passed_terminal = False

    @classmethod
    def open(
        cls, path: str | Path, timeout: float | None = 10.0, pass_fds: tuple[int, ...] = ()
    ) -> Connection:
        """Connect and greet; ``pass_fds`` (a terminal for direct attach) ride on the HELLO."""
        conn = cls(cls.dial(path, timeout))
        try:
            conn.handshake(pass_fds)
        except BaseException:
            conn.close()
            raise
        return conn

    @staticmethod
    def dial(path: str | Path, timeout: float | None = 10.0) -> socket.socket:
        """A socket connected to the server on ``path``, not yet greeted."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        sock.settimeout(timeout)
        try:
            sock.connect(str(path))
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            sock.close()
            raise ServerNotRunning(f"no server running on {path}") from exc
        except PermissionError as exc:
            sock.close()
            raise PermissionDenied(f"cannot connect to {path}: permission denied") from exc
        except OSError as exc:
            sock.close()
            raise ServerNotRunning(f"cannot connect to {path}: {exc.strerror or exc}") from exc
        return sock

    def handshake(self, pass_fds: tuple[int, ...] = ()) -> None:
        hello = protocol.hello({"pid": os.getpid(), "software": f"tmuxish {__version__}"})
        if pass_fds:
            try:
                socket.send_fds(self.sock, [hello], list(pass_fds))
            except OSError as exc:
                raise ServerGone(f"lost connection to the server: {exc.strerror or exc}") from exc
            self.passed_terminal = True
        else:
            self.send(hello)
        message = self.recv()
        if message[0] == protocol.ERROR:
            raise from_code(message[2], message[3])
        if message[0] != protocol.HELLO:
            raise ServerGone("the server did not greet us")
        if message[1] != protocol.PROTOCOL_VERSION:
            raise VersionMismatch(
                protocol.version_mismatch_text(protocol.PROTOCOL_VERSION, message[1], "client")
            )
        self.server_info = message[2]

    def fileno(self) -> int:
        return self.sock.fileno()

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send(self, frame: bytes) -> None:
        try:
            self.sock.sendall(frame)
        except OSError as exc:
            raise ServerGone(f"lost connection to the server: {exc.strerror or exc}") from exc

    def read_more(self) -> None:
        """One blocking read into ``pending``; TimeoutError if the socket's timeout passes."""
        try:
            data = self.sock.recv(RECV_SIZE)
        except TimeoutError:
            raise  # an OSError too, but what a timeout means is the caller's call
        except OSError as exc:
            raise ServerGone(f"lost connection to the server: {exc.strerror or exc}") from exc
        self.pending.extend(server_messages(self.decoder, data))

    def recv(self) -> protocol.Message:
        while not self.pending:
            try:
                self.read_more()
            except TimeoutError as exc:
                raise ServerGone("the server did not answer in time") from exc
        return self.pending.popleft()

    def request(self, command: str, /, **args: Any) -> Any:
        req_id = self._next_id
        self._next_id += 1
        self.send(protocol.request(req_id, command, args))
        while True:
            message = self.recv()
            kind = message[0]
            if kind == protocol.REPLY and message[1] == req_id:
                return message[2]
            if kind == protocol.ERROR and message[1] in (req_id, None):
                raise from_code(message[2], message[3])
            if kind in (protocol.OUTPUT, protocol.EVENT):
                # Stream data after an attach reply belongs to the relay; keep it for later.
                self.pending.appendleft(message)
                raise TmuxishError("unexpected stream data while waiting for a reply")
