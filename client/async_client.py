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
    target_id,
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
    from collections.abc import AsyncIterator
    from types import TracebackType

    from tmuxish.client.handle import AsyncSessionHandle
    from tmuxish.client.run import OutputSink, RunResult, Sent


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
        if "target" in args:
            args["target"] = target_id(args["target"])
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
    ) -> AsyncSessionHandle:
        """Start a detached session (and the server, if none runs); see ``new_args``. The
        ``SessionInfo`` returned is a handle with the session's methods (``client/handle.py``)."""
        from tmuxish.client.handle import AsyncSessionHandle

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
        info = SessionInfo.from_dict(await self.request("new", start=True, **args))
        return AsyncSessionHandle.bind(info, self)

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

    async def send(self, target: Target, keys: Keys, *, literal: bool = False) -> Sent:
        """Type into a session: bytes as-is, a str as text, a list of key names like tmux
        ``send-keys`` (``["make", "Enter"]``; ``literal`` sends the list as text). Returns the
        number of bytes sent, an int whose ``since`` is the output position at the send (pass it
        to ``wait_for_text(..., since=)``)."""
        from tmuxish.client.run import sent_from_reply

        reply = await self.request("send", target=target, mark=True, **send_args(keys, literal))
        return sent_from_reply(reply)

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
        return await self._attach_request(
            "attach", attach_args(target, cols, rows, readonly, history), repaint
        )

    async def _attach_request(
        self, command: str, args: dict[str, Any], repaint: bool = True
    ) -> AttachStream:
        stream = await open_stream(self.socket_path, self.timeout)
        try:
            req_id, frame = core.Requests().frame(command, args)
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
            raise core.no_answer(command) from None
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
        since: int | None = None,
    ) -> re.Match[str]:
        """Wait until ``pattern`` matches the session's screen (``history``: or its scrollback).

        A str pattern is compiled with ``re.MULTILINE`` so ``^``/``$`` match screen lines. Watches
        the output through a read-only attachment and re-checks the screen after each chunk: no
        polling delay, no sleeps. Raises TimeoutError, or SessionExited if the program exits first.

        ``since`` (what ``send`` returned): match only in the output produced after that send, as
        text (escape sequences dropped, line ends as ``\\n``), never in what was there before.
        """
        if since is not None:
            return await self._wait_for_output(target, pattern, timeout, since)
        target = target_id(target)
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

    expect = wait_for_text

    async def _wait_for_output(
        self, target: Target, pattern: Pattern, timeout: float, since: int
    ) -> re.Match[str]:
        from tmuxish.client.run import OutputText, since_position

        regex = compile_pattern(pattern)
        position = since_position(since)
        assert position is not None
        text = OutputText()
        stream = await self._attach_request(
            "watch", {"target": target_id(target), "since": position}
        )
        try:
            async with asyncio.timeout(timeout):
                while True:
                    chunk = await stream.read()
                    if chunk is None:
                        raise exited_error(regex, target)
                    match = regex.search(text.add(chunk))
                    if match:
                        return match
        except TimeoutError:
            raise timeout_error(regex, target, timeout, text.text) from None
        finally:
            await stream.close()

    async def wait_idle(
        self, target: Target, *, quiet: float = 0.5, timeout: float = DEFAULT_TIMEOUT
    ) -> None:
        """Wait until the session has printed nothing for ``quiet`` seconds; TimeoutError if it
        is still printing after ``timeout``, SessionExited if it exits."""
        from tmuxish.errors import SessionExited

        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        stream = await self.attach(target, readonly=True, repaint=False)
        try:
            last = loop.time()
            while True:
                now = loop.time()
                if now - last >= quiet:
                    return
                if now >= deadline:
                    raise TimeoutError(
                        f"session {target_id(target)} was still printing after {timeout:g}s"
                    )
                try:
                    chunk = await asyncio.wait_for(
                        stream.read(), min(quiet - (now - last), deadline - now)
                    )
                except TimeoutError:
                    continue
                if chunk is None:
                    raise SessionExited(f"session {target_id(target)} exited")
                last = loop.time()
        finally:
            await stream.close()

    async def wait_for_prompt(self, target: Target, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        """Wait until the session's shell shows its prompt (from its OSC 133 marks: bash and
        zsh started by tmuxish have them); for other shells, until no ``run`` is pending and no
        command holds the terminal."""
        channel = await self._connect(False)
        args = {"target": target_id(target), "within": timeout}
        try:
            # The server gives up at the timeout; the client waits a little longer for that.
            shown = await asyncio.wait_for(channel.request("prompt", args), timeout + 5.0)
        except TimeoutError:
            shown = False
        if not shown:
            raise TimeoutError(f"session {target_id(target)} showed no prompt within {timeout:g}s")

    async def run(
        self,
        target: Target | None,
        command: str | Sequence[str],
        *,
        timeout: float | None = None,
        input: bytes | str | None = None,
        output: OutputSink | None = None,
        raw: bool = False,
    ) -> RunResult:
        """Type ``command`` into the session's shell and wait until the shell says it finished;
        see ``SyncClient.run``. ``output`` is called with each chunk as it arrives."""
        from tmuxish.client.run import run_result
        from tmuxish.client.runstream import RunReader, run_args

        args = run_args(target_id(target), command, timeout, input)
        chunks: list[bytes] = []
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        stream = await open_stream(self.socket_path, self.timeout)
        try:
            req_id, frame = core.Requests().frame("run", args)
            reader = RunReader(req_id, output if output is not None else chunks.append, raw)
            await stream.send(frame)
            while True:
                try:
                    while not stream.pending:
                        await stream.read_more()
                    result = reader.take(stream.pending.popleft())
                except ServerGone as exc:
                    if reader.run_id is None:
                        raise
                    # An upgrade or a crash its keeper recovers from: the same command, on the
                    # next server (as SyncClient.run, see runstream.RunStream).
                    stream.close()
                    stream = await self._reopen_after(exc)
                    left = None if deadline is None else max(0.0, deadline - loop.time())
                    follow = {"target": reader.session, "id": reader.run_id, "timeout": left}
                    reader.req_id, frame = core.Requests().frame("run-follow", follow)
                    await stream.send(frame)
                    continue
                if result is not None:
                    break
        finally:
            stream.close()
            await stream.wait_closed()
        return run_result(result, b"".join(chunks), target, timeout)

    async def _reopen_after(self, gone: ServerGone) -> Stream:
        """A stream to the next server, after ``gone``; ``gone`` itself if the server stopped
        on purpose (its socket is gone) or does not come back in time."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + UPGRADE_TIMEOUT
        while True:
            try:
                return await open_stream(self.socket_path, self.timeout)
            except ServerNotRunning:
                raise gone from None
            except ServerGone:
                if loop.time() > deadline:
                    raise gone from None
            await asyncio.sleep(0.05)

    async def events(self) -> AsyncIterator[dict[str, Any]]:
        """What happens on the server, as it happens; see ``SyncClient.events``."""
        while True:
            stream = await open_stream(self.socket_path, self.timeout)
            try:
                _req_id, frame = core.Requests().frame("events", {})
                await stream.send(frame)
                while True:
                    while not stream.pending:
                        await stream.read_more()
                    message = stream.pending.popleft()
                    if message[0] == protocol.EVENT and message[1] == "tmuxish":
                        yield dict(message[2])
                    else:
                        core.Requests.answer(message)  # raises what ends the stream
            except ServerUpgrading:
                cause = "upgrade"
            except ServerGone:
                if not core.server_may_return(self.socket_path):
                    return  # the server stopped: the stream ends
                cause = "crash"
            finally:
                stream.close()
            await self._connect(False, after_upgrade=True)
            yield core.reconnected_event(cause)
