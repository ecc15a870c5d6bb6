"""The Python API: ``tmuxish.Client`` (asyncio) and ``tmuxish.SyncClient`` (blocking).

Both speak the wire protocol (``tmuxish.protocol``) directly; nothing shells out to the CLI.
Errors are the ``tmuxish.errors`` classes the CLI reports (``SessionNotFound``, ``NameInUse``,
``ServerNotRunning``, ...). A target is a session id (int, or a string of digits) or a name.

    with SyncClient() as c:                      # default socket, like the CLI
        s = c.new(["sh"], name="calc")           # starts the server if none runs
        c.send(s.id, ["echo $((2+3))", "Enter"])
        c.wait_for_text(s.id, r"^5$", timeout=5)

    async with Client() as c:
        s = await c.new("sh")
        async with await c.attach(s.id) as stream:
            await stream.write(b"exit 3\\n")
            async for chunk in stream:
                ...
        assert stream.exit_code == 3

This module must stay cheap to import and free of asyncio at import time: the CLI's ``ls``,
``kill``, ``send`` and ``capture`` run through ``SyncClient``. Only ``Client`` and
``AttachStream`` import asyncio, when they are used.
"""

from __future__ import annotations

import os
import re
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from tmuxish import __version__, protocol
from tmuxish.client.connection import server_messages
from tmuxish.errors import (
    PermissionDenied,
    ServerGone,
    ServerNotRunning,
    SessionExited,
    SessionNotFound,
    TmuxishError,
    UsageError,
    VersionMismatch,
    from_code,
)
from tmuxish.keynames import send_args
from tmuxish.paths import current_umask, ensure_private_dir, is_default_dir, resolve_socket

if TYPE_CHECKING:
    import asyncio
    from types import TracebackType

    from tmuxish.client.connection import Connection

__all__ = [
    "AttachStream",
    "Client",
    "SessionInfo",
    "SyncAttachStream",
    "SyncClient",
    "Target",
]

#: A session id or name. Strings of digits are ids.
Target = int | str
#: What ``send`` accepts: text (sent literally), key names (tmux ``send-keys`` style) or raw bytes.
Keys = str | Sequence[str] | bytes | bytearray | memoryview
Pattern = str | re.Pattern[str]
SocketPath = str | os.PathLike[str]

RECV_SIZE: Final = 262144
DEFAULT_TIMEOUT: Final = 10.0
#: A connector opens a blocking connection; its argument says whether to start a server.
Connector = Callable[[bool], "Connection"]

_KNOWN_FIELDS: Final = (
    "id",
    "name",
    "command",
    "pid",
    "status",
    "exit_code",
    "clients",
    "cols",
    "rows",
    "created",
    "screen",
    "policy",
)


