"""Test helpers for every layer: deadlines instead of sleeps, and a runner for the real CLI."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from tmuxish import protocol

#: How long an async test waits for any one thing from the server.
DEADLINE = 10.0


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    delay = 0.005
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 1.5, 0.1)


def pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state != "Z"


TMUXISH = [sys.executable, "-P", "-m", "tmuxish"]


class Cli:
    """Runs the real `tmuxish` CLI against one private server."""

    def __init__(self, socket_path: Path) -> None:
        self.socket_path = socket_path
        self.env = dict(os.environ)
        self.env.pop("TMUXISH", None)
        self.env.pop("TMUXISH_SOCKET", None)
        self.env.update({"TERM": "xterm-256color", "TMUXISH_CONFIG": "/nonexistent"})

    def argv(self, *args: str) -> list[str]:
        return [*TMUXISH, "-S", str(self.socket_path), *args]

    def run(
        self, *args: str, check: bool = True, timeout: float = 30.0
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            self.argv(*args),
            capture_output=True,
            text=True,
            env=self.env,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"tmuxish {' '.join(args)} exited {proc.returncode}: {proc.stderr.strip()}"
            )
        return proc

    def new(self, *command: str, name: str | None = None, size: tuple[int, int] = (80, 24)) -> int:
        extra = ["-s", name] if name else []
        out = self.run("new", "-d", "-x", str(size[0]), "-y", str(size[1]), *extra, "--", *command)
        return int(out.stdout.strip())

    def sessions(self) -> list[dict[str, Any]]:
        import json

        result: list[dict[str, Any]] = json.loads(self.run("ls", "--json").stdout)
        return result

    def session(self, sid: int) -> dict[str, Any]:
        return next(s for s in self.sessions() if s["id"] == sid)

    def server_pid(self) -> int | None:
        from tmuxish.client.connection import Connection
        from tmuxish.errors import TmuxishError

        try:
            with Connection.open(self.socket_path, timeout=5) as conn:
                return int(conn.server_info["pid"])
        except TmuxishError:
            return None

    def spawn(self, *args: str, rows: int = 24, cols: int = 80, **kw: Any) -> Any:
        argv = self.argv(*args)
        child = patient_spawn()(
            argv[0],
            argv[1:],
            env=self.env,
            dimensions=(rows, cols),
            timeout=10,
            **kw,
        )
        child.delaybeforesend = None
        self.children.append(child)
        return child

    children: list[Any]


def patient_spawn() -> Any:
    """``pexpect.spawn`` that reads what a client wrote just before it exited.

    pexpect reports EOF as soon as the child is reaped and a zero-timeout poll of the PTY finds
    nothing, but the child's last write may still be on its way through the tty layer (the kernel
    moves it to the master's side from a work queue): a detach line went missing that way, once in
    a few thousand tests under load. Only the tty itself saying end of file (EIO) is EOF here.
    """
    import select

    import pexpect

    class PatientSpawn(pexpect.spawn):  # type: ignore[misc]
        def read_nonblocking(self, size: int = 1, timeout: float | None = -1) -> Any:
            try:
                return super().read_nonblocking(size, timeout)
            except pexpect.EOF:
                if self.closed or not select.select([self.child_fd], [], [], 0.5)[0]:
                    raise
                try:
                    data = os.read(self.child_fd, size)
                except OSError:
                    raise pexpect.EOF("end of file") from None
                if not data:
                    raise
                self.flag_eof = False
                return data

    return PatientSpawn


@contextlib.asynccontextmanager
async def serving(path: Path) -> AsyncIterator[Any]:
    """An in-process server on ``path``."""
    from tmuxish.server.daemon import Server

    srv = Server(path)
    task = asyncio.ensure_future(srv.serve(srv.bind()))
    try:
        yield srv
    finally:
        srv.request_stop()
        await asyncio.wait_for(task, DEADLINE)


def coloured_lines(count: int) -> str:
    """Python code that prints ``line-0`` .. ``line-{count-1}``, each in its own colour and in
    blocks of 1000 lines, then ``DONE``, then idles: dense output a screen model parses slowly."""
    return (
        "import sys, time\n"
        f"for j in range(0, {count}, 1000):\n"
        "    sys.stdout.write(''.join("
        f"f'\\x1b[1;3{{i % 8}}mline-{{i}}\\x1b[0m\\n' for i in range(j, min(j + 1000, {count}))))\n"
        "sys.stdout.write('DONE\\n'); sys.stdout.flush()\n"
        "time.sleep(1000)\n"
    )


def detach(child: Any) -> None:
    """Press the default detach keys in a pexpect client; it must say so and exit 0."""
    import pexpect

    child.send(b"\x10\x11")
    child.expect_exact("[detached from session")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


def stop_server(cli: Cli) -> None:
    pid = cli.server_pid()
    with contextlib.suppress(Exception):
        cli.run("kill-server", check=False, timeout=10)
    if pid is not None:
        try:
            wait_for(lambda: not pid_alive(pid), 5, "server exit")
        except AssertionError:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


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


async def proto_connect(path: Path) -> ProtoClient:
    """A protocol client that has been greeted by the server."""
    client = await ProtoClient.open(path)
    await client.hello()
    return client


async def watched_session(path: Path, program: str) -> tuple[ProtoClient, ProtoClient]:
    """Session 1 of a fresh server running ``python -c program`` at 80x24: the client that made
    it, and a read-only client attached to it from the start, so it sees every byte."""
    client = await proto_connect(path)
    await client.request("new", command=[sys.executable, "-c", program], cols=80, rows=24)
    watcher = await proto_connect(path)
    await watcher.request("attach", target=1, cols=80, rows=24, readonly=True)
    return client, watcher


def server_info(cli: Cli) -> dict[str, Any]:
    """The server's `info` reply: pid, keeper (its keeper's pid, when kept), generation..."""
    from tmuxish.client.connection import Connection

    with Connection.open(cli.socket_path, timeout=5) as conn:
        result: dict[str, Any] = conn.request("info")
    return result
