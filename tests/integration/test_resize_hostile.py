"""A client that resizes a session with a full history to 10,000 columns and back, over and
over, keeps nobody waiting: ``ls`` from another client is answered throughout.

Before resizes were bounded, every way back from 10,000 columns reflowed all 14,000 lines of
history in one libghostty call (0.3-0.7 s), and a read of many RESIZE frames did all of them in
one loop turn: the batches below held the server for seconds each.
"""

from __future__ import annotations

import asyncio
import re
import sys
import time
from collections.abc import Callable

import pytest
from helpers import DEADLINE, ProtoClient, proto_connect

pytest.importorskip("pyghostty")

from tmuxish import protocol
from tmuxish.server.daemon import Server

LINES = 14_000
#: Longest ``ls`` may take while the resizes go on (seconds): far above a bounded step on a
#: busy machine, far below the ~4 s a batch took before.
LS_LIMIT = 1.5
BATCHES = 3
PAIRS = 10


def program(alt: bool) -> str:
    return (
        "import sys, time\n"
        f"sys.stdout.write(''.join('line-%05d %s\\n' % (i, 'x' * 60) for i in range({LINES})))\n"
        "sys.stdout.write('DONE\\n')\n"
        + ("sys.stdout.write('\\x1b[?1049hIN-VIM')\n" if alt else "")
        + "sys.stdout.flush()\ntime.sleep(600)\n"
    )


async def timed(c: ProtoClient, latencies: list[float]) -> list[dict[str, object]]:
    t0 = time.monotonic()
    listing = await asyncio.wait_for(c.request("ls"), DEADLINE * 3)
    latencies.append(time.monotonic() - t0)
    return listing  # type: ignore[no-any-return]


async def until(condition: Callable[[], object], what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


@pytest.mark.parametrize("alt", [False, True], ids=["primary", "alternate"])
async def test_ls_answers_while_a_client_resizes_a_full_history_to_10000_columns(
    server: Server, alt: bool
) -> None:
    c = await proto_connect(server.socket_path)
    await c.request("new", command=[sys.executable, "-c", program(alt)], cols=80, rows=24)
    feed = server.registry.get(1).screen
    assert feed is not None
    marker = "IN-VIM" if alt else "DONE"
    await until(lambda: marker in feed.screen_text(), "the history to be written")
    await until(lambda: feed.idle, "the model to parse it")
    assert feed.screen.reflow_rows() >= LINES - 24

    attacker = await proto_connect(server.socket_path)
    await attacker.request("attach", target=1, cols=80, rows=24)
    latencies: list[float] = []
    burst = (protocol.resize(10000, 100) + protocol.resize(80, 24)) * PAIRS
    for n in range(BATCHES):
        final = n == BATCHES - 1
        attacker.writer.write(burst + (protocol.resize(81, 24) if final else b""))
        await attacker.writer.drain()
        # Two at least: the first may be read before the batch.
        for _ in range(3):
            await timed(c, latencies)
    while (await timed(c, latencies))[0]["cols"] != 81:
        assert len(latencies) < 1000, "the last resize never arrived"
    assert max(latencies) < LS_LIMIT, [round(x, 2) for x in latencies]

    # The session is intact at its last size: the screen, and the newest history in order.
    reader = await proto_connect(server.socket_path)
    assert marker in await reader.request("capture", target=1)
    info = await reader.request("get", target=1)
    assert (info["cols"], info["rows"]) == (81, 24)
    if not alt:
        history = await reader.request("capture", target=1, history=True)
        numbers = [int(n) for n in re.findall(r"line-(\d{5})", history)]
        assert numbers and numbers == list(range(LINES - len(numbers), LINES))
    reader.close()
    attacker.close()
    c.close()
