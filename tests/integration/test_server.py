"""The server in-process on a temp socket, driven by a protocol client (asyncio and uvloop)."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgpack
import pytest

from tmuxish import protocol
from tmuxish.server.daemon import Server

DEADLINE = 10.0


class ProtoClient:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.decoder = protocol.Decoder()
        self.pending: list[protocol.Message] = []
        self.next_id = 1

    @classmethod
    async def open(cls, path: Path, version: int = protocol.PROTOCOL_VERSION) -> ProtoClient:
        reader, writer = await asyncio.open_unix_connection(str(path))
        client = cls(reader, writer)
        writer.write(protocol.encode([protocol.HELLO, version, {"pid": os.getpid()}]))
        return client

    async def recv(self) -> protocol.Message | None:
        while not self.pending:
            data = await asyncio.wait_for(self.reader.read(262144), DEADLINE)
            if not data:
                return None
            self.pending.extend(self.decoder.feed(data))
        return self.pending.pop(0)

    async def hello(self) -> dict[str, Any]:
        message = await self.recv()
        assert message is not None and message[0] == protocol.HELLO
        return message[2]  # type: ignore[no-any-return]

    async def request(self, command: str, /, **args: Any) -> Any:
        req_id = self.next_id
        self.next_id += 1
        self.writer.write(protocol.request(req_id, command, args))
        while True:
            message = await self.recv()
            assert message is not None, "connection closed"
            if message[0] == protocol.REPLY and message[1] == req_id:
                return message[2]
            if message[0] == protocol.ERROR:
                raise RuntimeError(f"{message[2]}: {message[3]}")

    async def output_until(self, needle: bytes) -> bytes:
        seen = b""
        while needle not in seen:
            message = await self.recv()
            assert message is not None, f"closed before {needle!r}; got {seen[-200:]!r}"
            if message[0] == protocol.OUTPUT:
                seen += message[1]
        return seen

    def close(self) -> None:
        self.writer.close()


@pytest.fixture
async def server(sock_dir: Path) -> AsyncIterator[Server]:
    srv = Server(sock_dir / "s")
    task = asyncio.ensure_future(srv.serve(srv.bind()))
    try:
        yield srv
    finally:
        srv.request_stop()
        await asyncio.wait_for(task, DEADLINE)


async def connect(srv: Server) -> ProtoClient:
    client = await ProtoClient.open(srv.socket_path)
    await client.hello()
    return client


async def test_new_attach_input_output_exit(server: Server) -> None:
    c = await connect(server)
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
    lister = await connect(server)
    [s] = await lister.request("ls")
    assert s["status"] == "exited" and s["exit_code"] == 4
    lister.close()


async def test_output_is_byte_exact(server: Server) -> None:
    c = await connect(server)
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
    message = await c.recv()
    assert message is not None and message[0] == protocol.ERROR
    assert message[2] == "version-mismatch"
    assert "99" in message[3] and str(protocol.PROTOCOL_VERSION) in message[3]
    assert await c.recv() is None
    c.close()


async def test_garbage_closes_only_that_connection(server: Server) -> None:
    good = await connect(server)
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
    c = await connect(server)
    with pytest.raises(RuntimeError, match="unknown command"):
        await c.request("frobnicate")
    with pytest.raises(RuntimeError, match="session-not-found"):
        await c.request("attach", target=5)
    assert await c.request("ls") == []
    c.close()


async def test_latest_client_sets_size_and_detach_restores(server: Server) -> None:
    c = await connect(server)
    await c.request("new", command=["sleep", "1000"], cols=80, rows=24)
    a = await connect(server)
    b = await connect(server)
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


async def test_kill_and_wait(server: Server) -> None:
    c = await connect(server)
    await c.request("new", command=["sleep", "1000"])
    waiter = await connect(server)
    pending = asyncio.ensure_future(waiter.request("wait", target=1))
    await c.request("kill", target=1, signal="TERM")
    assert await asyncio.wait_for(pending, DEADLINE) == 128 + signal.SIGTERM
    c.close()
    waiter.close()
