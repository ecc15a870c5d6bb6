"""One browser tab attached to one session: the session's output to the WebSocket under the
tab's flow window, the page's input and size to the session.

Three tasks per tab: one reads the attachment and never waits for the browser (so the server
never sees this client as slow), one sends what the flow window lets through, one reads the
page's frames. A tab that falls behind gets a fresh attachment, whose repaint replaces what it
missed, once it has written everything it was sent.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

from websockets.exceptions import ConnectionClosed

from tmuxish.client import core
from tmuxish.client.web import wire
from tmuxish.client.web.flow import FlowWindow
from tmuxish.errors import SessionNotFound, TmuxishError

if TYPE_CHECKING:
    from websockets.asyncio.server import ServerConnection

    from tmuxish.client.async_client import AttachStream, Client

#: Before a repaint into a terminal that may be mid-sequence: cancel it (CAN), then reset (RIS),
#: since the repaint expects a freshly reset terminal.
RESYNC = b"\x18\x1bc"
#: How long a tab waits for the server to come back after an upgrade or a crash.
REATTACH_WAIT = 15.0


class Tab:
    def __init__(
        self,
        ws: ServerConnection,
        client: Client,
        stream: AttachStream,
        size: tuple[int, int],
        readonly: bool,
        window: FlowWindow,
    ) -> None:
        self.ws = ws
        self.client = client
        self.stream = stream
        self.size = size
        self.readonly = readonly
        self.window = window
        self._wake = asyncio.Event()
        self._ended = asyncio.Event()
        #: Set by the sender each time it has sent everything the window held.
        self._flushed = asyncio.Event()
        #: Set when the tab may have caught up: an ack came, or output found nothing owed.
        self._check = asyncio.Event()
        self._final: bytes | None = None
        self._reader: asyncio.Task[None] | None = None

    async def run(self) -> None:
        """Serve the tab until the page goes away or the attachment ends."""
        sender = asyncio.create_task(self._send_loop())
        self._reader = asyncio.create_task(self._read_loop(self.stream))
        pager = asyncio.create_task(self._page_loop())
        resyncer = asyncio.create_task(self._resync_loop())
        ended = asyncio.create_task(self._ended.wait())
        try:
            await asyncio.wait((ended, pager), return_when="FIRST_COMPLETED")
            if self._final is not None:
                # Let what the window holds reach the page before the ending, within reason.
                self._flushed.clear()
                self._wake.set()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._flushed.wait(), 5)
                with contextlib.suppress(ConnectionClosed):
                    await self.ws.send(self._final)
                    await self.ws.close()
        finally:
            tasks = (sender, self._reader, pager, resyncer, ended)
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            await self.stream.detach(timeout=2)

    async def _read_loop(self, stream: AttachStream) -> None:
        try:
            while True:
                chunk = await stream.read()
                if chunk is None:
                    break
                self.window.offer(chunk)
                self._wake.set()
                if self.window.caught_up:
                    # One chunk larger than the window, with nothing owed: no ack will come.
                    self._check.set()
        except TmuxishError as exc:
            if core.server_may_return(self.client.socket_path) and await self._reattach():
                return  # the server came back (upgrade, crash): a fresh attachment reads on
            self._final = wire.error(f"lost the session: {exc}")
        else:
            if stream.exit_code is not None:
                if self.window.behind:
                    await self._last_screen(stream)
                self._final = wire.exited(stream.exit_code)
            else:
                self._final = wire.error(f"detached: {stream.detach_reason or 'by the server'}")
        self._ended.set()

    async def _send_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while True:
                data = self.window.take(wire.MAX_OUTPUT_FRAME)
                if not data:
                    break
                await self.ws.send(wire.output(data))
            self._flushed.set()

    async def _page_loop(self) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for message in self.ws:
                try:
                    frame = wire.parse(message)
                    if isinstance(frame, wire.Ack):
                        self.window.ack(frame.written)
                    elif isinstance(frame, wire.Input):
                        if not self.readonly:
                            await self.stream.write(frame.data)
                    elif isinstance(frame, wire.Resize):
                        self.size = (frame.cols, frame.rows)
                        await self.stream.resize(frame.cols, frame.rows)
                except (wire.WireError, ValueError) as exc:
                    await self.ws.close(1002, str(exc)[:100])
                    return
                if self.window.caught_up:
                    self._check.set()

    async def _resync_loop(self) -> None:
        while True:
            await self._check.wait()
            self._check.clear()
            if self.window.caught_up:
                await self._resync()

    async def _last_screen(self, stream: AttachStream) -> None:
        """The program exited while the tab was behind: there is no attaching any more, so its
        repaint is the final screen as the screen model has it."""
        try:
            text = await self.client.capture(stream.session.id, escapes=True)
        except TmuxishError:
            return
        screen = text.rstrip("\n").replace("\n", "\r\n").encode("utf-8", "surrogateescape")
        self.window.resume(RESYNC + screen)
        self._wake.set()

    async def _reattach(self) -> bool:
        """The server went away but its socket stayed (`server upgrade`, or a crash its keeper
        recovers from): attach again once it answers, and repaint the tab, as a terminal client
        does. False if it did not come back in time or the session is gone."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + REATTACH_WAIT
        cols, rows = self.size
        while True:
            try:
                fresh = await self.client.attach(
                    self.stream.session.id, cols=cols, rows=rows, readonly=self.readonly
                )
                break
            except SessionNotFound:
                return False
            except TmuxishError:
                if loop.time() > deadline:
                    return False
                await asyncio.sleep(0.1)
        old, self.stream = self.stream, fresh
        self.window.resume(RESYNC + fresh.take_initial())
        self._reader = asyncio.create_task(self._read_loop(fresh))
        self._wake.set()
        with contextlib.suppress(Exception):
            await old.close()
        return True

    async def _resync(self) -> None:
        """Swap in a fresh attachment; its repaint is the tab's next output."""
        cols, rows = self.size
        try:
            fresh = await self.client.attach(
                self.stream.session.id, cols=cols, rows=rows, readonly=self.readonly
            )
        except TmuxishError:
            return  # the session ended meanwhile: the old attachment will say so
        # Stop reading the old attachment before closing it: its end is not the session's.
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        old, self.stream = self.stream, fresh
        self.window.resume(RESYNC + fresh.take_initial())
        self._reader = asyncio.create_task(self._read_loop(fresh))
        self._wake.set()
        await old.close()
