"""The asyncio API client, ``tmuxish.Client``, and its attach stream: thin shells over
``client/channel.py`` (bytes) and ``client/core.py`` (what they mean).

Imported only when ``Client`` is used: asyncio costs the everyday commands ~110 ms.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from tmuxish import protocol
from tmuxish.client import core
from tmuxish.client.channel import Channel, Stream, open_stream, open_when_up, start_server
from tmuxish.client.core import StreamView
from tmuxish.client.session_info import (
    Keys,
    Pattern,
    SessionInfo,
    SocketPath,
    Target,
    attach_args,
    compile_pattern,
    exited_error,
    new_args,
    socket_path_of,
    split_attach_reply,
    timeout_error,
)
from tmuxish.client.sync_client import DEFAULT_TIMEOUT, UPGRADE_TIMEOUT
from tmuxish.errors import (
    ServerGone,
    ServerNotRunning,
    ServerUpgrading,
    SessionNotFound,
    TmuxishError,
)
from tmuxish.keynames import send_args

if TYPE_CHECKING:
    from types import TracebackType


class AttachStream(StreamView):
    """An asyncio attachment: ``async for chunk in stream`` yields output bytes.

    ``await write(data)`` types into the session, ``await resize(cols, rows)`` reports a size,
    ``await detach()`` leaves the session running. Iteration ends when the program exits
    (``exit_code`` is set) or the attachment ends (``detach_reason``). The first chunk is the
    repaint of the current screen unless the stream was opened with ``repaint=False``.
    ``async with`` detaches on exit.
    """

    def __init__(self, stream: Stream, session: SessionInfo, initial: bytes, reset: bytes) -> None:
        super().__init__(session, initial, reset)
        self._stream = stream

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
            return self.take_initial()
        while True:
            chunk = self._state.take(self._stream.pending)
            if chunk:
                return chunk
            if self._state.ended or self._closed:
                return None
            await self._stream.read_more()

    async def _send(self, frame: bytes) -> None:
        if self._closed:
            raise ServerGone("the stream is closed")
        await self._stream.send(frame)

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
        if self._closed:
            return
        if not self._state.ended:
            try:
                await self._send(protocol.detach())
                async with asyncio.timeout(timeout):
                    while await self.read() is not None:
                        pass
            except (TmuxishError, TimeoutError):
                pass
        await self.close()

    async def close(self) -> None:
        """Drop the connection (the server detaches us)."""
        if self._closed:
            return
        self._closed = True
        self._stream.close()
        await self._stream.wait_closed()

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
        self.socket_path = socket_path_of(socket_path, socket_name)
        self.autostart = autostart
        self.timeout = timeout
        self._channel: Channel | None = None
        self._lock: asyncio.Lock | None = None

    async def _connect(self, start: bool, after_upgrade: bool = False) -> Channel:
        """The control channel, connecting if there is none (``after_upgrade``: wait for the
        re-executed server to answer)."""
        if self._channel is not None and self._channel.closed is None:
            return self._channel
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._channel is not None and self._channel.closed is None:
                return self._channel  # another request connected meanwhile
            if self._channel is not None:
                await self._channel.close()
            path = self.socket_path
            if after_upgrade:
                stream = await open_when_up(
                    path,
                    self.timeout,
                    UPGRADE_TIMEOUT,
                    lambda: ServerNotRunning(f"no server came back on {path} after its upgrade"),
                )
            else:
                try:
                    stream = await open_stream(path, self.timeout)
                except ServerNotRunning:
                    if not (start and self.autostart):
                        raise
                    stream = await start_server(path, self.timeout)
            self._channel = Channel(stream)
            return self._channel

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
        channel = await self._connect(start)
        if command == "wait" or self.timeout is None:
            return await channel.request(command, args)
        try:
            return await asyncio.wait_for(channel.request(command, args), self.timeout)
        except TimeoutError:
            raise core.no_answer(command) from None

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
        """Wait until the program exits; its exit code. TimeoutError after ``timeout``.

        Survives `tmuxish server upgrade`: the session lives on in the new server, so this
        connects to it and keeps waiting.
        """
        async with asyncio.timeout(timeout):
            while True:
                try:
                    return int(await self.request("wait", target=target))
                except ServerUpgrading:
                    await self._connect(False, after_upgrade=True)

    async def resize(self, target: Target, cols: int, rows: int) -> SessionInfo:
        return SessionInfo.from_dict(
            await self.request("resize", target=target, cols=cols, rows=rows)
        )

    async def kill_server(self) -> None:
        """Stop the server and every session; returns once the server has closed."""
        try:
            channel = await self._connect(False)
        except ServerNotRunning:
            return
        await self.request("kill-server")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(channel.task), self.timeout)
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
        stream = await open_stream(self.socket_path, self.timeout)
        try:
            req_id, frame = core.Requests().frame(
                "attach", attach_args(target, cols, rows, readonly, history)
            )
            await stream.send(frame)
            async with asyncio.timeout(self.timeout):
                while True:
                    while not stream.pending:
                        await stream.read_more()
                    answer = core.Requests.answer(stream.pending.popleft())
                    if answer is not None and answer[0] == req_id:
                        if answer[2] is not None:
                            raise answer[2]
                        info: dict[str, Any] = answer[1]
                        break
        except TimeoutError:
            stream.close()
            raise core.no_answer("attach") from None
        except BaseException:
            stream.close()
            raise
        session, initial, reset = split_attach_reply(info)
        return AttachStream(stream, session, initial if repaint else b"", reset)

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
        regex = compile_pattern(pattern)
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
                    raise exited_error(regex, target)
                try:
                    await asyncio.wait_for(stream.read(), max(0.0, deadline - loop.time()))
                except TimeoutError:
                    raise timeout_error(regex, target, timeout, text) from None
        finally:
            if stream is not None:
                await stream.close()
