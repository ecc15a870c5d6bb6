"""The attach loop and the key reader without pexpect: pipes stand in for the user's terminal and
a socket pair for the server (an in-memory double of both ends, on real descriptors)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from helpers import DEADLINE

from tmuxish import protocol
from tmuxish.client import attach
from tmuxish.client.attach import AttachResult, Relay
from tmuxish.keyreader import KeyReader
from tmuxish.keys import DetachFilter

P, Q = b"\x10", b"\x11"


class FakeConnection:
    """What the relay uses of the client's connection to the server."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.decoder = protocol.Decoder()
        self.pending: deque[protocol.Message] = deque()


class Harness:
    """A relay between a pipe 'terminal' and a socket 'server', both ends in the test's hands."""

    def __init__(self, readonly: bool = False, timeout: float = 0.5, direct: bool = False) -> None:
        self.client_sock, self.server_sock = socket.socketpair()
        self.keys_r, self.keys_w = os.pipe()  # the user types into keys_w
        self.screen_r, self.screen_w = os.pipe()  # the relay writes the screen to screen_w
        os.set_blocking(self.screen_r, False)
        self.relay = Relay(
            FakeConnection(self.client_sock),  # type: ignore[arg-type]
            7,
            DetachFilter(P + Q, timeout),
            readonly,
            stdin_fd=self.keys_r,
            stdout_fd=self.screen_w,
            read_stdin=not direct,
        )
        self.decoder = protocol.Decoder()
        self.task: asyncio.Task[AttachResult] | None = None

    def start(self) -> None:
        self.task = asyncio.ensure_future(self.relay.run())

    def type(self, data: bytes) -> None:
        os.write(self.keys_w, data)

    def send(self, message: protocol.Message) -> None:
        self.server_sock.sendall(protocol.encode(message))

    async def frames(self, until: Callable[[list[protocol.Message]], bool]) -> list[Any]:
        """Messages the relay sent the server, read until ``until`` holds for them."""
        loop = asyncio.get_running_loop()
        self.server_sock.setblocking(False)
        seen: list[protocol.Message] = []
        async with asyncio.timeout(DEADLINE):
            while not until(seen):
                data = await loop.sock_recv(self.server_sock, 262144)
                assert data, "relay closed the connection"
                seen.extend(self.decoder.feed(data))
        return seen

    async def result(self) -> AttachResult:
        assert self.task is not None
        return await asyncio.wait_for(self.task, DEADLINE)

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        for fd in (self.keys_r, self.keys_w, self.screen_r, self.screen_w):
            if fd >= 0:
                os.close(fd)
        self.client_sock.close()
        self.server_sock.close()


@pytest.fixture
async def relay() -> AsyncIterator[Harness]:
    harness = Harness()
    harness.start()
    try:
        yield harness
    finally:
        await harness.close()


def inputs(messages: list[protocol.Message]) -> bytes:
    return b"".join(m[1] for m in messages if m[0] == protocol.INPUT)


async def test_keys_go_out_as_input_and_output_reaches_the_screen(relay: Harness) -> None:
    relay.type(b"hello\x00\xff")
    await relay.frames(lambda seen: inputs(seen) == b"hello\x00\xff")
    relay.send([protocol.OUTPUT, b"\x1b[1mworld"])
    async with asyncio.timeout(DEADLINE):
        while True:
            with contextlib.suppress(BlockingIOError):
                assert os.read(relay.screen_r, 100) == b"\x1b[1mworld"
                break
            await asyncio.sleep(0.005)


async def test_detach_keys_send_detach_and_the_reply_ends_the_attachment(
    relay: Harness,
) -> None:
    relay.type(b"ab" + P)
    relay.type(Q + b"never")
    seen = await relay.frames(lambda seen: any(m[0] == protocol.DETACH for m in seen))
    assert inputs(seen) == b"ab"
    relay.send([protocol.EVENT, "reset", {"data": b"\x1b[?1000l"}])
    relay.send([protocol.DETACHED, "detached"])
    assert await relay.result() == AttachResult("[detached from session 7]", 0)
    assert relay.relay.closing_reset() == b"\x1b[?1000l"


async def test_a_lone_prefix_goes_through_when_its_time_is_up() -> None:
    harness = Harness(timeout=0.05)
    harness.start()
    try:
        harness.type(P)
        seen = await harness.frames(lambda seen: inputs(seen) == P)
        assert [m[0] for m in seen] == [protocol.INPUT]
    finally:
        await harness.close()


async def test_read_only_keys_go_nowhere_but_detach_still_works() -> None:
    harness = Harness(readonly=True)
    harness.start()
    try:
        harness.type(b"typed" + P + Q)
        seen = await harness.frames(lambda seen: any(m[0] == protocol.DETACH for m in seen))
        assert inputs(seen) == b""
    finally:
        await harness.close()


async def test_exit_code_and_a_terminal_reset_by_the_server() -> None:
    """Direct attach: the server wrote the reset itself; the client must not add its own."""
    harness = Harness(direct=True)
    harness.relay.reset = b"\x1b[?2004l"  # from the attach reply
    harness.start()
    try:
        harness.send([protocol.EVENT, "reset", {"written": True}])
        harness.send([protocol.EXITED, 3])
        assert await harness.result() == AttachResult("[session 7 exited with code 3]", 3)
        assert harness.relay.closing_reset() == b""
    finally:
        await harness.close()


