"""Repaint plus live output is the whole output, once, while the screen model catches up on a
backlog in bounded steps."""

from __future__ import annotations

import itertools
import re
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from helpers import coloured_lines, proto_connect, serving, watched_session

from tmuxish import protocol
from tmuxish.server import feed as feed_mod
from tmuxish.server.daemon import Server
from tmuxish.server.screen import Screen

LINES = 50000


@pytest.fixture
async def feeding_server(sock_dir: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Server]:
    # A model slower than the relay, as libghostty is on dense colour output: the model falls
    # behind by many chunks, which is what attach has to get right.
    feed = Screen.feed

    def slow_feed(self: Screen, data: bytes) -> None:
        feed(self, data)
        time.sleep(0.005 * len(data) / 65536)  # 5 ms a 64 KiB read

    monkeypatch.setattr(Screen, "feed", slow_feed)
    # This is about catching up on a backlog, not about letting go of one (see
    # test_screen_behind.py): keep the whole flood within the bounds.
    monkeypatch.setattr(feed_mod, "BEHIND_LIMIT", 256 * 1024 * 1024)
    monkeypatch.setattr(feed_mod, "BEHIND_TIME", 3600.0)
    async with serving(sock_dir / "s") as srv:
        yield srv


async def test_attach_mid_flood_loses_and_repeats_nothing(feeding_server: Server) -> None:
    # Coloured lines, written in big blocks: faster than a worker-fed model can parse them.
    c, watcher = await watched_session(feeding_server.socket_path, coloured_lines(LINES))
    # Attach once the flood is well under way, with some history before the repaint.
    await watcher.output_until(b"line-10000")
    info = await c.request("attach", target=1, cols=80, rows=24, history=200)
    client = Screen(80, 24, history_lines=70_000)
    client.feed(info["initial"])
    seen = await c.output_until(b"DONE")
    client.feed(seen)
    numbers = [int(n) for n in re.findall(r"line-(\d+)", client.history_text() + "\n")]
    first = numbers[0]
    assert first > 0, "the attach came before the flood"
    # Consecutive from the first line the client got to the last: nothing lost, nothing twice.
    assert numbers == list(range(first, LINES)), _gap(numbers)
    # And the client's screen is the server's screen.
    reader = await proto_connect(feeding_server.socket_path)
    server_text = await reader.request("capture", target=1)
    reader.close()
    assert client.screen_text().rstrip("\n") == server_text.rstrip("\n")
    c.close()
    watcher.close()


def _gap(numbers: list[int]) -> str:
    for a, b in itertools.pairwise(numbers):
        if b != a + 1:
            return f"after line-{a} came line-{b}"
    return f"ended at line-{numbers[-1]}"


# A flood that takes the model seconds to parse (REP: 65535 characters for 9 bytes), then the
# alternate screen, then a marker; all of it reaches the client long before the model.
ALT_AFTER_FLOOD = (
    "import os, time\n"
    "os.write(1, b'a\\x1b[65535b' * 8000)\n"
    "os.write(1, b'\\x1b[?1049h\\x1b[Hin-alt-screen')\n"
    "time.sleep(60)\n"
)
LEAVE_ALT = (b"\x1b[?1049l", b"\x1b[?1047l", b"\x1b[?47l")


async def test_detach_right_after_a_flood_leaves_the_alternate_screen(server: Server) -> None:
    c = await proto_connect(server.socket_path)
    await c.request("new", command=[sys.executable, "-c", ALT_AFTER_FLOOD], cols=80, rows=24)
    await c.request("attach", target=1, cols=80, rows=24)
    await c.output_until(b"in-alt-screen")
    session = server.registry.get(1)
    assert not session.screen_settled, "the model kept up: the test proves nothing"
    c.writer.write(protocol.encode([protocol.DETACH]))
    reset = b""
    while True:
        message = await c.recv()
        assert message is not None, "closed before DETACHED"
        if message[0] == protocol.EVENT and message[1] == "reset":
            reset = message[2]["data"]
        if message[0] == protocol.DETACHED:
            break
    # The user's terminal is on the alternate screen: the reset must take it off.
    assert any(seq in reset for seq in LEAVE_ALT), reset
    c.close()


async def test_history_limit_is_read_from_the_environment_at_start(
    sock_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TMUXISH_CONFIG", str(sock_dir / "no-config.toml"))
    monkeypatch.setenv("TMUXISH_HISTORY_LIMIT", "2000")
    program = (
        "import sys, time\n"
        "sys.stdout.write(''.join(f'line-{i}\\n' for i in range(12000)) + 'DONE\\n')\n"
        "sys.stdout.flush(); time.sleep(60)\n"
    )
    async with serving(sock_dir / "s") as srv:
        c, watcher = await watched_session(srv.socket_path, program)
        await watcher.output_until(b"DONE")
        history = await c.request("capture", target=1, history=True)
        kept = len(re.findall(r"line-\d+", history))
        # At least the limit, at most a page or two more (the default would keep all 12000).
        assert 2000 <= kept <= 6000, kept
        c.close()
        watcher.close()
