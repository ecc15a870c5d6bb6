"""Console-socket sessions in an in-process server (asyncio and uvloop), without a runtime.

The test plays the OCI runtime: it asks for a socket with the ``console-socket`` request, sends a
PTY master from ``os.openpty()`` over it (SCM_RIGHTS, with each payload runtimes are known to
send) and keeps the slave end as "the container". Bad messages must not create sessions and must
not hurt the server.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import fcntl
import os
import socket
import struct
import termios
import tty
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import DEADLINE, ProtoClient, proto_connect

from tmuxish import protocol
from tmuxish.server.console_socket import MAX_PAYLOAD
from tmuxish.server.daemon import Server


@pytest.fixture
async def client(server: Server) -> AsyncIterator[ProtoClient]:
    c = await proto_connect(server.socket_path)
    try:
        yield c
    finally:
        c.close()


@pytest.fixture
def fds() -> Iterator[list[int]]:
    """fds the test opened; closed at teardown (whatever the server did with its copies)."""
    opened: list[int] = []
    try:
        yield opened
    finally:
        for fd in opened:
            with contextlib.suppress(OSError):
                os.close(fd)


async def eventually(check: Callable[[], Any], what: str) -> Any:
    """Await until the coroutine function ``check`` returns something truthy, with a deadline."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DEADLINE
    delay = 0.005
    while True:
        value = await check()
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {DEADLINE}s waiting for {what}")
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.1)


def send_console(path: str, payload: bytes, fds: list[int] | None = None) -> None:
    """What a runtime does: connect, one message with the fds, close."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(path)
        rights = array.array("i", fds or []).tobytes()
        sock.sendmsg([payload], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, rights)] if fds else [])


def winsize(fd: int) -> tuple[int, int]:
    rows, cols, _, _ = struct.unpack("HHHH", fcntl.ioctl(fd, termios.TIOCGWINSZ, b"\0" * 8))
    return cols, rows


def _set_done(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


async def read_fd_until(fd: int, needle: bytes) -> bytes:
    loop = asyncio.get_running_loop()
    os.set_blocking(fd, False)
    seen = b""
    deadline = loop.time() + DEADLINE
    while needle not in seen:
        ready: asyncio.Future[None] = loop.create_future()
        loop.add_reader(fd, _set_done, ready)
        try:
            await asyncio.wait_for(ready, max(0.01, deadline - loop.time()))
        except TimeoutError:
            raise AssertionError(f"{needle!r} not read; got {seen!r}") from None
        finally:
            loop.remove_reader(fd)
        with contextlib.suppress(BlockingIOError):
            seen += os.read(fd, 65536)
    return seen


def fds_open_on(path: str) -> int:
    """How many of this process's fds (test's and in-process server's) refer to ``path``."""
    count = 0
    for name in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/self/fd/{name}") == path:
                count += 1
    return count


async def sessions(client: ProtoClient) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = await client.request("ls")
    return result


async def session_named(client: ProtoClient, name: str) -> dict[str, Any] | None:
    return next((s for s in await sessions(client) if s["name"] == name), None)


async def ended_unknown(client: ProtoClient) -> bool:
    """Read an attached client's stream to its end: True if it was told the session ended
    with an unknown exit code (never an EXITED with an invented code)."""
    while True:
        message = await client.recv()
        assert message is not None, "the attached client was not told the session ended"
        assert message[0] != protocol.EXITED, f"an exit code was invented: {message}"
        if message[0] == protocol.DETACHED:
            return bool(message[1] == protocol.DETACHED_EXIT_UNKNOWN)


PAYLOADS = [
    pytest.param(b"/dev/ptmx", id="runc-old"),
    pytest.param(b"/dev/pts/ptmx", id="runc-new"),
    pytest.param(b" ", id="crun"),
    pytest.param(b"console-name\0", id="conmon-nul"),
]