@dataclass(frozen=True)
class SessionInfo:
    """One session as the server reports it; the fields of ``tmuxish ls --json``."""

    id: int
    name: str | None
    command: tuple[str, ...]
    #: None for a console-socket session whose process the server does not know.
    pid: int | None
    #: "running" or "exited".
    status: str
    #: The program's exit code (128+N for signal N) once it has exited.
    exit_code: int | None
    #: Number of attached clients.
    clients: int
    cols: int
    rows: int
    created: datetime
    #: Whether the session has a screen model (``capture`` and repaint work).
    screen: bool
    #: Window-size policy: latest, smallest or largest.
    policy: str
    #: Fields this version does not know (e.g. ``log`` for a logged session).
    extra: Mapping[str, Any] = field(default_factory=dict, hash=False)

    @property
    def running(self) -> bool:
        return self.status == "running"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SessionInfo:
        created = data.get("created")
        try:
            when = datetime.fromisoformat(created) if isinstance(created, str) else None
        except ValueError:
            when = None
        return cls(
            id=int(data["id"]),
            name=data.get("name"),
            command=tuple(data.get("command") or ()),
            pid=data.get("pid"),
            status=str(data.get("status", "running")),
            exit_code=data.get("exit_code"),
            clients=int(data.get("clients", 0)),
            cols=int(data.get("cols", 0)),
            rows=int(data.get("rows", 0)),
            created=when or datetime.fromtimestamp(0).astimezone(),
            screen=bool(data.get("screen", False)),
            policy=str(data.get("policy", "latest")),
            extra={k: v for k, v in data.items() if k not in _KNOWN_FIELDS},
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON object ``tmuxish ls --json`` prints for this session."""
        return {
            "id": self.id,
            "name": self.name,
            "command": list(self.command),
            "pid": self.pid,
            "status": self.status,
            "exit_code": self.exit_code,
            "clients": self.clients,
            "cols": self.cols,
            "rows": self.rows,
            "created": self.created.isoformat(timespec="seconds"),
            "screen": self.screen,
            "policy": self.policy,
            **self.extra,
        }


# -- shared pure helpers ---------------------------------------------------------------------------


def _socket_path(socket_path: SocketPath | None, socket_name: str | None) -> Path:
    return resolve_socket(os.fspath(socket_path) if socket_path is not None else None, socket_name)


def _default_command() -> list[str]:
    from tmuxish import config

    configured = config.load()["default_command"]
    if configured:
        return list(configured)
    return [os.environ.get("SHELL") or "/bin/sh"]


def new_args(
    command: str | Sequence[str] | None,
    *,
    name: str | None = None,
    cwd: SocketPath | None = None,
    cols: int = 80,
    rows: int = 24,
    env: Mapping[str, str] | None = None,
    inherit_env: bool = True,
    window_size: str | None = None,
) -> dict[str, Any]:
    """The arguments of a ``new`` request, exactly as the CLI sends them.

    A string command is split like a shell would split it (``shlex.split``, no shell features:
    pass ``["sh", "-c", "a | b"]`` for those); None means the configured default command, else
    ``$SHELL``. The session gets this process's environment (unless ``inherit_env`` is false)
    updated with ``env``, and this process's working directory unless ``cwd`` is given.
    """
    if command is None:
        argv = _default_command()
    elif isinstance(command, str):
        import shlex

        argv = shlex.split(command)
    else:
        argv = list(command)
    if not argv or not all(isinstance(a, str) for a in argv):
        raise UsageError("the command must be a non-empty list of strings")
    if type(cols) is not int or type(rows) is not int or cols <= 0 or rows <= 0:
        raise UsageError(f"the size must be positive integers, got {cols!r}x{rows!r}")
    full_env: dict[str, str] = dict(os.environ) if inherit_env else {}
    full_env.pop("TMUXISH", None)
    if env:
        full_env.update(env)
    args: dict[str, Any] = {
        "command": argv,
        "name": name,
        "cwd": os.path.abspath(os.fspath(cwd)) if cwd is not None else os.getcwd(),
        "cols": cols,
        "rows": rows,
        "env": full_env,
        "replace_env": True,
        # The session's files are created as this client would create them, not as the server.
        "umask": current_umask(),
    }
    if window_size is not None:
        args["window_size"] = window_size
    return args


def _compile(pattern: Pattern) -> re.Pattern[str]:
    return re.compile(pattern, re.MULTILINE) if isinstance(pattern, str) else pattern


def _tail(text: str, limit: int = 300) -> str:
    lines = [line.rstrip() for line in text.rstrip().splitlines()]
    tail = "\n".join(lines[-5:])
    return tail[-limit:]


def _timeout_error(
    regex: re.Pattern[str], target: Target, timeout: float, text: str
) -> TimeoutError:
    return TimeoutError(
        f"timed out after {timeout:g}s waiting for {regex.pattern!r} in session {target}; "
        f"the screen ends with:\n{_tail(text)}"
    )


def _exited_error(regex: re.Pattern[str], target: Target) -> SessionExited:
    return SessionExited(f"session {target} exited before {regex.pattern!r} appeared")


def _hello() -> bytes:
    return protocol.hello({"pid": os.getpid(), "software": f"tmuxish {__version__}"})


def _check_hello(message: protocol.Message) -> dict[str, Any]:
    if message[0] == protocol.ERROR:
        raise from_code(message[2], message[3])
    if message[0] != protocol.HELLO:
        raise ServerGone("the server did not greet us")
    if message[1] != protocol.PROTOCOL_VERSION:
        raise VersionMismatch(
            protocol.version_mismatch_text(protocol.PROTOCOL_VERSION, message[1], "client")
        )
    info: dict[str, Any] = message[2]
    return info


class _StreamState:
    """Pure: turns the messages of an attached connection into output chunks and an end state."""

    def __init__(self) -> None:
        self.exit_code: int | None = None
        self.detach_reason: str | None = None
        self.reset = b""

    @property
    def ended(self) -> bool:
        return self.exit_code is not None or self.detach_reason is not None

    def take(self, pending: deque[protocol.Message]) -> bytes:
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
                if message[1] == "reset" and isinstance(message[2], dict):
                    data = message[2].get("data")
                    if isinstance(data, bytes):
                        self.reset = data
            elif kind == protocol.ERROR and message[1] is None:
                raise from_code(message[2], message[3])
            # Anything else (a late reply) does not concern the stream.
        if len(chunks) == 1:
            return chunks[0]
        return b"".join(chunks)


class _StreamView:
    """What both attach streams expose about how the attachment stands."""

    def __init__(self, session: SessionInfo, initial: bytes, reset: bytes) -> None:
        self.session = session
        self._state = _StreamState()
        self._state.reset = reset
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


def _attach_args(
    target: Target | None, cols: int, rows: int, readonly: bool, history: int
) -> dict[str, Any]:
    return {"target": target, "cols": cols, "rows": rows, "readonly": readonly, "history": history}


def _split_attach_reply(info: dict[str, Any]) -> tuple[SessionInfo, bytes, bytes]:
    initial = info.pop("initial", b"") or b""
    reset = info.pop("reset", b"") or b""
    return SessionInfo.from_dict(info), bytes(initial), bytes(reset)


# -- blocking ------------------------------------------------------------------------------------


class SyncAttachStream(_StreamView):
    """A blocking attachment: iterate for output bytes; ``write``, ``resize``, ``detach``.

    Iteration ends when the program exits (``exit_code`` is then set) or the attachment ends
    (``detach_reason``). The first chunk is the repaint of the current screen unless the stream
    was opened with ``repaint=False``.
    """

    def __init__(
        self, conn: Connection, session: SessionInfo, initial: bytes, reset: bytes
    ) -> None:
        super().__init__(session, initial, reset)
        self._conn = conn

    def __iter__(self) -> Iterator[bytes]:
        while True:
            chunk = self.read()
            if chunk is None:
                return
            yield chunk

    def read(self, timeout: float | None = None) -> bytes | None:
        """The next output bytes; None once the stream has ended; TimeoutError after ``timeout``."""
        if self._initial:
            chunk, self._initial = self._initial, b""
            return chunk
        conn = self._conn
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            chunk = self._state.take(conn.pending)
            if chunk:
                return chunk
            if self._state.ended or self._closed:
                return None
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError("no output in time")
                conn.sock.settimeout(remaining)
            else:
                conn.sock.settimeout(None)
            try:
                conn.read_more()
            except TimeoutError:
                raise TimeoutError("no output in time") from None

    def write(self, data: bytes | str) -> None:
        """Type ``data`` into the session (a str is sent as UTF-8)."""
        if isinstance(data, str):
            data = data.encode("utf-8", "surrogateescape")
        self._conn.sock.settimeout(DEFAULT_TIMEOUT)
        self._conn.send(protocol.input_frame(bytes(data)))

    def resize(self, cols: int, rows: int) -> None:
        """Report this client's terminal size (the session's policy decides its size)."""
        self._conn.sock.settimeout(DEFAULT_TIMEOUT)
        self._conn.send(protocol.resize(cols, rows))

    def detach(self, timeout: float = DEFAULT_TIMEOUT) -> None:
        """Leave the session running and end the stream; output still in flight is dropped."""
        if self._closed:
            return
        if not self._state.ended:
            try:
                self._conn.sock.settimeout(DEFAULT_TIMEOUT)
                self._conn.send(protocol.encode([protocol.DETACH]))
                deadline = time.monotonic() + timeout
                while self.read(max(0.0, deadline - time.monotonic())) is not None:
                    pass
            except (TmuxishError, TimeoutError):
                pass
        self.close()

    def close(self) -> None:
        """Drop the connection (the server detaches us)."""
        self._closed = True
        self._conn.close()

    def __enter__(self) -> SyncAttachStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.detach()


class SyncClient:
    """A blocking client on one connection; no asyncio, so it is cheap to import and start.

    ``SyncClient()`` uses the default socket as the CLI does (``$TMUXISH_SOCKET``, else
    ``default`` in the private socket directory); ``socket_path``/``socket_name`` are ``-S``/``-L``.
    It connects on first use; ``new`` starts a server when none answers (``autostart``).
    ``connector`` replaces how connections are opened (e.g. through ssh): it gets ``start`` and
    returns a ``tmuxish.client.connection.Connection``.
    """

    def __init__(
        self,
        socket_path: SocketPath | None = None,
        *,
        socket_name: str | None = None,
        autostart: bool = True,
        timeout: float | None = DEFAULT_TIMEOUT,
        connector: Connector | None = None,
    ) -> None:
        self.socket_path: Path | None = None
        if connector is None:
            self.socket_path = _socket_path(socket_path, socket_name)
        self.autostart = autostart
        self.timeout = timeout
        self._connector = connector
        self._conn: Connection | None = None

    # -- connection ------------------------------------------------------------------------------

    def _open(self, start: bool) -> Connection:
        if self._connector is not None:
            return self._connector(start)
        from tmuxish.client.autostart import connect

        assert self.socket_path is not None
        return connect(self.socket_path, start=start)

    def connection(self, start: bool = False) -> Connection:
        """The control connection, opened if needed (with ``start``: start a server if none)."""
        if self._conn is None:
            self._conn = self._open(start and self.autostart)
        return self._conn

    @property
    def server_info(self) -> dict[str, Any]:
        """What the server said in its HELLO (pid, software)."""
        return self.connection().server_info

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def __enter__(self) -> SyncClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(
        self, command: str, /, *, start: bool = False, timeout: float | None = -1.0, **args: Any
    ) -> Any:
        """Send one protocol request and return its result (``timeout=-1``: the client default)."""
        conn = self.connection(start)
        limit = self.timeout if timeout is not None and timeout < 0 else timeout
        conn.sock.settimeout(limit)
        try:
            return conn.request(command, **args)
        except ServerGone as exc:
            if isinstance(exc.__cause__, TimeoutError) and timeout is not None and timeout >= 0:
                # The caller's own deadline: the connection stays usable (the late reply is
                # recognised by its id and dropped).
                raise TimeoutError(f"{command}: no answer within {timeout:g}s") from None
            self.close()
            raise

    # -- commands --------------------------------------------------------------------------------

    def new(
        self,
        command: str | Sequence[str] | None = None,
        *,
        name: str | None = None,
        cwd: SocketPath | None = None,
        cols: int = 80,
        rows: int = 24,
        env: Mapping[str, str] | None = None,
        inherit_env: bool = True,
        window_size: str | None = None,
    ) -> SessionInfo:
        """Start a detached session (and the server, if none runs); see ``new_args``."""
        args = new_args(
            command,
            name=name,
            cwd=cwd,
            cols=cols,
            rows=rows,
            env=env,
            inherit_env=inherit_env,
            window_size=window_size,
        )
        return SessionInfo.from_dict(self.request("new", start=True, **args))

    def sessions(self) -> list[SessionInfo]:
        """Every session, by id; empty when no server runs."""
        try:
            raw = self.request("ls")
        except ServerNotRunning:
            return []
        return [SessionInfo.from_dict(s) for s in raw]

    def get(self, target: Target | None = None) -> SessionInfo:
        """One session (None: the most recently used)."""
        return SessionInfo.from_dict(self.request("get", target=target))

    def kill(self, target: Target, signal: str | int = "HUP") -> SessionInfo:
        """Send ``signal`` (name like "TERM"/"SIGTERM", or number) to the session's program."""
        return SessionInfo.from_dict(self.request("kill", target=target, signal=signal))

    def rm(self, target: Target, force: bool = False) -> SessionInfo:
        """Forget an exited session (``force``: hang up a running one first)."""
        return SessionInfo.from_dict(self.request("rm", target=target, force=force))

    def rename(self, target: Target, name: str) -> SessionInfo:
        return SessionInfo.from_dict(self.request("rename", target=target, name=name))

    def send(self, target: Target, keys: Keys, *, literal: bool = False) -> int:
        """Type into a session: bytes as-is, a str as text, a list of key names like tmux
        ``send-keys`` (``["make", "Enter"]``; ``literal`` sends the list as text). Returns the
        number of bytes sent."""
        return int(self.request("send", target=target, **send_args(keys, literal)))

    def capture(
        self, target: Target | None = None, history: bool = False, escapes: bool = False
    ) -> str:
        """The session's screen as text (``history``: with scrollback; ``escapes``: colours)."""
        text: str = self.request("capture", target=target, history=history, escapes=escapes)
        return text

    def wait(self, target: Target, timeout: float | None = None) -> int:
        """Block until the program exits; its exit code. TimeoutError after ``timeout``."""
        return int(self.request("wait", target=target, timeout=timeout))

    def resize(self, target: Target, cols: int, rows: int) -> SessionInfo:
        return SessionInfo.from_dict(self.request("resize", target=target, cols=cols, rows=rows))

    def kill_server(self) -> None:
        """Stop the server and every session; returns once the server has closed."""
        try:
            conn = self.connection()
        except ServerNotRunning:
            return
        self.request("kill-server")
        try:
            while True:
                conn.recv()
        except TmuxishError:
            pass
        self.close()

    def attach(
        self,
        target: Target | None = None,
        *,
        cols: int = 0,
        rows: int = 0,
        readonly: bool = False,
        history: int = 0,
        repaint: bool = True,
    ) -> SyncAttachStream:
        """Attach on a connection of its own. ``cols``/``rows`` of 0 leave the size alone;
        ``history`` lines of scrollback precede the repaint; ``repaint=False`` skips both."""
        conn = self._open(False)
        try:
            conn.sock.settimeout(self.timeout)
            info = conn.request("attach", **_attach_args(target, cols, rows, readonly, history))
        except BaseException:
            conn.close()
            raise
        session, initial, reset = _split_attach_reply(info)
        return SyncAttachStream(conn, session, initial if repaint else b"", reset)

    def wait_for_text(
        self,
        target: Target,
        pattern: Pattern,
        timeout: float = DEFAULT_TIMEOUT,
        *,
        history: bool = False,
    ) -> re.Match[str]:
        """Wait until ``pattern`` matches the session's screen (``history``: or its scrollback).

        A str pattern is compiled with ``re.MULTILINE`` so ``^``/``$`` match screen lines. Watches
        the output through a read-only attachment and re-checks the screen after each chunk: no
        polling delay, no sleeps. Raises TimeoutError, or SessionExited if the program exits first.
        """
        regex = _compile(pattern)
        deadline = time.monotonic() + timeout
        stream: SyncAttachStream | None = None
        sid: Target = target
        try:
            try:
                stream = self.attach(target, readonly=True, repaint=False)
                sid = stream.session.id
            except SessionNotFound:
                raise
            except TmuxishError:
                stream = None  # already exited: the screen as it is decides
            while True:
                text = self.capture(sid, history=history)
                match = regex.search(text)
                if match:
                    return match
                if stream is None or stream.ended:
                    raise _exited_error(regex, target)
                try:
                    stream.read(max(0.0, deadline - time.monotonic()))
                except TimeoutError:
                    raise _timeout_error(regex, target, timeout, text) from None
        finally:
            if stream is not None:
                stream.close()