async def test_an_unknown_reset_falls_back_to_sane_modes(relay: Harness) -> None:
    relay.send([protocol.DETACHED, "client too slow"])
    result = await relay.result()
    assert result.status == 1 and "client too slow" in result.message
    assert relay.relay.closing_reset() == protocol.SANE_MODES


async def test_a_hung_up_terminal_detaches(relay: Harness) -> None:
    os.close(relay.keys_w)
    relay.keys_w = -1
    await relay.frames(lambda seen: any(m[0] == protocol.DETACH for m in seen))


async def test_the_terminal_is_not_read_while_the_server_takes_no_input(relay: Harness) -> None:
    """A server that stops reading: the relay stops reading the terminal, then takes up again,
    and every byte arrives in order."""
    chunk = bytes(range(32, 127)) * 700  # ~64 KiB, no detach key in it
    total = bytearray()
    os.set_blocking(relay.keys_w, False)
    async with asyncio.timeout(DEADLINE):
        while relay.relay._keys is None or not relay.relay._keys.paused:
            with contextlib.suppress(BlockingIOError):
                total += chunk[: os.write(relay.keys_w, chunk)]
            await asyncio.sleep(0.001)
    assert len(relay.relay._outbox) > attach.OUTBOX_HIGH
    # The bytes not taken wait in the terminal (the pipe), not in the relay.
    assert len(relay.relay._outbox) < attach.OUTBOX_HIGH + 2 * len(chunk)
    seen = await relay.frames(lambda seen: len(inputs(seen)) == len(total))
    assert inputs(seen) == bytes(total)
    assert not relay.relay._keys.paused


async def test_key_reader_pause_resume_and_detach() -> None:
    loop = asyncio.get_running_loop()
    r, w = os.pipe()
    got: list[bytes] = []
    ends: list[str] = []
    reader = KeyReader(
        r,
        loop,
        DetachFilter(P + Q, 0.5),
        on_input=got.append,
        on_detach=lambda: ends.append("detach"),
        on_gone=lambda: ends.append("gone"),
    )
    try:
        reader.pause()
        os.write(w, b"waits")
        for _ in range(20):  # loop turns in which a reader would have seen the ready pipe
            await asyncio.sleep(0)
        assert got == []
        reader.resume()
        async with asyncio.timeout(DEADLINE):
            while b"".join(got) != b"waits":
                await asyncio.sleep(0.005)
        os.write(w, P + Q + b"after")
        async with asyncio.timeout(DEADLINE):
            while not ends:
                await asyncio.sleep(0.005)
        assert ends == ["detach"] and reader.closed and b"".join(got) == b"waits"
    finally:
        reader.close()
        os.close(r)
        os.close(w)


def screen_bytes(fd: int) -> bytes:
    out = bytearray()
    while True:
        try:
            chunk = os.read(fd, 1 << 20)
        except BlockingIOError:
            return bytes(out)
        if not chunk:
            return bytes(out)
        out += chunk


async def test_a_stuck_terminal_neither_blocks_the_relay_nor_loses_or_reorders_output(
    relay: Harness,
) -> None:
    """Failed before: the relay wrote the terminal with a blocking write, so a terminal that
    stopped taking output (^S, a stalled ssh) froze it: no keys were read, no detach."""
    chunks = [bytes([65 + i % 26]) * 50_000 for i in range(40)]  # 2 MB, far past a pipe's 64 KiB
    sending = send_in_background(relay, [[protocol.OUTPUT, c] for c in chunks])
    # Nobody reads the screen: the relay must still read keys and talk to the server.
    relay.type(b"still here")
    await relay.frames(lambda seen: inputs(seen) == b"still here")
    # Now the terminal takes output again: every byte arrives, in order.
    got = bytearray()
    async with asyncio.timeout(DEADLINE):
        while len(got) < sum(map(len, chunks)):
            got += screen_bytes(relay.screen_r)
            await asyncio.sleep(0.002)
    assert bytes(got) == b"".join(chunks)
    await sending


def send_in_background(relay: Harness, messages: list[protocol.Message]) -> asyncio.Task[None]:
    """The server's side of flow control: it waits while the relay does not read."""
    loop = asyncio.get_running_loop()
    relay.server_sock.setblocking(False)

    async def send() -> None:
        for message in messages:
            await loop.sock_sendall(relay.server_sock, protocol.encode(message))

    return asyncio.ensure_future(send())


async def test_detach_works_while_the_terminal_is_stuck(relay: Harness) -> None:
    sending = send_in_background(relay, [[protocol.OUTPUT, b"x" * 50_000]] * 40)
    relay.type(P + Q)
    await relay.frames(lambda seen: any(m[0] == protocol.DETACH for m in seen))
    await sending  # the relay reads the socket again once detaching
    await asyncio.get_running_loop().sock_sendall(
        relay.server_sock, protocol.encode([protocol.DETACHED, "detached"])
    )
    async with asyncio.timeout(DEADLINE):
        # What the pipe holds is given up within the patience; the test drains it meanwhile.
        while not (relay.task is not None and relay.task.done()):
            screen_bytes(relay.screen_r)
            await asyncio.sleep(0.01)
    assert await relay.result() == AttachResult("[detached from session 7]", 0)
