"""In-process tests for the console-socket receiver: real PTYs, real SCM_RIGHTS, both loops."""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import resource
import select
import shutil
import socket
import stat
import struct
import tempfile
import termios
import time
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar

import pytest

from tmuxish.server import console_socket
from tmuxish.server.console_socket import (
    MAX_PAYLOAD,
    ConsoleSocketError,
    ConsoleSocketListener,
    ReceivedConsole,
    ensure_size,
    is_pty_master,
    recv_console,
)

T = TypeVar("T")

PAYLOADS = [
    pytest.param(b"/dev/ptmx", id="runc-old"),
    pytest.param(b"/dev/pts/ptmx", id="runc-new"),
    pytest.param(b" ", id="crun"),
    pytest.param(b"ctr-console\0", id="name-nul"),
]


def _loop_factories() -> list[Any]:
    params = [pytest.param(asyncio.new_event_loop, id="asyncio")]
    try:
        import uvloop
    except ImportError:
        params.append(
            pytest.param(None, id="uvloop", marks=pytest.mark.skip(reason="uvloop not installed"))
        )
    else:
        params.append(pytest.param(uvloop.new_event_loop, id="uvloop"))
    return params


LoopFactory = Callable[[], asyncio.AbstractEventLoop]


@pytest.fixture(params=_loop_factories())
def loop_factory(request: pytest.FixtureRequest) -> LoopFactory:
    factory: LoopFactory = request.param
    # uvloop keeps a process-wide pipe after its first loop; open it now so fd counts in the
    # tests see only what the test itself leaked.
    run(factory, asyncio.sleep(0))
    return factory


def run(factory: LoopFactory, coro: Coroutine[Any, Any, T]) -> T:
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(asyncio.wait_for(coro, 10))


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.fixture
def sockdir() -> Iterator[str]:
    d = tempfile.mkdtemp(dir="/tmp", prefix="cs-")
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def pty_pair() -> Iterator[tuple[int, int]]:
    master, slave = os.openpty()
    try:
        yield master, slave
    finally:
        os.close(master)
        os.close(slave)


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with a, b:
        yield a, b


def read_until(fd: int, want: bytes, deadline: float = 5.0) -> bytes:
    os.set_blocking(fd, False)
    out = b""
    end = time.monotonic() + deadline
    while want not in out:
        left = end - time.monotonic()
        if left <= 0:
            raise AssertionError(f"timed out waiting for {want!r}; got {out!r}")
        try:
            out += os.read(fd, 4096)
        except BlockingIOError:
            select.select([fd], [], [], left)
    return out


def winsize(fd: int) -> tuple[int, int]:
    rows, cols, _, _ = struct.unpack("HHHH", fcntl.ioctl(fd, termios.TIOCGWINSZ, b"\0" * 8))
    return cols, rows