# -- asyncio ---------------------------------------------------------------------------------------


async def _open_stream(
    path: Path, timeout: float | None
) -> tuple[
    asyncio.StreamReader,
    asyncio.StreamWriter,
    protocol.Decoder,
    deque[protocol.Message],
    dict[str, Any],
]:
    """Connect and handshake; (reader, writer, decoder, messages after HELLO, server info)."""
    import asyncio

    if is_default_dir(path.parent):
        ensure_private_dir(path.parent)
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_unix_connection(str(path)), timeout)
    except (FileNotFoundError, ConnectionRefusedError) as exc:
        raise ServerNotRunning(f"no server running on {path}") from exc
    except PermissionError as exc:
        raise PermissionDenied(f"cannot connect to {path}: permission denied") from exc
    except TimeoutError as exc:
        raise ServerNotRunning(f"cannot connect to {path}: timed out") from exc
    except OSError as exc:
        raise ServerNotRunning(f"cannot connect to {path}: {exc.strerror or exc}") from exc
    decoder = protocol.Decoder()
    pending: deque[protocol.Message] = deque()
    try:
        writer.write(_hello())
        while not pending:
            try:
                data = await asyncio.wait_for(reader.read(RECV_SIZE), timeout)
            except TimeoutError as exc:
                raise ServerGone("the server did not answer in time") from exc
            except OSError as exc:
                raise ServerGone(f"lost connection to the server: {exc.strerror or exc}") from exc
            pending.extend(server_messages(decoder, data))
        info = _check_hello(pending.popleft())
    except BaseException:
        writer.close()
        raise
    return reader, writer, decoder, pending, info


