"""A screen model that falls behind a flood lets go of it (issue 3): clients still get every
byte, the session says it is behind, and the model resyncs from the tail of the output once
output pauses or someone attaches, after which the program is made to redraw.

The model is slowed down on purpose (as libghostty is on dense colour output on a busy machine)
and the backlog bound made small, so falling behind is certain rather than a matter of speed.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from helpers import DEADLINE, ProtoClient, coloured_lines, proto_connect, serving, watched_session

pytest.importorskip("pyghostty")

from tmuxish import protocol
from tmuxish.server import feed as feed_mod
from tmuxish.server import session as session_mod
from tmuxish.server.daemon import Server
from tmuxish.server.screen import Screen

LINES = 60000


@pytest.fixture
async def slow_server(sock_dir: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Server]:
    feed = Screen.feed

    def slow_feed(self: Screen, data: bytes) -> None:
        feed(self, data)
        time.sleep(0.002 * len(data) / 65536)  # 2 ms a 64 KiB read

    monkeypatch.setattr(Screen, "feed", slow_feed)
    monkeypatch.setattr(feed_mod, "BEHIND_LIMIT", 256 * 1024)
    async with serving(sock_dir / "s") as srv:
        yield srv


async def _read_until(
    client: ProtoClient, needle: bytes, server: Server, sid: int
) -> tuple[bytes, bool]:
    """Everything up to ``needle``, and whether the session's model was behind meanwhile."""
    chunks: list[bytes] = []
    tail = b""
    behind = False
    while needle not in tail:
        message = await asyncio.wait_for(client.recv(), DEADLINE)
        assert message is not None, f"closed before {needle!r}"
        if message[0] == protocol.OUTPUT:
            chunks.append(message[1])
            tail = tail[-len(needle) :] + message[1]
        behind = behind or server.registry.get(sid).info()["screen_behind"]
    return b"".join(chunks), behind


async def _until(condition: object, what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


async def test_flood_past_the_bound_relays_everything_and_resyncs(slow_server: Server) -> None:
    c = await proto_connect(slow_server.socket_path)
    await c.request("new", command=[sys.executable, "-c", coloured_lines(LINES)], cols=80, rows=24)
    await c.request("attach", target=1, cols=80, rows=24)
    output, was_behind = await _read_until(c, b"DONE", slow_server, 1)
    # The client got every line, in order, once: falling behind costs the model, never a client.
    numbers = [int(n) for n in re.findall(rb"line-(\d+)", output)]
    assert numbers == list(range(LINES))
    assert was_behind, "the slowed model never fell behind: the test proves nothing"
    # Output has paused: the model resyncs from the tail and says so no more.
    session = slow_server.registry.get(1)
    await _until(lambda: not session.info()["screen_behind"], "the model to resync")
    client = Screen(80, 24)
    client.feed(output)
    reader = await proto_connect(slow_server.socket_path)
    assert await reader.request("capture", target=1) == client.screen_text()
    history = await reader.request("capture", target=1, history=True)
    # History holds what it kept before falling behind, then the tail: each run consecutive.
    kept = [int(n) for n in re.findall(r"line-(\d+)", history)]
    assert kept[-1] == LINES - 1
    gaps = [(a, b) for a, b in itertools.pairwise(kept) if b != a + 1]
    assert len(gaps) <= 1, gaps[:5]
    reader.close()
    c.close()


REDRAWER = (
    "import signal, sys, time\n"
    "def winch(*_):\n"
    "    sys.stdout.write('REDRAWN\\n'); sys.stdout.flush()\n"
    "signal.signal(signal.SIGWINCH, winch)\n"
) + coloured_lines(LINES).replace("import sys, time\n", "")


async def test_attach_while_behind_resyncs_and_makes_the_program_redraw(
    slow_server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Only an attach may resync here: the quiet-output timer is pushed out of the way.
    monkeypatch.setattr(session_mod, "COMPACT_IDLE", 600.0)
    c, watcher = await watched_session(slow_server.socket_path, REDRAWER)
    output, _ = await _read_until(watcher, b"DONE", slow_server, 1)
    session = slow_server.registry.get(1)
    assert session.info()["screen_behind"]
    listing = await c.request("ls")
    assert listing[0]["screen_behind"] is True

    info = await c.request("attach", target=1, cols=80, rows=24)
    assert not session.info()["screen_behind"]
    # The repaint is the present screen: the end of the flood, rebuilt from the tail.
    repaint = Screen(80, 24)
    repaint.feed(info["initial"])
    expected = Screen(80, 24)
    expected.feed(output)
    assert repaint.screen_text() == expected.screen_text()
    assert f"line-{LINES - 1}" in repaint.screen_text()
    # And the program was asked to redraw, for what the skipped output may have changed.
    await _read_until(c, b"REDRAWN", slow_server, 1)
    watcher.close()
    c.close()
