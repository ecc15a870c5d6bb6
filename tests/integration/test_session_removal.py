"""Removing a session answers everyone waiting for it (API and CLI), instead of leaving them
hanging on an exit that will never be reported."""

from __future__ import annotations

import asyncio
import subprocess

import pytest
from helpers import DEADLINE, Cli, proto_connect, wait_for

from tmuxish.server.daemon import Server


async def test_rm_force_answers_waiters(server: Server) -> None:
    client = await proto_connect(server.socket_path)
    waiters = [await proto_connect(server.socket_path) for _ in range(2)]
    try:
        await client.request("new", command=["sleep", "1000"], name="busy")
        session = server.registry.get("busy")
        waiting = [asyncio.ensure_future(w.request("wait", target="busy")) for w in waiters]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + DEADLINE
        while len(session._waiters) < len(waiters):
            assert loop.time() < deadline, "the waits never reached the session"
            await asyncio.sleep(0.005)
        await client.request("rm", target="busy", force=True)
        for fut in waiting:
            with pytest.raises(RuntimeError, match=r"session-not-found.*removed before it exited"):
                await asyncio.wait_for(fut, DEADLINE)
    finally:
        client.close()
        for w in waiters:
            w.close()


def test_cli_wait_on_a_removed_session_is_one_line(cli: Cli) -> None:
    sid = cli.new("sleep", "1000")
    wait = subprocess.Popen(
        cli.argv("wait", str(sid)),
        env=cli.env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # One more CLI run gives the wait a head start, so it normally reaches the server
        # first (the in-process test above covers that order exactly); either way it must end.
        wait_for(lambda: cli.run("ls").stdout, what="server")
        cli.run("rm", "-f", str(sid))
        _out, err = wait.communicate(timeout=10)
    finally:
        if wait.poll() is None:
            wait.kill()
            wait.communicate()
    assert wait.returncode == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tmuxish: session"), err
