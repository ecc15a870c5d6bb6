"""The server in-process on a temp socket, driven by a protocol client (asyncio and uvloop)."""

from __future__ import annotations

import asyncio
import os
import signal

import msgpack
import pytest
from helpers import DEADLINE, ProtoClient, proto_connect

from tmuxish import protocol
from tmuxish.server.daemon import Server


async def test_new_attach_input_output_exit(server: Server) -> None:
    c = await proto_connect(server.socket_path)
    info = await c.request(
        "new", command=["sh", "-c", "read x; echo got-$x; exit 4"], cols=80, rows=24
    )
    assert info["id"] == 1 and info["status"] == "running"
    attached = await c.request("attach", target=1, cols=100, rows=30)
    assert attached["id"] == 1 and (attached["cols"], attached["rows"]) == (100, 30)
    c.writer.write(protocol.input_frame(b"hello\r"))
    await c.output_until(b"got-hello")
    while True:
        message = await c.recv()
        assert message is not None
        if message[0] == protocol.EXITED:
            assert message[1] == 4
            break
    c.close()
    lister = await proto_connect(server.socket_path)
    [s] = await lister.request("ls")
    assert s["status"] == "exited" and s["exit_code"] == 4
    lister.close()


async def test_output_is_byte_exact(server: Server) -> None:
    c = await proto_connect(server.socket_path)
    # Every byte value, with the terminal in raw mode so nothing is translated.
    script = "stty raw -echo; read x; printf \"$(printf '\\\\%03o' $(seq 0 255))\"; printf END"
    await c.request("new", command=["sh", "-c", script])
    await c.request("attach", target=1, cols=80, rows=24)
    c.writer.write(protocol.input_frame(b"go\n"))
    seen = await c.output_until(b"END")
    assert bytes(range(256)) in seen
    c.close()


async def test_version_mismatch_is_named_and_closed(server: Server) -> None:
    c = await ProtoClient.open(server.socket_path, version=99)
    await c.hello()
    # The frozen requests are served between any two versions (a client installed over a
    # running server can still upgrade it)...
    info = await c.request("info")
    assert info["pid"] == os.getpid() and info["sessions"] == 0
    # ...anything else is refused, naming both versions, and the connection is closed.
    c.writer.write(protocol.request(c.next_id, "ls", {}))
    message = await c.recv()
    assert message is not None and message[0] == protocol.ERROR
    assert message[2] == "version-mismatch"
    assert "99" in message[3] and str(protocol.PROTOCOL_VERSION) in message[3]
    assert await c.recv() is None
    c.close()


async def test_garbage_closes_only_that_connection(server: Server) -> None:
    good = await proto_connect(server.socket_path)
    await good.request("new", command=["sleep", "1000"])
    for garbage in [b"GET / HTTP/1.1\r\n\r\n", msgpack.packb([protocol.INPUT, b"x"])]:
        bad = await ProtoClient.open(server.socket_path)
        await bad.hello()
        bad.writer.write(garbage)
        message = await bad.recv()
        assert message is not None and message[0] == protocol.ERROR
        assert await bad.recv() is None
        bad.close()
    [s] = await good.request("ls")
    assert s["status"] == "running"
    good.close()


async def test_unknown_command_keeps_connection(server: Server) -> None:
    c = await proto_connect(server.socket_path)
    with pytest.raises(RuntimeError, match="unknown command"):
        await c.request("frobnicate")
    with pytest.raises(RuntimeError, match="session-not-found"):
        await c.request("attach", target=5)
    assert await c.request("ls") == []
    c.close()


async def test_latest_client_sets_size_and_detach_restores(server: Server) -> None:
    c = await proto_connect(server.socket_path)
    await c.request("new", command=["sleep", "1000"], cols=80, rows=24)
    a = await proto_connect(server.socket_path)
    b = await proto_connect(server.socket_path)
    await a.request("attach", target=1, cols=100, rows=40)
    await b.request("attach", target=1, cols=120, rows=50)
    assert (await c.request("get", target=1))["cols"] == 120
    a.writer.write(protocol.resize(90, 30))
    await a.writer.drain()

    async def size() -> tuple[int, int]:
        info = await c.request("get", target=1)
        return info["cols"], info["rows"]

    async def until(expected: tuple[int, int]) -> None:
        async with asyncio.timeout(DEADLINE):
            while await size() != expected:
                await asyncio.sleep(0.01)

    await until((90, 30))
    a.writer.write(protocol.encode([protocol.DETACH]))
    await until((120, 50))
    a.close()
    b.close()
    c.close()


async def test_typing_makes_a_client_the_latest(server: Server) -> None:
    """Under `latest`, the client that last sent input sets the size (as in tmux), at once."""
    c = await proto_connect(server.socket_path)
    await c.request("new", command=["sleep", "1000"], cols=80, rows=24)
    a = await proto_connect(server.socket_path)
    b = await proto_connect(server.socket_path)
    await a.request("attach", target=1, cols=100, rows=40)
    await b.request("attach", target=1, cols=120, rows=50)
    assert (await c.request("get", target=1))["cols"] == 120
    a.writer.write(protocol.input_frame(b"x"))
    await a.writer.drain()

    async def size() -> tuple[int, int]:
        info = await c.request("get", target=1)
        return info["cols"], info["rows"]

    async with asyncio.timeout(DEADLINE):
        while await size() != (100, 40):
            await asyncio.sleep(0.01)
    a.close()
    b.close()
    c.close()


async def test_kill_and_wait(server: Server) -> None:
    c = await proto_connect(server.socket_path)
    await c.request("new", command=["sleep", "1000"])
    waiter = await proto_connect(server.socket_path)
    pending = asyncio.ensure_future(waiter.request("wait", target=1))
    await c.request("kill", target=1, signal="TERM")
    assert await asyncio.wait_for(pending, DEADLINE) == 128 + signal.SIGTERM
    c.close()
    waiter.close()
