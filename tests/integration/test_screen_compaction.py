"""A quiet session's screen model compresses its cold history; reads bring it back intact.

The server calls Screen.compact once a session's output has stopped for COMPACT_IDLE, and again
after a read that restored compressed pages (capture --history). Conditions, not sleeps: the
test waits for compact() to have run to completion.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from helpers import DEADLINE, coloured_lines, serving, watched_session

pytest.importorskip("pyghostty")

from tmuxish.server import session as session_mod
from tmuxish.server.daemon import Server
from tmuxish.server.screen import Screen

LINES = 3000


@pytest.fixture
async def compacting_server(
    sock_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[Server, list[bool]]]:
    # Every completed compact() call (False: nothing left to do) lands here.
    done: list[bool] = []
    compact = Screen.compact

    def recording_compact(self: Screen, budget: float = 0.002) -> bool:
        more = compact(self, budget)
        done.append(more)
        return more

    monkeypatch.setattr(Screen, "compact", recording_compact)
    monkeypatch.setattr(session_mod, "COMPACT_IDLE", 0.05)
    async with serving(sock_dir / "s") as srv:
        yield srv, done


async def _until_compacted(done: list[bool], after: int) -> None:
    """Wait for a compact() call after the first ``after`` that reports nothing left to do."""

    async def wait() -> None:
        while not any(more is False for more in done[after:]):
            await asyncio.sleep(0.01)  # polling a counter the server's loop updates

    await asyncio.wait_for(wait(), DEADLINE)


async def test_quiet_session_compacts_and_history_survives(
    compacting_server: tuple[Server, list[bool]],
) -> None:
    srv, done = compacting_server
    c, watcher = await watched_session(srv.socket_path, coloured_lines(LINES))
    await watcher.output_until(b"DONE")
    await _until_compacted(done, 0)

    text = await c.request("capture", target=1, history=True)
    assert [f"line-{i}" for i in range(LINES)] == [
        ln for ln in text.splitlines() if ln.startswith("line-")
    ]
    # The capture read compressed history back in: the session compacts again.
    seen = len(done)
    await _until_compacted(done, seen)
    again = await c.request("capture", target=1, history=True, escapes=True)
    assert "\x1b[" in again and "line-2999" in again
    c.close()
    watcher.close()
