"""Flow control of `tmuxish web`: a tab that withholds its acknowledgements stops receiving the
stream at about 1 MiB and gets one repaint when it catches up, while a terminal client on the
same session goes on at full speed and the web process's memory stays bounded."""

from __future__ import annotations

import asyncio
import contextlib
import time

import pytest

pytest.importorskip("websockets", reason="the web extra (websockets) is not installed")

from helpers import Cli
from webkit import Web
from websockets.asyncio.client import ClientConnection, connect
from websockets.typing import Origin

from tmuxish.client.async_client import AttachStream, Client
from tmuxish.client.web import wire
from tmuxish.client.web.flow import DEFAULT_LIMIT
from tmuxish.client.web.tab import RESYNC

FLOOD = 16 << 20
PROGRAM = f"while read n; do yes 0123456789abcdef | head -c {FLOOD}; echo END-$n; done"


async def open_tab(web: Web, sid: int) -> ClientConnection:
    return await connect(
        web.ws_url(f"session={sid}&cols=80&rows=24"),
        origin=Origin(web.origin),
        additional_headers={"Cookie": web.cookie},
        open_timeout=10,
    )


async def flood(client: Client, sid: int, n: int, stream: AttachStream) -> tuple[float, int]:
    """Ask the program for one flood; seconds until the terminal client saw all of it."""
    received = 0
    seen = b""
    start = time.monotonic()
    await client.send(sid, f"{n}\n")
    async with asyncio.timeout(60):
        async for chunk in stream:
            received += len(chunk)
            seen = (seen + chunk)[-64:]
            if f"END-{n}".encode() in seen:
                return time.monotonic() - start, received
    raise AssertionError("the stream ended")


async def test_stalled_tab_slows_no_terminal_client(cli: Cli, web: Web) -> None:
    sid = cli.new("sh", "-c", PROGRAM)
    web.login()
    async with Client(cli.socket_path) as client:
        stream = await client.attach(sid, cols=80, rows=24)
        try:
            alone, got = await flood(client, sid, 1, stream)
            assert got >= FLOOD
            rss_before = web.rss()

            withholding = await open_tab(web, sid)  # reads, never acknowledges
            deaf = await open_tab(web, sid)  # does not even read
            counted = 0

            async def count() -> None:
                nonlocal counted
                with contextlib.suppress(Exception):
                    async for message in withholding:
                        assert isinstance(message, bytes) and message[0] == wire.OUTPUT
                        counted += len(message) - 1

            counter = asyncio.create_task(count())
            try:
                stalled, got = await flood(client, sid, 2, stream)
                assert got >= FLOOD
                rss_after = web.rss()
                print(
                    f"terminal client: {FLOOD >> 20} MiB alone in {alone:.2f}s, beside two "
                    f"stalled tabs in {stalled:.2f}s; the withholding tab got {counted} bytes; "
                    f"web RSS {rss_before >> 20} -> {rss_after >> 20} MiB"
                )
                assert stalled < 3 * alone + 2
                assert counted <= DEFAULT_LIMIT + wire.MAX_OUTPUT_FRAME
                assert rss_after - rss_before < 32 << 20
            finally:
                counter.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await counter

            # Catching up brings one repaint of the screen, then the stream again.
            await withholding.send(wire.ack_frame(counted))
            async with asyncio.timeout(15):
                message = await withholding.recv()
            assert isinstance(message, bytes)
            assert message[:1] == bytes((wire.OUTPUT,)) and message[1:].startswith(RESYNC)
            await withholding.close()
            await deaf.close()
        finally:
            await stream.close()


async def test_exit_while_behind_shows_the_last_screen(cli: Cli, web: Web) -> None:
    program = f"read x; yes 0123456789abcdef | head -c {4 << 20}; echo BYE-$((6*7)); exit 5"
    sid = cli.new("sh", "-c", program)
    web.login()
    tab = await open_tab(web, sid)  # never acknowledges: behind when the program exits
    try:
        await tab.send(wire.input_frame(b"\n"))
        frames: list[bytes] = []
        async with asyncio.timeout(30):
            while not frames or frames[-1][0] != wire.EXIT:
                message = await tab.recv()
                assert isinstance(message, bytes)
                frames.append(message)
        assert frames[-1] == wire.exited(5)
        last = frames[-2]
        assert last[0] == wire.OUTPUT and last[1:].startswith(RESYNC)
        assert b"BYE-42" in last
        assert sum(len(f) - 1 for f in frames[:-2]) <= DEFAULT_LIMIT
    finally:
        await tab.close()


async def read_until(tab: ClientConnection, needle: bytes) -> bytes:
    seen = b""
    async with asyncio.timeout(30):
        while needle not in seen:
            message = await tab.recv()
            assert isinstance(message, bytes)
            assert message[0] == wire.OUTPUT, message[:80]
            seen += message[1:]  # small: no acknowledgements needed under the window
    return seen


async def test_a_tab_follows_the_session_through_a_server_upgrade(cli: Cli, web: Web) -> None:
    """Failed before: the tab ended with 'lost the session' when the server upgraded, though
    the session lived on; a terminal client reconnects and repaints, and so does a tab now."""
    sid = cli.new("sh", "-c", "while read l; do echo GOT-$l; done")
    web.login()
    tab = await open_tab(web, sid)
    try:
        await tab.send(wire.input_frame(b"one\n"))
        await read_until(tab, b"GOT-one")
        upgrade = await asyncio.create_subprocess_exec(
            *cli.argv("server", "upgrade"), env=cli.env, stdout=asyncio.subprocess.DEVNULL
        )
        assert await upgrade.wait() == 0
        # The repaint of the fresh attachment comes first, then live output again.
        await read_until(tab, RESYNC)
        await tab.send(wire.input_frame(b"two\n"))
        await read_until(tab, b"GOT-two")
    finally:
        await tab.close()