@pytest.mark.parametrize("payload", PAYLOADS)
async def test_master_becomes_a_session(
    server: Server, client: ProtoClient, fds: list[int], payload: bytes
) -> None:
    reply = await client.request("console-socket", name="web")
    path = reply["path"]
    assert os.path.dirname(path) == str(server.socket_path.parent)
    assert len(os.fsencode(path)) <= 107 and os.path.exists(path)

    master, slave = os.openpty()
    fds += [master, slave]
    before = termios.tcgetattr(slave)
    assert winsize(master) == (0, 0)
    send_console(path, payload, [master])
    fds.remove(master)
    os.close(master)  # the server has its own copy now

    info = await eventually(lambda: session_named(client, "web"), "session web")
    assert info["status"] == "running" and info["pid"] is None
    assert info["console_socket"] == path
    assert info["payload"] == payload.decode()
    assert (info["cols"], info["rows"]) == (80, 24)
    assert winsize(slave) == (80, 24), "a 0x0 PTY is sized at once"
    assert termios.tcgetattr(slave) == before, "termios (ONLCR...) must be left alone"
    assert not os.path.exists(path), "a one-shot socket is gone after its master"

    attached = await client.request("attach", target="web", cols=100, rows=30)
    assert (attached["cols"], attached["rows"]) == (100, 30)
    assert winsize(slave) == (100, 30), "the attaching client's size reaches the PTY"

    tty.setraw(slave)
    client.writer.write(protocol.input_frame(b"ping-1\r"))
    assert b"ping-1\r" in await read_fd_until(slave, b"ping-1\r")
    os.write(slave, b"pong-2\r\n")
    await client.output_until(b"pong-2")

    # The container's side closes: EIO on the master ends the session. Its exit status is
    # unknown, and nobody is told a made-up one.
    fds.remove(slave)
    os.close(slave)
    assert await ended_unknown(client)
    checker = await proto_connect(server.socket_path)
    [info] = await sessions(checker)
    assert info["status"] == "exited" and info["exit_code"] is None
    with pytest.raises(RuntimeError, match="exit-code-unknown: session 1 has ended"):
        await checker.request("wait", target="web")
    checker.close()


async def test_bad_messages_make_no_session(
    server: Server, client: ProtoClient, fds: list[int], tmp_path: Path
) -> None:
    path = (await client.request("console-socket", name="p", persist=True))["path"]
    regular = str(tmp_path / "regular-file")
    Path(regular).write_bytes(b"not a tty")
    file_fd = os.open(regular, os.O_RDONLY)
    fds.append(file_fd)
    master, slave = os.openpty()
    fds += [master, slave]

    send_console(path, b"/dev/ptmx")  # no fd at all
    send_console(path, b"/dev/ptmx", [file_fd])  # a regular file
    send_console(path, b"/dev/ptmx", [slave])  # a PTY, but the slave side
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(path)  # connects and goes away without a word

    # A good master sent after them is the first (and only) session: the bad ones were refused.
    good_master, good_slave = os.openpty()
    fds += [good_master, good_slave]
    send_console(path, b" ", [good_master])
    await eventually(lambda: session_named(client, "p"), "session p")
    assert [s["name"] for s in await sessions(client)] == ["p"]
    assert fds_open_on(regular) == 1, "the server closed the regular file it was sent"
    assert os.path.exists(path), "a persistent socket keeps listening"

    # Two fds: the first is kept, the extra one closed.
    send_console(path, b"/dev/ptmx", [master, file_fd])
    two = await eventually(lambda: session_named(client, "p-2"), "session p-2")
    assert two["payload"] == "/dev/ptmx"
    assert fds_open_on(regular) == 1, "the extra fd was closed"

    # An oversized payload is truncated, not refused.
    big_master, big_slave = os.openpty()
    fds += [big_master, big_slave]
    send_console(path, b"x" * (4 * MAX_PAYLOAD), [big_master])
    big = await eventually(lambda: session_named(client, "p-3"), "session p-3")
    assert 0 < len(big["payload"]) <= MAX_PAYLOAD

    # The server is unharmed: it still answers and runs programs.
    info = await client.request("new", command=["sh", "-c", "exit 3"])
    assert info["status"] == "running"


async def test_one_shot_socket_survives_a_bad_message(
    server: Server, client: ProtoClient, fds: list[int]
) -> None:
    path = (await client.request("console-socket"))["path"]
    master, slave = os.openpty()
    fds += [master, slave]
    send_console(path, b"/dev/ptmx", [slave])
    send_console(path, b"/dev/ptmx", [master])
    info = await eventually(lambda: session_named(client, "console"), "session console")
    assert info["console_socket"] == path
    await eventually(lambda: _gone(path), "one-shot socket removed")
    assert [s["name"] for s in await sessions(client)] == ["console"]


async def _gone(path: str) -> bool:
    return not os.path.exists(path)


