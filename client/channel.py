"""The asyncio connection to the server: connect and greet, then concurrent requests matched to
their replies by id. A thin shell over ``client/core.py``, which decides what messages mean."""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from typing import TYPE_CHECKING, Any

from tmuxish import protocol
from tmuxish.client import core
from tmuxish.errors import (
    PermissionDenied,
    ServerGone,
    ServerNotRunning,
    ServerUpgrading,
    TmuxishError,
)
from tmuxish.paths import ensure_private_dir, is_default_dir
from tmuxish.sockets import refused

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path


class Stream:
    """A greeted connection: its reader and writer, decoder, and messages not yet consumed."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        server_info: dict[str, Any],
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.decoder = protocol.Decoder()
        self.pending: deque[protocol.Message] = deque()
        self.server_info = server_info

    async def read_more(self) -> None:
        """One read into ``pending``; ServerGone when the server closed or failed."""
        try:
            data = await self.reader.read(core.RECV_SIZE)
        except OSError as exc:
            raise core.lost_connection(exc) from exc
        self.pending.extend(core.server_messages(self.decoder, data))

    async def send(self, frame: bytes) -> None:
        try:
            self.writer.write(frame)
            await self.writer.drain()
        except OSError as exc:  # ConnectionError included
            raise core.lost_connection(exc) from exc

    def close(self) -> None:
        self.writer.close()

    async def wait_closed(self) -> None:
        with contextlib.suppress(Exception):
            await self.writer.wait_closed()


async def open_stream(path: Path, timeout: float | None) -> Stream:
    """Connect to our own user's server on ``path`` and greet it."""
    if is_default_dir(path.parent):
        ensure_private_dir(path.parent)
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_unix_connection(str(path)), timeout)
    except FileNotFoundError as exc:
        raise ServerNotRunning(f"no server running on {path}") from exc
    except ConnectionRefusedError as exc:
        raise refused(str(path)) from exc
    except PermissionError as exc:
        raise PermissionDenied(f"cannot connect to {path}: permission denied") from exc
    except TimeoutError as exc:
        raise ServerNotRunning(f"cannot connect to {path}: timed out") from exc
    except OSError as exc:
        raise ServerNotRunning(f"cannot connect to {path}: {exc.strerror or exc}") from exc
    stream = Stream(reader, writer, {})
    try:
        core.check_owner(writer.get_extra_info("socket"), path)
        await stream.send(core.hello())
        while not stream.pending:
            try:
                await asyncio.wait_for(stream.read_more(), timeout)
            except TimeoutError as exc:
                raise core.no_answer() from exc
        stream.server_info = core.check_hello(stream.pending.popleft())
    except BaseException:
        stream.close()
        raise
    return stream


async def open_when_up(
    path: Path, timeout: float | None, limit: float, failure: Callable[[], TmuxishError]
) -> Stream:
    """Connect as soon as a server answers on ``path``; ``failure()`` after ``limit`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    delay = 0.002
    while True:
        try:
            return await open_stream(path, timeout)
        except (ServerNotRunning, ServerUpgrading):
            if loop.time() > deadline:
                raise failure() from None
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.1)


async def start_server(path: Path, timeout: float | None) -> Stream:
    """Start a server on ``path`` and connect to it."""
    from tmuxish.client.autostart import START_TIMEOUT, _last_log_line, spawn_server

    if is_default_dir(path.parent):
        ensure_private_dir(path.parent)
    spawn_server(path)
    return await open_when_up(
        path,
        timeout,
        START_TIMEOUT,
        lambda: ServerNotRunning(f"the server did not start on {path}{_last_log_line(path)}"),
    )


class Channel:
    """The asyncio control connection: concurrent requests matched to replies by id."""

    def __init__(self, stream: Stream) -> None:
        self.stream = stream
        self.server_info = stream.server_info
        self.closed: TmuxishError | None = None
        self._requests = core.Requests()
        self._futures: dict[int, asyncio.Future[Any]] = {}
        self.task = asyncio.ensure_future(self._read_loop())

    async def _read_loop(self) -> None:
        error: TmuxishError
        stream = self.stream
        try:
            while True:
                await stream.read_more()
                while stream.pending:
                    self._dispatch(stream.pending.popleft())
        except TmuxishError as exc:
            error = exc
        except Exception as exc:  # never leave requests waiting forever
            error = ServerGone(f"client error reading from the server: {exc!r}")
        self._fail(error)

    def _dispatch(self, message: protocol.Message) -> None:
        answer = self._requests.answer(message)
        if answer is None:
            return
        req_id, result, error = answer
        fut = self._futures.pop(req_id, None)
        if fut is None or fut.done():
            return
        if error is not None:
            fut.set_exception(error)
        else:
            fut.set_result(result)

    def _fail(self, error: TmuxishError) -> None:
        self.closed = error
        futures, self._futures = self._futures, {}
        for fut in futures.values():
            if not fut.done():
                fut.set_exception(type(error)(str(error)))
        self.stream.close()

    async def request(self, command: str, args: dict[str, Any]) -> Any:
        if self.closed is not None:
            raise type(self.closed)(str(self.closed))
        req_id, frame = self._requests.frame(command, args)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._futures[req_id] = fut
        try:
            await self.stream.send(frame)
            return await fut
        finally:
            self._futures.pop(req_id, None)

    async def close(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self.task
        if self.closed is None:
            self._fail(ServerGone("the client closed the connection"))
        await self.stream.wait_closed()