class _Channel:
    """The asyncio control connection: concurrent requests matched to replies by id."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        decoder: protocol.Decoder,
        info: dict[str, Any],
    ) -> None:
        import asyncio

        self.reader = reader
        self.writer = writer
        self.decoder = decoder
        self.server_info = info
        self.closed: TmuxishError | None = None
        self._futures: dict[int, asyncio.Future[Any]] = {}
        self._next_id = 1
        self._task = asyncio.ensure_future(self._read_loop())

    async def _read_loop(self) -> None:
        error: TmuxishError
        try:
            while True:
                data = await self.reader.read(RECV_SIZE)
                if not data:
                    error = ServerGone("the server closed the connection")
                    break
                for message in self.decoder.feed(data):
                    self._dispatch(message)
        except protocol.ProtocolError as exc:
            error = ServerGone(f"the server sent garbage: {exc}")
        except TmuxishError as exc:
            error = exc
        except OSError as exc:
            error = ServerGone(f"lost connection to the server: {exc.strerror or exc}")
        except Exception as exc:  # never leave requests waiting forever
            error = ServerGone(f"client error reading from the server: {exc!r}")
        self._fail(error)

    def _dispatch(self, message: protocol.Message) -> None:
        kind = message[0]
        if kind == protocol.REPLY:
            fut = self._futures.pop(message[1], None)
            if fut is not None and not fut.done():
                fut.set_result(message[2])
        elif kind == protocol.ERROR:
            if message[1] is None:
                raise from_code(message[2], message[3])
            fut = self._futures.pop(message[1], None)
            if fut is not None and not fut.done():
                fut.set_exception(from_code(message[2], message[3]))

    def _fail(self, error: TmuxishError) -> None:
        self.closed = error
        futures, self._futures = self._futures, {}
        for fut in futures.values():
            if not fut.done():
                fut.set_exception(type(error)(str(error)))
        self.writer.close()

    async def request(self, command: str, args: dict[str, Any]) -> Any:
        import asyncio

        if self.closed is not None:
            raise type(self.closed)(str(self.closed))
        req_id = self._next_id
        self._next_id += 1
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._futures[req_id] = fut
        try:
            self.writer.write(protocol.request(req_id, command, args))
            await self.writer.drain()
            return await fut
        except (ConnectionError, OSError) as exc:
            raise ServerGone(f"lost connection to the server: {exc}") from exc
        finally:
            self._futures.pop(req_id, None)

    async def close(self) -> None:
        import asyncio
        import contextlib

        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._task
        if self.closed is None:
            self._fail(ServerGone("the client closed the connection"))
        with contextlib.suppress(Exception):
            await self.writer.wait_closed()


class AttachStream(_StreamView):
    """An asyncio attachment: ``async for chunk in stream`` yields output bytes.

    ``await write(data)`` types into the session, ``await resize(cols, rows)`` reports a size,
    ``await detach()`` leaves the session running. Iteration ends when the program exits
    (``exit_code`` is set) or the attachment ends (``detach_reason``). The first chunk is the
    repaint of the current screen unless the stream was opened with ``repaint=False``.
    ``async with`` detaches on exit.
    """

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        decoder: protocol.Decoder,
        pending: deque[protocol.Message],
        session: SessionInfo,
        initial: bytes,
        reset: bytes,
    ) -> None:
        super().__init__(session, initial, reset)
        self._reader = reader
        self._writer = writer
        self._decoder = decoder
        self._pending = pending

    def __aiter__(self) -> AttachStream:
        return self

    async def __anext__(self) -> bytes:
        chunk = await self.read()
        if chunk is None:
            raise StopAsyncIteration
        return chunk

    async def read(self) -> bytes | None:
        """The next output bytes, or None once the stream has ended."""
        if self._initial:
            chunk, self._initial = self._initial, b""
            return chunk
        while True:
            chunk = self._state.take(self._pending)
            if chunk:
                return chunk
            if self._state.ended or self._closed:
                return None
            try:
                data = await self._reader.read(RECV_SIZE)
            except OSError as exc:
                raise ServerGone(f"lost connection to the server: {exc.strerror or exc}") from exc
            self._pending.extend(server_messages(self._decoder, data))

    async def _send(self, frame: bytes) -> None:
        if self._closed:
            raise ServerGone("the stream is closed")
        try:
            self._writer.write(frame)
            await self._writer.drain()
        except (ConnectionError, OSError) as exc:
            raise ServerGone(f"lost connection to the server: {exc}") from exc

    async def write(self, data: bytes | str) -> None:
        """Type ``data`` into the session (a str is sent as UTF-8)."""
        if isinstance(data, str):
            data = data.encode("utf-8", "surrogateescape")
        await self._send(protocol.input_frame(bytes(data)))

    async def resize(self, cols: int, rows: int) -> None:
        """Report this client's terminal size (the session's policy decides its size)."""
        await self._send(protocol.resize(cols, rows))

    async def detach(self, timeout: float = DEFAULT_TIMEOUT) -> None:
        """Leave the session running and end the stream; output still in flight is dropped."""
        import asyncio

        if self._closed:
            return
        if not self._state.ended:
            try:
                await self._send(protocol.encode([protocol.DETACH]))
                async with asyncio.timeout(timeout):
                    while await self.read() is not None:
                        pass
            except (TmuxishError, TimeoutError):
                pass
        await self.close()

    async def close(self) -> None:
        """Drop the connection (the server detaches us)."""
        import contextlib

        if self._closed:
            return
        self._closed = True
        self._writer.close()
        with contextlib.suppress(Exception):
            await self._writer.wait_closed()

    async def __aenter__(self) -> AttachStream:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.detach()


class Client:
    """An asyncio client. Requests on one connection may run concurrently.

    ``Client()`` uses the default socket as the CLI does; ``socket_path``/``socket_name`` are
    ``-S``/``-L``. It connects on first use; ``new`` starts a server when none answers.
    """

    def __init__(
        self,
        socket_path: SocketPath | None = None,
        *,
        socket_name: str | None = None,
        autostart: bool = True,
        timeout: float | None = DEFAULT_TIMEOUT,
    ) -> None:
        self.socket_path = _socket_path(socket_path, socket_name)
        self.autostart = autostart
        self.timeout = timeout
        self._channel: _Channel | None = None
        self._lock: asyncio.Lock | None = None

    async def _connect(self, start: bool) -> _Channel:
        import asyncio

        if self._channel is not None and self._channel.closed is None:
            return self._channel
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._channel is not None and self._channel.closed is None:
                return self._channel
            try:
                reader, writer, decoder, _, info = await _open_stream(
                    self.socket_path, self.timeout
                )
            except ServerNotRunning:
                if not (start and self.autostart):
                    raise
                reader, writer, decoder, info = await self._start_server()
            self._channel = _Channel(reader, writer, decoder, info)
            return self._channel

    async def _start_server(
        self,
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, protocol.Decoder, dict[str, Any]]:
        import asyncio

        from tmuxish.client.autostart import START_TIMEOUT, _last_log_line, spawn_server

        if is_default_dir(self.socket_path.parent):
            ensure_private_dir(self.socket_path.parent)
        spawn_server(self.socket_path)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + START_TIMEOUT
        delay = 0.002
        while True:
            try:
                reader, writer, decoder, _, info = await _open_stream(
                    self.socket_path, self.timeout
                )
                return reader, writer, decoder, info
            except ServerNotRunning:
                if loop.time() > deadline:
                    raise ServerNotRunning(
                        f"the server did not start on {self.socket_path}"
                        f"{_last_log_line(self.socket_path)}"
                    ) from None
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.1)

    @property
    def server_info(self) -> dict[str, Any]:
        """What the server said in its HELLO (pid, software); empty before connecting."""
        return {} if self._channel is None else self._channel.server_info

    async def connect(self, start: bool = False) -> None:
        """Connect now rather than on first use (with ``start``: start a server if none)."""
        await self._connect(start)

    async def close(self) -> None:
        channel, self._channel = self._channel, None
        if channel is not None:
            await channel.close()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def request(self, command: str, /, *, start: bool = False, **args: Any) -> Any:
        """Send one protocol request and return its result."""
        import asyncio

        channel = await self._connect(start)
        if command == "wait" or self.timeout is None:
            return await channel.request(command, args)
        try:
            return await asyncio.wait_for(channel.request(command, args), self.timeout)
        except TimeoutError:
            raise ServerGone(f"the server did not answer {command!r} in time") from None

    # -- commands --------------------------------------------------------------------------------

    async def new(
        self,
        command: str | Sequence[str] | None = None,
        *,
        name: str | None = None,
        cwd: SocketPath | None = None,
        cols: int = 80,
        rows: int = 24,
        env: Mapping[str, str] | None = None,
        inherit_env: bool = True,
        window_size: str | None = None,
    ) -> SessionInfo:
        """Start a detached session (and the server, if none runs); see ``new_args``."""
        args = new_args(
            command,
            name=name,
            cwd=cwd,
            cols=cols,
            rows=rows,
            env=env,
            inherit_env=inherit_env,
            window_size=window_size,
        )
        return SessionInfo.from_dict(await self.request("new", start=True, **args))

    async def sessions(self) -> list[SessionInfo]:
        """Every session, by id; empty when no server runs."""
        try:
            raw = await self.request("ls")
        except ServerNotRunning:
            return []
        return [SessionInfo.from_dict(s) for s in raw]

    async def get(self, target: Target | None = None) -> SessionInfo:
        """One session (None: the most recently used)."""
        return SessionInfo.from_dict(await self.request("get", target=target))

    async def kill(self, target: Target, signal: str | int = "HUP") -> SessionInfo:
        """Send ``signal`` (name like "TERM"/"SIGTERM", or number) to the session's program."""
        return SessionInfo.from_dict(await self.request("kill", target=target, signal=signal))

    async def rm(self, target: Target, force: bool = False) -> SessionInfo:
        """Forget an exited session (``force``: hang up a running one first)."""
        return SessionInfo.from_dict(await self.request("rm", target=target, force=force))

    async def rename(self, target: Target, name: str) -> SessionInfo:
        return SessionInfo.from_dict(await self.request("rename", target=target, name=name))

    async def send(self, target: Target, keys: Keys, *, literal: bool = False) -> int:
        """Type into a session: bytes as-is, a str as text, a list of key names like tmux
        ``send-keys`` (``["make", "Enter"]``; ``literal`` sends the list as text). Returns the
        number of bytes sent."""
        return int(await self.request("send", target=target, **send_args(keys, literal)))

    async def capture(
        self, target: Target | None = None, history: bool = False, escapes: bool = False
    ) -> str:
        """The session's screen as text (``history``: with scrollback; ``escapes``: colours)."""
        text: str = await self.request("capture", target=target, history=history, escapes=escapes)
        return text

    async def wait(self, target: Target, timeout: float | None = None) -> int:
        """Wait until the program exits; its exit code. TimeoutError after ``timeout``."""
        import asyncio

        return int(await asyncio.wait_for(self.request("wait", target=target), timeout))

    async def resize(self, target: Target, cols: int, rows: int) -> SessionInfo:
        return SessionInfo.from_dict(
            await self.request("resize", target=target, cols=cols, rows=rows)
        )

    async def kill_server(self) -> None:
        """Stop the server and every session; returns once the server has closed."""
        import asyncio
        import contextlib

        try:
            channel = await self._connect(False)
        except ServerNotRunning:
            return
        await self.request("kill-server")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(channel._task), self.timeout)
        await self.close()

    async def attach(
        self,
        target: Target | None = None,
        *,
        cols: int = 0,
        rows: int = 0,
        readonly: bool = False,
        history: int = 0,
        repaint: bool = True,
    ) -> AttachStream:
        """Attach on a connection of its own. ``cols``/``rows`` of 0 leave the size alone;
        ``history`` lines of scrollback precede the repaint; ``repaint=False`` skips both."""
        import asyncio

        reader, writer, decoder, pending, _ = await _open_stream(self.socket_path, self.timeout)
        try:
            writer.write(
                protocol.request(1, "attach", _attach_args(target, cols, rows, readonly, history))
            )
            async with asyncio.timeout(self.timeout):
                while True:
                    while not pending:
                        data = await reader.read(RECV_SIZE)
                        if not data:
                            raise ServerGone("the server closed the connection")
                        pending.extend(decoder.feed(data))
                    message = pending.popleft()
                    if message[0] == protocol.REPLY and message[1] == 1:
                        info: dict[str, Any] = message[2]
                        break
                    if message[0] == protocol.ERROR:
                        raise from_code(message[2], message[3])
        except protocol.ProtocolError as exc:
            writer.close()
            raise ServerGone(f"the server sent garbage: {exc}") from exc
        except TimeoutError:
            writer.close()
            raise ServerGone("the server did not answer 'attach' in time") from None
        except BaseException:
            writer.close()
            raise
        session, initial, reset = _split_attach_reply(info)
        return AttachStream(
            reader, writer, decoder, pending, session, initial if repaint else b"", reset
        )

    async def wait_for_text(
        self,
        target: Target,
        pattern: Pattern,
        timeout: float = DEFAULT_TIMEOUT,
        *,
        history: bool = False,
    ) -> re.Match[str]:
        """Wait until ``pattern`` matches the session's screen (``history``: or its scrollback).

        A str pattern is compiled with ``re.MULTILINE`` so ``^``/``$`` match screen lines. Watches
        the output through a read-only attachment and re-checks the screen after each chunk: no
        polling delay, no sleeps. Raises TimeoutError, or SessionExited if the program exits first.
        """
        import asyncio

        regex = _compile(pattern)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        stream: AttachStream | None = None
        sid: Target = target
        try:
            try:
                stream = await self.attach(target, readonly=True, repaint=False)
                sid = stream.session.id
            except SessionNotFound:
                raise
            except TmuxishError:
                stream = None  # already exited: the screen as it is decides
            while True:
                text = await self.capture(sid, history=history)
                match = regex.search(text)
                if match:
                    return match
                if stream is None or stream.ended:
                    raise _exited_error(regex, target)
                try:
                    await asyncio.wait_for(stream.read(), max(0.0, deadline - loop.time()))
                except TimeoutError:
                    raise _timeout_error(regex, target, timeout, text) from None
        finally:
            if stream is not None:
                await stream.close()
