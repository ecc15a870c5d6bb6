"""The event stream (`tmuxish events`, ``SyncClient.events``, ``Client.events``) against a real
server: what happens to sessions arrives in order, as it happens."""

from __future__ import annotations

import asyncio
import json
import os
import select
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from helpers import Cli

from tmuxish import Client, SyncClient


def collect(c: SyncClient, into: list[dict[str, Any]], ready: threading.Event) -> None:
    for event in c.events():
        into.append(event)
        if event["type"] == "session-created" and event["name"] == "ready":
            ready.set()
        if event["type"] == "session-removed" and event["name"] == "last":
            return


def test_sync_events_in_order(cli: Cli, tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path), "PS1": "P> ", "ENV": "/dev/null"}
    with SyncClient(cli.socket_path) as c, SyncClient(cli.socket_path) as watcher:
        c.new(["sleep", "60"], name="first")  # the server runs before the watcher subscribes
        seen: list[dict[str, Any]] = []
        ready = threading.Event()
        thread = threading.Thread(target=collect, args=(watcher, seen, ready), daemon=True)
        thread.start()
        # Subscribed once it sees a session created after it started listening.
        probe = None
        while not ready.wait(0.05):
            if probe is None:
                probe = c.new(["sleep", "60"], name="ready")
        s = c.new(["bash"], env=env)
        s.wait_for_prompt(timeout=10)
        result = s.run(r"printf '\033]2;the title\007\a'; (exit 4)")
        assert result.exit_code == 4
        with c.attach(s, readonly=True, repaint=False):
            pass
        c.rename(s, "renamed")
        s.kill("KILL")
        assert s.wait(timeout=10) == 137
        assert probe is not None
        c.rename(probe, "last")
        c.rm("last", force=True)
        thread.join(10)
        assert not thread.is_alive()
    kinds = [e["type"] for e in seen if e["session"] == s.id]
    assert kinds == [
        "session-created",
        "title",
        "bell",
        "command-finished",  # a run is no attached client: no attach events for it
        "client-attached",
        "client-detached",
        "session-renamed",
        "session-exited",
    ]
    by_type = {e["type"]: e for e in seen if e["session"] == s.id}
    assert by_type["title"]["title"] == "the title"
    assert "bell" in by_type
    assert by_type["command-finished"]["exit_code"] == 4
    assert by_type["command-finished"]["duration"] >= 0
    assert by_type["session-renamed"]["old_name"] is None
    assert by_type["session-exited"]["exit_code"] == 137
    assert all(e["time"].endswith("+00:00") for e in seen)


async def test_async_events(cli: Cli) -> None:
    async with Client(cli.socket_path) as c, Client(cli.socket_path) as watcher:
        await c.new(["sleep", "60"])  # a server to subscribe to
        stream = watcher.events()
        first = asyncio.ensure_future(stream.__anext__())
        async with asyncio.timeout(20):
            while not first.done():
                # Each new session is an event once the subscription is in place.
                await c.new(["sleep", "60"])
                await asyncio.wait({first}, timeout=0.2)
        first.result()
        s = await c.new(["sh", "-c", "exit 6"])  # after the subscription: all its events come
        kinds = []
        async with asyncio.timeout(10):
            async for event in stream:
                if event["session"] == s.id:
                    kinds.append(event["type"])
                    if event["type"] == "session-exited":
                        assert event["exit_code"] == 6
                        break
        assert kinds == ["session-created", "session-exited"]
        await stream.aclose()


def test_cli_events_json(cli: Cli) -> None:
    cli.new("sleep", "60")
    proc = subprocess.Popen(cli.argv("events", "--json"), stdout=subprocess.PIPE, env=cli.env)
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    buffered = b""

    def line(timeout: float) -> dict[str, Any] | None:
        nonlocal buffered
        deadline = time.monotonic() + timeout
        while b"\n" not in buffered:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                return None
            data = os.read(fd, 65536)
            assert data, "the event stream ended"
            buffered += data
        text, buffered = buffered.split(b"\n", 1)
        event: dict[str, Any] = json.loads(text)
        return event

    try:
        # Sessions made before the subscription is in place are not seen: make them until
        # one is, then the exit of one made after it must come.
        deadline = time.monotonic() + 20
        while line(0.2) is None:
            assert time.monotonic() < deadline, "no events"
            cli.new("sleep", "60")
        sid = cli.new("sh", "-c", "exit 9")
        while True:
            event = line(10)
            assert event is not None, "no session-exited event"
            if event["type"] == "session-exited" and event["session"] == sid:
                break
        assert event["exit_code"] == 9
        cli.run("kill-server")
        assert proc.wait(10) == 0  # the stream ends with the server
    finally:
        proc.kill()
        proc.wait()