async def test_console_socket_request_errors(server: Server, client: ProtoClient) -> None:
    await client.request("new", command=["sleep", "30"], name="taken")
    with pytest.raises(RuntimeError, match="name-in-use"):
        await client.request("console-socket", name="taken")
    with pytest.raises(RuntimeError, match="invalid session name"):
        await client.request("console-socket", name="no spaces")
    with pytest.raises(RuntimeError, match="bad-request"):
        await client.request("console-socket", name=7)
    # --persist numbers its sessions, so a taken base name is fine.
    reply = await client.request("console-socket", name="taken", persist=True)
    assert reply["persist"] is True
    assert [cs.path for cs in server.console_listeners] == [reply["path"]]
    await client.request("kill", target="taken", signal="KILL")


async def test_shutdown_removes_console_sockets(sock_dir: Path) -> None:
    srv = Server(sock_dir / "s")
    task = asyncio.ensure_future(srv.serve(srv.bind()))
    c = await proto_connect(srv.socket_path)
    one = (await c.request("console-socket"))["path"]
    many = (await c.request("console-socket", name="m", persist=True))["path"]
    assert os.path.exists(one) and os.path.exists(many)
    c.close()
    srv.request_stop()
    await asyncio.wait_for(task, DEADLINE)
    assert not os.path.exists(one) and not os.path.exists(many)
    assert srv.console_listeners == []


async def test_kill_ends_a_console_session(
    server: Server, client: ProtoClient, fds: list[int]
) -> None:
    # A console session has no pid: `kill` hangs up the terminal, and that must end the
    # session as an exit does (status, attached clients, waiters).
    path = (await client.request("console-socket", name="web"))["path"]
    master, slave = os.openpty()
    fds.append(slave)
    send_console(path, b" ", [master])
    os.close(master)
    await eventually(lambda: session_named(client, "web"), "session web")
    await client.request("attach", target="web", cols=80, rows=24)
    waiter = await proto_connect(server.socket_path)
    waiting = asyncio.ensure_future(waiter.request("wait", target="web"))
    killer = await proto_connect(server.socket_path)
    try:
        await killer.request("kill", target="web")
        with pytest.raises(RuntimeError, match="exit-code-unknown"):
            await asyncio.wait_for(waiting, DEADLINE)
        assert await ended_unknown(client)
        [info] = await sessions(killer)
        assert info["status"] == "exited" and info["exit_code"] is None
        os.set_blocking(slave, False)
        assert os.read(slave, 1) == b"", "hung up: the master is closed"
    finally:
        waiter.close()
        killer.close()


async def test_console_session_restores_from_state_and_other_fds(
    server: Server, client: ProtoClient, fds: list[int], sock_dir: Path
) -> None:
    # The state round trip a crash-recovery keeper relies on: a msgpack blob plus fds that
    # need not have the numbers they had, restored in another server.
    import msgpack
    from helpers import serving

    from tmuxish.server import upgrade

    path = (await client.request("console-socket", name="web"))["path"]
    master, slave = os.openpty()
    fds.append(slave)
    send_console(path, b" ", [master])
    os.close(master)
    await eventually(lambda: session_named(client, "web"), "session web")
    os.write(slave, b"before-42\r\n")
    await eventually(lambda: client.request("capture", target="web"), "output in the screen")
    await client.request("new", command=["sleep", "100"], name="prog")

    [old] = [s for s in server.registry if s.name == "web"]
    while "before-42" not in await client.request("capture", target="web"):
        await asyncio.sleep(0.01)
    old.suspend()
    state, old_fds = upgrade.capture(server)
    state = msgpack.unpackb(msgpack.packb(state, use_bin_type=True), raw=False)
    [item] = [s for s in state["sessions"] if s["name"] == "web"]
    assert item["kind"] == "console"
    moved = [os.dup(fd) for fd in old_fds]
    assert moved != old_fds
    # Only the console session moves (the program stays with the first server).
    state["sessions"] = [item]
    state["listeners"] = []
    server.registry.remove(old)
    old.close()
    keep = moved[item["fd"]]
    for fd in moved:
        if fd != keep:
            os.close(fd)
    slots = [keep if i == item["fd"] else -1 for i in range(len(moved))]

    async with serving(sock_dir / "second") as second:
        while second.loop is None:
            await asyncio.sleep(0.001)
        upgrade.restore(second, state, slots)
        other = await proto_connect(second.socket_path)
        try:
            [info] = await sessions(other)
            assert (info["id"], info["name"], info["pid"]) == (old.id, "web", None)
            assert info["status"] == "running"
            assert "before-42" in await other.request("capture", target="web")
            os.write(slave, b"after-43\r\n")
            while "after-43" not in await other.request("capture", target="web"):
                await asyncio.sleep(0.01)
            await other.request("kill", target="web")
            [info] = await sessions(other)
            assert info["status"] == "exited"
        finally:
            other.close()
