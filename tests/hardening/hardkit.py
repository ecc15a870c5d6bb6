"""Tools for the hardening tests: /proc probes, a raw protocol client, and attach processes.

Everything here waits on conditions with deadlines; the only sleeps are the ones that *are* the
behaviour under test (a deliberately slow reader) or the sampling period of a memory probe.
"""

from __future__ import annotations

import bisect
import contextlib
import itertools
import os
import select
import signal
import socket
import threading
import time
from pathlib import Path
from typing import Any

import pexpect
from helpers import TMUXISH, Cli, pid_alive, wait_for

from tmuxish import protocol

MIB = 1024 * 1024

# -- /proc probes -----------------------------------------------------------------------------


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}")


def rss_mib(pid: int) -> float:
    return rss_kib(pid) / 1024


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def proc_state(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None


def children(pid: int) -> list[int]:
    pids: list[int] = []
    with contextlib.suppress(FileNotFoundError):
        for tid in os.listdir(f"/proc/{pid}/task"):
            with (
                contextlib.suppress(FileNotFoundError),
                open(f"/proc/{pid}/task/{tid}/children") as f,
            ):
                pids.extend(int(p) for p in f.read().split())
    return pids


def zombie_children(pid: int) -> list[int]:
    return [c for c in children(pid) if proc_state(c) == "Z"]


class RssSampler:
    """Samples a process's RSS in the background; ``peak`` is the highest value seen (MiB)."""

    def __init__(self, pid: int, period: float = 0.02) -> None:
        self.pid = pid
        self.period = period
        self.peak = 0.0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(OSError, AssertionError):
                self.peak = max(self.peak, rss_mib(self.pid))
                self.samples += 1
            self._stop.wait(self.period)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


def settle_rss(pid: int, target: float, timeout: float = 15.0) -> float:
    """Wait until the RSS is at most ``target`` MiB; return the last value seen either way."""
    last = [rss_mib(pid)]

    def ok() -> bool:
        last[0] = rss_mib(pid)
        return last[0] <= target

    with contextlib.suppress(AssertionError):
        wait_for(ok, timeout, f"server RSS to fall to {target:.1f} MiB")
    return last[0]


# -- a raw protocol client ----------------------------------------------------------------------


class ServerError(Exception):
    def __init__(self, code: str, text: str) -> None:
        super().__init__(f"{code}: {text}")
        self.code = code
        self.text = text


class RawConn:
    """A blocking protocol-level client that sees every OUTPUT byte as the server sent it."""

    def __init__(self, path: Path, *, hello: bool = True, timeout: float = 10.0) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        self.sock.settimeout(timeout)
        self.sock.connect(str(path))
        self.decoder = protocol.Decoder()
        self.pending: list[protocol.Message] = []
        self.next_id = 1
        self.server_info: dict[str, Any] = {}
        if hello:
            self.send(protocol.hello({"pid": os.getpid(), "software": "hardening-test"}))
            first = self.recv()
            assert first is not None and first[0] == protocol.HELLO, first
            self.server_info = first[2]

    def send(self, frame: bytes) -> None:
        self.sock.sendall(frame)

    def recv(self, timeout: float | None = None) -> protocol.Message | None:
        """The next message, or None once the server closed the connection."""
        if timeout is not None:
            self.sock.settimeout(timeout)
        while not self.pending:
            try:
                data = self.sock.recv(262144)
            except ConnectionResetError:
                data = b""
            if not data:
                return None
            self.pending.extend(self.decoder.feed(data))
        return self.pending.pop(0)

    def request(self, command: str, /, **args: Any) -> Any:
        req_id = self.next_id
        self.next_id += 1
        self.send(protocol.request(req_id, command, args))
        while True:
            message = self.recv()
            assert message is not None, f"connection closed waiting for {command}"
            if message[0] == protocol.REPLY and message[1] == req_id:
                return message[2]
            if message[0] == protocol.ERROR and message[1] in (req_id, None):
                raise ServerError(message[2], message[3])

    def attach(self, target: int | str, cols: int = 80, rows: int = 24, **kw: Any) -> Any:
        return self.request("attach", target=target, cols=cols, rows=rows, **kw)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


class Drain:
    """Reads an attached RawConn on a thread: counts OUTPUT bytes and when they arrived.

    ``delay`` makes a deliberately slow reader (sleep between reads of ``read_size`` bytes).
    """

    def __init__(
        self, conn: RawConn, *, keep: bool = False, delay: float = 0.0, read_size: int = 262144
    ) -> None:
        self.conn = conn
        self.keep = keep
        self.delay = delay
        self.read_size = read_size
        self.data = bytearray()
        self.nbytes = 0
        #: (arrival time, cumulative OUTPUT bytes) per read that carried output.
        self.times: list[float] = []
        self.totals: list[int] = []
        #: The message that ended the stream (EXITED, DETACHED, ERROR), or None if it just closed.
        self.end: protocol.Message | None = None
        self.bytes_at_end = -1
        self.done = threading.Event()
        self.error: BaseException | None = None
        self._stop = False
        self.conn.sock.settimeout(0.2)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            for message in self.conn.pending:
                self._take(message)
            self.conn.pending.clear()
            while not self._stop and self.end is None:
                try:
                    data = self.conn.sock.recv(self.read_size)
                except TimeoutError:
                    continue
                except OSError:
                    data = b""
                if not data:
                    break
                before = self.nbytes
                for message in self.conn.decoder.feed(data):
                    self._take(message)
                if self.nbytes != before:
                    self.times.append(time.monotonic())
                    self.totals.append(self.nbytes)
                if self.delay:
                    time.sleep(self.delay)
        except BaseException as exc:  # surfaced by the test through .error
            self.error = exc
        finally:
            self.done.set()

    def _take(self, message: protocol.Message) -> None:
        kind = message[0]
        if kind == protocol.OUTPUT:
            self.nbytes += len(message[1])
            if self.keep:
                self.data += message[1]
        elif kind in (protocol.EXITED, protocol.DETACHED, protocol.ERROR) and self.end is None:
            self.end = message
            self.bytes_at_end = self.nbytes

    def max_gap(self, t0: float, t1: float) -> float:
        """The longest time in [t0, t1] with no output arriving."""
        i = bisect.bisect_left(self.times, t0)
        stamps = [t0, *self.times[i : bisect.bisect_right(self.times, t1)], t1]
        return max(b - a for a, b in itertools.pairwise(stamps))

    def bytes_between(self, t0: float, t1: float) -> int:
        i = bisect.bisect_left(self.times, t0)
        j = bisect.bisect_right(self.times, t1)
        if j == 0 or i >= len(self.totals):
            return 0
        start = self.totals[i - 1] if i > 0 else 0
        return self.totals[j - 1] - start

    def stop(self) -> None:
        self._stop = True
        self._thread.join(5)


# -- attach processes on their own PTY --------------------------------------------------------


class PtyClient:
    """`tmuxish attach` (or any CLI command) on a PTY that a thread drains.

    ``mode="relay"`` makes the client relay output itself (so SIGSTOP stops the reading);
    ``mode="direct"`` lets the server write to the terminal (pause() stops the reading).
    Keeps the last ``keep`` bytes of what reached the terminal.
    """

    def __init__(
        self,
        cli: Cli,
        *args: str,
        mode: str = "direct",
        rows: int = 24,
        cols: int = 80,
        keep: int = 1 * MIB,
    ) -> None:
        env = dict(cli.env)
        if mode == "relay":
            env["TMUXISH_ATTACH_MODE"] = "relay"
        else:
            env.pop("TMUXISH_ATTACH_MODE", None)
        self.child = pexpect.spawn(
            TMUXISH[0],
            [*TMUXISH[1:], "-S", str(cli.socket_path), *args],
            env=env,
            dimensions=(rows, cols),
            timeout=10,
        )
        self.child.delaybeforesend = None
        self.pid: int = self.child.pid
        self.keep = keep
        self.total = 0
        self.eof = False
        self._tail = bytearray()
        self._cond = threading.Condition()
        self._reading = threading.Event()
        self._reading.set()
        self._stop = False
        self._fd = os.dup(self.child.child_fd)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stop:
                if not self._reading.wait(0.05):
                    continue
                ready, _, _ = select.select([self._fd], [], [], 0.05)
                if not ready:
                    continue
                try:
                    data = os.read(self._fd, 65536)
                except OSError:
                    data = b""
                if not data:
                    break
                with self._cond:
                    self._tail += data
                    if len(self._tail) > self.keep:
                        del self._tail[: len(self._tail) - self.keep]
                    self.total += len(data)
                    self._cond.notify_all()
        finally:
            with self._cond:
                self.eof = True
                self._cond.notify_all()
            os.close(self._fd)

    # reading control
    def pause(self) -> None:
        self._reading.clear()

    def resume(self) -> None:
        self._reading.set()

    def mark(self) -> int:
        with self._cond:
            return self.total

    def text(self, since: int = 0) -> bytes:
        with self._cond:
            start = self.total - len(self._tail)
            return bytes(self._tail[max(0, since - start) :])

    def expect(self, needle: bytes, timeout: float = 10.0, since: int = 0) -> None:
        """Wait until ``needle`` reached the terminal after byte offset ``since``."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                start = self.total - len(self._tail)
                if needle in self._tail[max(0, since - start) :]:
                    return
                left = deadline - time.monotonic()
                if left <= 0 or (self.eof and needle not in self._tail[max(0, since - start) :]):
                    tail = bytes(self._tail[-400:])
                    state = "eof" if self.eof else "timeout"
                    raise AssertionError(f"{state} waiting for {needle!r}; last output: {tail!r}")
                self._cond.wait(min(left, 0.2))

    def send(self, data: bytes) -> None:
        self.child.send(data)

    def setwinsize(self, rows: int, cols: int) -> None:
        self.child.setwinsize(rows, cols)

    def signal(self, sig: int) -> None:
        os.kill(self.pid, sig)

    def wait_exit(self, timeout: float = 15.0) -> int:
        """Wait for the process to exit and its terminal to be drained; return its status."""
        wait_for(lambda: not self.child.isalive(), timeout, f"attach client {self.pid} to exit")
        with self._cond:
            deadline = time.monotonic() + timeout
            while not self.eof and time.monotonic() < deadline:
                self._cond.wait(0.1)
        if self.child.signalstatus is not None:
            return -int(self.child.signalstatus)
        return int(self.child.exitstatus)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            if self.child.isalive():
                os.kill(self.pid, signal.SIGCONT)
        with contextlib.suppress(Exception):
            self.child.close(force=True)
        self._stop = True
        self._reading.set()
        self._thread.join(5)


# -- a test's kit ------------------------------------------------------------------------------


class Kit:
    """One test's server: the CLI, and raw clients and attach processes it cleans up."""

    def __init__(self, cli: Cli) -> None:
        self.cli = cli
        self.conns: list[RawConn] = []
        self.drains: list[Drain] = []
        self.ptys: list[PtyClient] = []

    @property
    def path(self) -> Path:
        return self.cli.socket_path

    def server_pid(self) -> int:
        pid = self.cli.server_pid()
        assert pid is not None, "no server running"
        return pid

    def raw(self, hello: bool = True, timeout: float = 10.0) -> RawConn:
        conn = RawConn(self.path, hello=hello, timeout=timeout)
        self.conns.append(conn)
        return conn

    def drain(self, conn: RawConn, **kw: Any) -> Drain:
        d = Drain(conn, **kw)
        self.drains.append(d)
        return d

    def attach_pty(self, target: int | str, *extra: str, **kw: Any) -> PtyClient:
        client = PtyClient(self.cli, "attach", *extra, str(target), **kw)
        self.ptys.append(client)
        return client

    def close(self) -> None:
        for p in self.ptys:
            p.close()
        for d in self.drains:
            d._stop = True
        for c in self.conns:
            c.close()
        for d in self.drains:
            d.stop()


#: A session no input byte can stop: raw mode (no ^C/^D/^Z), and cat echoes exactly what it gets.
CAT = ["sh", "-c", "stty raw -echo; exec cat"]


def echo_check(kit: Kit, sid: int, token: bytes, timeout: float = 10.0) -> None:
    """A fresh client can attach to ``sid`` and the program answers."""
    c = kit.raw()
    c.attach(sid)
    c.send(protocol.input_frame(token))
    seen = b""
    deadline = time.monotonic() + timeout
    while token not in seen:
        assert time.monotonic() < deadline, f"no echo of {token!r}: {seen[-200:]!r}"
        m = c.recv(timeout=timeout)
        assert m is not None, "the server closed a well-behaved client"
        if m[0] == protocol.OUTPUT:
            seen += m[1]
    c.close()


def session_clients(cli: Cli, sid: int) -> int:
    return int(cli.session(sid)["clients"])


def kill_and_wait(pid: int, sig: int = signal.SIGKILL, timeout: float = 10.0) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
    wait_for(lambda: not pid_alive(pid), timeout, f"pid {pid} to die")