def set_winsize(fd: int, cols: int, rows: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


# --- recv_console -----------------------------------------------------------------------------


@pytest.mark.parametrize("payload", PAYLOADS)
def test_receives_working_cloexec_master(
    payload: bytes, pair: tuple[socket.socket, socket.socket], pty_pair: tuple[int, int]
) -> None:
    a, b = pair
    master, slave = pty_pair
    socket.send_fds(b, [payload], [master])
    console = recv_console(a)
    try:
        assert console.payload == payload
        assert console.fd != master
        assert fcntl.fcntl(console.fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC
        assert console.peer_uid == os.geteuid()
        assert console.peer_pid == os.getpid()
        os.write(slave, b"ping from the slave")
        assert b"ping from the slave" in read_until(console.fd, b"slave")
    finally:
        os.close(console.fd)


def test_is_pty_master(pty_pair: tuple[int, int]) -> None:
    master, slave = pty_pair
    r, w = os.pipe()
    try:
        assert is_pty_master(master)
        assert not is_pty_master(slave)
        assert not is_pty_master(r)
    finally:
        os.close(r)
        os.close(w)


def test_ensure_size_fixes_only_unusable_sizes(pty_pair: tuple[int, int]) -> None:
    master, _slave = pty_pair
    set_winsize(master, 0, 0)
    ensure_size(master, 80, 24)
    assert winsize(master) == (80, 24)
    ensure_size(master, 100, 40)
    assert winsize(master) == (80, 24), "a real size must be left alone"
    set_winsize(master, 132, 0)
    ensure_size(master, 100, 40)
    assert winsize(master) == (100, 40)
    for cols, rows in [(0, 24), (80, 0), (70000, 24)]:
        with pytest.raises(ValueError):
            ensure_size(master, cols, rows)


def test_ensure_size_on_received_master(
    pair: tuple[socket.socket, socket.socket], pty_pair: tuple[int, int]
) -> None:
    a, b = pair
    master, slave = pty_pair
    socket.send_fds(b, [b"/dev/ptmx"], [master])
    console = recv_console(a)
    try:
        assert winsize(console.fd) == (0, 0)
        ensure_size(console.fd, 80, 24)
        assert winsize(slave) == (80, 24)
    finally:
        os.close(console.fd)


def test_no_fd_is_refused(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    b.sendall(b"/dev/ptmx")
    with pytest.raises(ConsoleSocketError, match="no fd"):
        recv_console(a)


def test_peer_closing_without_sending_is_refused(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    b.close()
    with pytest.raises(ConsoleSocketError, match="without sending"):
        recv_console(a)


def test_nothing_yet_on_nonblocking_socket(
    pair: tuple[socket.socket, socket.socket], pty_pair: tuple[int, int]
) -> None:
    a, b = pair
    a.setblocking(False)
    with pytest.raises(BlockingIOError):
        recv_console(a)
    socket.send_fds(b, [b" "], [pty_pair[0]])
    console = recv_console(a)
    os.close(console.fd)


def test_two_fds_keeps_first_closes_second(
    pair: tuple[socket.socket, socket.socket], pty_pair: tuple[int, int]
) -> None:
    a, b = pair
    master, _slave = pty_pair
    other_master, other_slave = os.openpty()
    try:
        before = open_fds()
        socket.send_fds(b, [b"/dev/ptmx"], [master, other_master])
        console = recv_console(a)
        assert open_fds() == before + 1, "only the first fd may stay open"
        assert os.fstat(console.fd).st_rdev == os.fstat(master).st_rdev
        # The kept fd is the first one sent: its slave is ours.
        os.write(pty_pair[1], b"first")
        assert b"first" in read_until(console.fd, b"first")
        os.close(console.fd)
        assert open_fds() == before
    finally:
        os.close(other_master)
        os.close(other_slave)


@pytest.mark.parametrize("kind", ["regular-file", "pipe", "slave", "dev-null", "socket"])
def test_non_master_fd_is_refused_and_closed(
    kind: str,
    pair: tuple[socket.socket, socket.socket],
    pty_pair: tuple[int, int],
    tmp_path: Any,
) -> None:
    a, b = pair
    to_close: list[int] = []
    if kind == "regular-file":
        path = tmp_path / "f"
        path.write_bytes(b"x")
        fd = os.open(path, os.O_RDONLY)
        to_close.append(fd)
    elif kind == "pipe":
        fd, w = os.pipe()
        to_close += [fd, w]
    elif kind == "slave":
        fd = pty_pair[1]
    elif kind == "dev-null":
        fd = os.open("/dev/null", os.O_RDWR)
        to_close.append(fd)
    else:
        fd = a.fileno()
    try:
        before = open_fds()
        socket.send_fds(b, [b"/dev/ptmx"], [fd])
        with pytest.raises(ConsoleSocketError):
            recv_console(a)
        assert open_fds() == before
    finally:
        for f in to_close:
            os.close(f)


def test_oversized_payload_is_truncated(
    pair: tuple[socket.socket, socket.socket], pty_pair: tuple[int, int]
) -> None:
    a, b = pair
    payload = b"P" * (MAX_PAYLOAD * 3)
    socket.send_fds(b, [payload], [pty_pair[0]])
    console = recv_console(a)
    try:
        assert console.payload == payload[:MAX_PAYLOAD]
        os.write(pty_pair[1], b"still works")
        assert b"still works" in read_until(console.fd, b"works")
    finally:
        os.close(console.fd)


def test_ctrunc_closes_everything(
    pair: tuple[socket.socket, socket.socket], pty_pair: tuple[int, int]
) -> None:
    a, b = pair
    before = open_fds()
    socket.send_fds(b, [b"/dev/ptmx"], [pty_pair[0]] * 12)
    with pytest.raises(ConsoleSocketError, match="truncated"):
        recv_console(a)
    assert open_fds() == before


# --- ConsoleSocketListener --------------------------------------------------------------------


class Collector:
    def __init__(self) -> None:
        self.consoles: list[ReceivedConsole] = []
        self._event: asyncio.Event | None = None

    def __call__(self, console: ReceivedConsole) -> None:
        self.consoles.append(console)
        if self._event is not None:
            self._event.set()

    async def wait_for(self, n: int) -> None:
        self._event = asyncio.Event()
        while len(self.consoles) < n:
            self._event.clear()
            await asyncio.wait_for(self._event.wait(), 5)

    def close_all(self) -> None:
        for c in self.consoles:
            os.close(c.fd)


async def until(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise AssertionError("condition not met before the deadline")
        await asyncio.sleep(0.005)


def send_master(path: str, fd: int, payload: bytes = b"/dev/ptmx") -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as c:
        c.connect(path)
        socket.send_fds(c, [payload], [fd])


def peer_sees_eof(c: socket.socket) -> bool:
    """True once the listener closed its end (a close with unread data shows as a reset)."""
    try:
        return c.recv(1, socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False
    except ConnectionResetError:
        return True


def test_one_shot_removes_socket_after_first_master(
    loop_factory: LoopFactory, sockdir: str, pty_pair: tuple[int, int]
) -> None:
    path = os.path.join(sockdir, "c.sock")
    got = Collector()

    async def main() -> None:
        listener = ConsoleSocketListener(path, got)
        try:
            assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
            listener.start(asyncio.get_running_loop())
            send_master(path, pty_pair[0])
            await got.wait_for(1)
            assert listener.received == 1
            assert listener.closed and listener.fileno() == -1
            assert not os.path.exists(path)
            assert fcntl.fcntl(got.consoles[0].fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC
        finally:
            listener.close()

    before = open_fds()
    try:
        run(loop_factory, main())
    finally:
        got.close_all()
    assert open_fds() == before


def test_persist_keeps_listening(
    loop_factory: LoopFactory, sockdir: str, pty_pair: tuple[int, int]
) -> None:
    path = os.path.join(sockdir, "p.sock")
    got = Collector()

    async def main() -> None:
        listener = ConsoleSocketListener(path, got, persist=True)
        try:
            listener.start(asyncio.get_running_loop())
            payloads = [b"/dev/ptmx", b"/dev/pts/ptmx", b" ", b"n\0"]
            for i, payload in enumerate(payloads):
                send_master(path, pty_pair[0], payload)
                await got.wait_for(i + 1)
            assert [c.payload for c in got.consoles] == payloads
            assert listener.received == 4 and os.path.exists(path)
        finally:
            listener.close()
        assert not os.path.exists(path)

    try:
        run(loop_factory, main())
    finally:
        got.close_all()


def test_bad_clients_do_not_stop_one_shot_listener(
    loop_factory: LoopFactory, sockdir: str, pty_pair: tuple[int, int], tmp_path: Any
) -> None:
    path = os.path.join(sockdir, "b.sock")
    got = Collector()
    regular = tmp_path / "regular"
    regular.write_bytes(b"x")

    async def main() -> None:
        listener = ConsoleSocketListener(path, got)
        try:
            listener.start(asyncio.get_running_loop())
            # Connect-and-close, payload without fd, a regular file, a slave, too many fds.
            with socket.socket(socket.AF_UNIX) as c:
                c.connect(path)
            with socket.socket(socket.AF_UNIX) as c:
                c.connect(path)
                c.sendall(b"/dev/ptmx")
            fd = os.open(regular, os.O_RDONLY)
            try:
                send_master(path, fd)
            finally:
                os.close(fd)
            send_master(path, pty_pair[1])
            with socket.socket(socket.AF_UNIX) as c:
                c.connect(path)
                socket.send_fds(c, [b"x"], [pty_pair[0]] * 10)
            await until(lambda: listener.pending == 0)
            assert got.consoles == [] and os.path.exists(path)
            send_master(path, pty_pair[0], b" ")
            await got.wait_for(1)
            assert got.consoles[0].payload == b" "
            assert not os.path.exists(path)
        finally:
            listener.close()

    before = open_fds()
    try:
        run(loop_factory, main())
    finally:
        got.close_all()
    assert open_fds() == before


def test_message_arriving_after_accept(
    loop_factory: LoopFactory, sockdir: str, pty_pair: tuple[int, int]
) -> None:
    path = os.path.join(sockdir, "d.sock")
    got = Collector()

    async def main() -> None:
        listener = ConsoleSocketListener(path, got)
        try:
            listener.start(asyncio.get_running_loop())
            with socket.socket(socket.AF_UNIX) as c:
                c.connect(path)
                await until(lambda: listener.pending == 1)
                socket.send_fds(c, [b"/dev/pts/ptmx"], [pty_pair[0]])
                await got.wait_for(1)
            assert listener.pending == 0 and listener.received == 1
        finally:
            listener.close()

    try:
        run(loop_factory, main())
    finally:
        got.close_all()


def test_silent_peer_times_out(
    loop_factory: LoopFactory, sockdir: str, pty_pair: tuple[int, int]
) -> None:
    path = os.path.join(sockdir, "t.sock")
    got = Collector()

    async def main() -> None:
        listener = ConsoleSocketListener(path, got, persist=True, recv_timeout=0.2)
        try:
            listener.start(asyncio.get_running_loop())
            with socket.socket(socket.AF_UNIX) as c:
                c.connect(path)
                await until(lambda: listener.pending == 1)
                await until(lambda: listener.pending == 0)
                await until(lambda: peer_sees_eof(c))
            send_master(path, pty_pair[0])
            await got.wait_for(1)
        finally:
            listener.close()

    try:
        run(loop_factory, main())
    finally:
        got.close_all()


def test_disallowed_uid_is_dropped_unread(
    loop_factory: LoopFactory, sockdir: str, pty_pair: tuple[int, int]
) -> None:
    path = os.path.join(sockdir, "u.sock")
    got = Collector()
    other_uid = 4242 if os.geteuid() != 4242 else 4343

    async def main() -> None:
        listener = ConsoleSocketListener(path, got, allowed_uids={other_uid})
        try:
            listener.start(asyncio.get_running_loop())
            with socket.socket(socket.AF_UNIX) as c:
                c.connect(path)
                socket.send_fds(c, [b"/dev/ptmx"], [pty_pair[0]])
                await until(lambda: peer_sees_eof(c))
            assert got.consoles == [] and listener.received == 0
            assert os.path.exists(path)
        finally:
            listener.close()

    before = open_fds()
    run(loop_factory, main())
    assert open_fds() == before


def test_on_console_raising_does_not_stop_persistent_listener(
    loop_factory: LoopFactory, sockdir: str, pty_pair: tuple[int, int]
) -> None:
    path = os.path.join(sockdir, "r.sock")
    got = Collector()
    calls = 0

    def flaky(console: ReceivedConsole) -> None:
        nonlocal calls
        calls += 1
        got(console)
        if calls == 1:
            raise RuntimeError("boom")

    async def main() -> None:
        listener = ConsoleSocketListener(path, flaky, persist=True)
        try:
            listener.start(asyncio.get_running_loop())
            send_master(path, pty_pair[0])
            await got.wait_for(1)
            send_master(path, pty_pair[0])
            await got.wait_for(2)
        finally:
            listener.close()

    try:
        run(loop_factory, main())
    finally:
        got.close_all()


def test_from_fd_adopts_listening_socket(
    loop_factory: LoopFactory, sockdir: str, pty_pair: tuple[int, int]
) -> None:
    path = os.path.join(sockdir, "f.sock")
    got = Collector()
    raw = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    raw.bind(path)
    raw.listen(4)
    fd = raw.detach()

    async def main() -> None:
        listener = ConsoleSocketListener.from_fd(fd, path, got)
        try:
            assert listener.fileno() == fd
            listener.start(asyncio.get_running_loop())
            send_master(path, pty_pair[0])
            await got.wait_for(1)
            assert not os.path.exists(path)
        finally:
            listener.close()

    try:
        run(loop_factory, main())
    finally:
        got.close_all()


def test_from_fd_refuses_non_listening_socket(sockdir: str) -> None:
    a, b = socket.socketpair()
    with a, b:
        with pytest.raises(ConsoleSocketError, match="not listening"):
            ConsoleSocketListener.from_fd(a.fileno(), os.path.join(sockdir, "x"), lambda c: None)
        os.fstat(a.fileno())  # still open: a refused fd stays the caller's


def test_refuses_directory_writable_by_others(sockdir: str) -> None:
    os.chmod(sockdir, 0o777)
    with pytest.raises(ConsoleSocketError, match="writable"):
        ConsoleSocketListener(os.path.join(sockdir, "c.sock"), lambda c: None)
    assert os.listdir(sockdir) == []


def test_close_does_not_unlink_a_replaced_path(sockdir: str) -> None:
    path = os.path.join(sockdir, "c.sock")
    listener = ConsoleSocketListener(path, lambda c: None)
    os.unlink(path)
    with socket.socket(socket.AF_UNIX) as other:
        other.bind(path)
        listener.close()
        assert os.path.exists(path)


def test_accept_pauses_when_out_of_fds(
    loop_factory: LoopFactory,
    sockdir: str,
    pty_pair: tuple[int, int],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """EMFILE leaves the socket readable; the listener must back off, then resume."""
    monkeypatch.setattr(console_socket, "ACCEPT_RETRY_DELAY", 0.05)
    caplog.set_level(logging.WARNING, logger=console_socket.__name__)
    path = os.path.join(sockdir, "m.sock")
    got = Collector()

    async def main() -> None:
        listener = ConsoleSocketListener(path, got)
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        try:
            with socket.socket(socket.AF_UNIX) as c:
                c.connect(path)
                socket.send_fds(c, [b" "], [pty_pair[0]])
            lowest_free = os.dup(0)
            os.close(lowest_free)
            resource.setrlimit(resource.RLIMIT_NOFILE, (lowest_free, hard))
            try:
                listener.start(asyncio.get_running_loop())
                await until(lambda: any("pausing" in r.getMessage() for r in caplog.records))
            finally:
                resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
            await got.wait_for(1)
            pauses = sum("pausing" in r.getMessage() for r in caplog.records)
            assert pauses < 50, "the listener spun instead of backing off"
        finally:
            listener.close()

    try:
        run(loop_factory, main())
    finally:
        got.close_all()
