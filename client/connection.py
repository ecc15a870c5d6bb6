"""A blocking connection to the server: handshake and request/response.

Deliberately free of asyncio so that `ls`, `kill`, `send` and `capture` start fast. What the
bytes mean is decided in ``client/core.py``; this module only moves them.
"""

from __future__ import annotations

# _socket, not socket: socket imports enum and selectors, ~7 ms of `tmuxish ls` (issue 15).
import _socket
import sys

from tmuxish import protocol
from tmuxish.client import core
from tmuxish.client.core import server_messages
from tmuxish.errors import PermissionDenied, ServerNotRunning, TmuxishError
from tmuxish.sockets import refused

#: Not typing.TYPE_CHECKING: importing typing (and re with it) costs `tmuxish ls` ~15 ms.
TYPE_CHECKING = False

if TYPE_CHECKING:
    from pathlib import Path
    from typing import Any

__all__ = ["RECV_SIZE", "Connection", "server_messages"]

RECV_SIZE = core.RECV_SIZE


class Connection:
    def __init__(self, sock: _socket.socket) -> None:
        self.sock = sock
        self.decoder = protocol.Decoder(light=True)
        self.pending = core.Pending()
        self.server_info: dict[str, Any] = {}
        self.requests = core.Requests()
        #: The server holds our terminal (direct attach) rather than relaying through us.
        self.passed_terminal = False
        #: The server's protocol version, when it is not ours: only
        #: ``protocol.VERSIONLESS_COMMANDS`` may be sent.
        self.other_version: int | None = None

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
    def dial(path: str | Path, timeout: float | None = 10.0) -> _socket.socket:
        """A socket connected to our own user's server on ``path``, not yet greeted."""
        sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC)
        sock.settimeout(timeout)
        try:
            sock.connect(str(path))
            core.check_owner(sock, path)
        except FileNotFoundError as exc:
            sock.close()
            raise ServerNotRunning(f"no server running on {path}") from exc
        except ConnectionRefusedError as exc:
            sock.close()
            raise refused(str(path)) from exc
        except PermissionError as exc:
            sock.close()
            raise PermissionDenied(f"cannot connect to {path}: permission denied") from exc
        except TmuxishError:
            sock.close()
            raise
        except OSError as exc:
            sock.close()
            raise ServerNotRunning(f"cannot connect to {path}: {exc.strerror or exc}") from exc
        return sock

    def handshake(self, pass_fds: tuple[int, ...] = ()) -> None:
        hello = core.hello()
        if pass_fds:
            try:
                fds = b"".join(fd.to_bytes(4, sys.byteorder) for fd in pass_fds)
                self.sock.sendmsg([hello], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, fds)])
            except OSError as exc:
                raise core.lost_connection(exc) from exc
            self.passed_terminal = True
        else:
            self.send(hello)
        self._take_greeting()

    def _take_greeting(self) -> None:
        """Read the server's HELLO: its info, and its protocol version when not ours."""
        greeting = self.recv()
        self.server_info = core.check_hello(greeting, any_version=True)
        if greeting[1] != protocol.PROTOCOL_VERSION:
            self.other_version = greeting[1]

    def greet_with(self, command: str, args: dict[str, Any]) -> int:
        """Greet and send one request in the same write, then read the greeting; the request's id.

        One round trip less than ``handshake()`` then ``send_request()`` (~0.2 ms of a
        `tmuxish new -d` that may cost ~11 ms in all, issue 15). The server reads the HELLO
        before the request, so a server of another protocol version refuses the request
        without acting on it, as it would after a separate greeting. A raw OSError means the
        write failed: the server cannot have acted on a request it did not get whole.
        """
        req_id, frame = self.requests.frame(command, args)
        self.sock.sendall(core.hello() + frame)
        self._take_greeting()
        self._check_version(command)
        return req_id

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
            raise core.lost_connection(exc) from exc

    def read_more(self) -> None:
        """One blocking read into ``pending``; TimeoutError if the socket's timeout passes."""
        try:
            data = self.sock.recv(RECV_SIZE)
        except TimeoutError:
            raise  # an OSError too, but what a timeout means is the caller's call
        except OSError as exc:
            raise core.lost_connection(exc) from exc
        self.pending.extend(server_messages(self.decoder, data))

    def recv(self) -> protocol.Message:
        while not self.pending:
            try:
                self.read_more()
            except TimeoutError as exc:
                raise core.no_answer() from exc
        return self.pending.popleft()

    def send_request(self, command: str, args: dict[str, Any]) -> int:
        """Write a request; its id. Once this returns the server may act on it."""
        self._check_version(command)
        req_id, frame = self.requests.frame(command, args)
        self.send(frame)
        return req_id

    def _check_version(self, command: str) -> None:
        """A server of another protocol version serves only the frozen commands."""
        if self.other_version is not None and command not in protocol.VERSIONLESS_COMMANDS:
            raise core.version_mismatch(self.other_version)

    def reply(self, req_id: int) -> Any:
        """Wait for the answer to request ``req_id``: its result, or the error it got."""
        while True:
            message = self.recv()
            answer = self.requests.answer(message)
            if answer is not None:
                if answer[0] != req_id:
                    continue  # a late answer to a request whose caller gave up
                if answer[2] is not None:
                    raise answer[2]
                return answer[1]
            if message[0] in (protocol.OUTPUT, protocol.EVENT):
                # Stream data after an attach reply belongs to the relay; keep it for later.
                self.pending.appendleft(message)
                raise TmuxishError("unexpected stream data while waiting for a reply")

    def request(self, command: str, /, **args: Any) -> Any:
        return self.reply(self.send_request(command, args))
