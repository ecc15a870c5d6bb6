"""The bench's own terminal: a PTY the script owns, read as fast as possible.

`Terminal` plays the user's terminal emulator: it spawns a program (an attach
client, or for the raw baseline the workload itself) as a session leader with
the PTY slave as its controlling terminal, and reads the master with
poll + os.read, keeping every byte so the caller can count and verify them.

No pexpect: the harness must be much faster than anything it measures.
Processes are started with posix_spawn (vfork-like), so the bench's own large
heap (test data) does not add fork time to attach measurements.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import select
import signal
import struct
import termios
import time
from collections.abc import Mapping, Sequence

_READ_SIZE = 1 << 16


class TimedOut(Exception):
    """A condition was not met before its deadline."""


def now_ns() -> int:
    return time.perf_counter_ns()


def deadline_in(seconds: float) -> int:
    return time.perf_counter_ns() + int(seconds * 1e9)


def _remaining_ms(deadline_ns: int) -> int:
    left = deadline_ns - time.perf_counter_ns()
    return max(0, (left + 999_999) // 1_000_000)


def spawn_on_pty(
    argv: Sequence[str], env: Mapping[str, str], cols: int, rows: int
) -> tuple[int, int, int]:
    """Start argv as a session leader on a fresh PTY; return (pid, master_fd, spawn_ns)."""
    master, slave = os.openpty()
    try:
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        slave_path = os.ttyname(slave)
        actions = [
            # After setsid (glibc does it before file actions), opening the tty
            # without O_NOCTTY makes it the controlling terminal.
            (os.POSIX_SPAWN_OPEN, 0, slave_path, os.O_RDWR, 0),
            (os.POSIX_SPAWN_DUP2, 0, 1),
            (os.POSIX_SPAWN_DUP2, 0, 2),
        ]
        spawn_ns = time.perf_counter_ns()
        pid = os.posix_spawnp(argv[0], list(argv), dict(env), file_actions=actions, setsid=True)
    except BaseException:
        os.close(master)
        raise
    finally:
        os.close(slave)
    os.set_blocking(master, False)
    return pid, master, spawn_ns


class Terminal:
    """A PTY owned by the bench with one program running on it."""

    def __init__(
        self, argv: Sequence[str], env: Mapping[str, str], cols: int = 80, rows: int = 24
    ) -> None:
        self.argv = list(argv)
        self.pid, self.master, self.spawn_ns = spawn_on_pty(argv, env, cols, rows)
        self.pidfd = os.pidfd_open(self.pid)
        self.buf = bytearray()
        self.eof = False
        self.exit_status: int | None = None
        self.exit_ns: int | None = None
        self._poll = select.poll()
        self._poll.register(self.master, select.POLLIN)
        self._poll.register(self.pidfd, select.POLLIN)
        self.last_read_ns = 0

    # -- reading -------------------------------------------------------------
    def _drain(self) -> int:
        """Read everything available now; return bytes read."""
        got = 0
        while not self.eof:
            try:
                data = os.read(self.master, _READ_SIZE)
            except BlockingIOError:
                break
            except OSError as e:  # Linux reports the slave side gone as EIO
                if e.errno == errno.EIO:
                    self.eof = True
                    self._poll.unregister(self.master)
                    break
                raise
            if not data:
                self.eof = True
                self._poll.unregister(self.master)
                break
            self.last_read_ns = time.perf_counter_ns()
            self.buf += data
            got += len(data)
        return got

    def _reap(self) -> None:
        if self.exit_status is not None:
            return
        pid, status = os.waitpid(self.pid, os.WNOHANG)
        if pid == self.pid:
            self.exit_ns = time.perf_counter_ns()
            self.exit_status = os.waitstatus_to_exitcode(status)
            self._poll.unregister(self.pidfd)

    def pump(self, timeout_ms: int) -> bool:
        """Wait up to timeout_ms for output or exit; process it. False if nothing happened."""
        if self.eof and self.exit_status is not None:
            return False
        events = self._poll.poll(timeout_ms)
        if not events:
            return False
        for fd, _ev in events:
            if fd == self.master:
                self._drain()
            elif fd == self.pidfd:
                self._drain()
                self._reap()
        return True

    def wait_for(self, marker: bytes, deadline_ns: int, start: int = 0) -> int:
        """Wait until marker appears in the output at or after `start`.

        Returns the perf_counter_ns of the read that completed it. Raises TimedOut.
        """
        pos = self.buf.find(marker, start)
        if pos >= 0:
            return self.last_read_ns or time.perf_counter_ns()
        search_from = max(start, len(self.buf) - len(marker) + 1)
        while True:
            ms = _remaining_ms(deadline_ns)
            if ms <= 0:
                raise TimedOut(f"{marker!r} not seen from {self.argv[0]}")
            if self.eof and self.exit_status is not None:
                raise TimedOut(
                    f"{marker!r} not seen: {self.argv[0]} exited with {self.exit_status}: "
                    f"{bytes(self.buf[-300:])!r}"
                )
            self.pump(ms)
            pos = self.buf.find(marker, search_from)
            if pos >= 0:
                return self.last_read_ns
            search_from = max(start, len(self.buf) - len(marker) + 1)

    def find(self, marker: bytes, start: int = 0) -> int:
        return self.buf.find(marker, start)

    def wait_exit(self, deadline_ns: int) -> int:
        """Wait for the program to exit (draining its output); return exit time in ns."""
        while self.exit_status is None:
            ms = _remaining_ms(deadline_ns)
            if ms <= 0:
                raise TimedOut(f"{self.argv[0]} did not exit")
            self.pump(ms)
        assert self.exit_ns is not None
        return self.exit_ns

    # -- writing -------------------------------------------------------------
    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                n = os.write(self.master, view)
            except BlockingIOError:
                select.select([], [self.master], [], 1.0)
                continue
            view = view[n:]

    def echo_is_off(self) -> bool:
        """True when the terminal has ECHO off (the attached client set raw mode)."""
        lflag = termios.tcgetattr(self.master)[3]
        return not (lflag & termios.ECHO)

    # -- teardown ------------------------------------------------------------
    def close(self) -> None:
        """Hang up the terminal like a closed window, then make sure the program is gone."""
        with contextlib.suppress(OSError):
            os.close(self.master)
        if self.exit_status is None:
            deadline = deadline_in(2.0)
            waiter = select.poll()
            waiter.register(self.pidfd, select.POLLIN)
            while self.exit_status is None and _remaining_ms(deadline) > 0:
                if waiter.poll(_remaining_ms(deadline)):
                    self._reap_blocking()
            if self.exit_status is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, signal.SIGKILL)
                self._reap_blocking()
        with contextlib.suppress(OSError):
            os.close(self.pidfd)

    def _reap_blocking(self) -> None:
        if self.exit_status is None:
            _pid, status = os.waitpid(self.pid, 0)
            self.exit_ns = time.perf_counter_ns()
            self.exit_status = os.waitstatus_to_exitcode(status)

    def __enter__(self) -> Terminal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- escape-sequence stripping (for verifying what a renderer like tmux shows) --
_SEQ = re.compile(
    rb"\x1b\[[0-?]*[ -/]*[@-~]"  # CSI
    rb"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)"  # OSC
    rb"|\x1b[P^_X][^\x1b]*\x1b\\"  # DCS, PM, APC, SOS
    rb"|\x1b[ -/]*[0-~]"  # other ESC sequences (charset, keypad, ...)
)
_CTRL = re.compile(rb"[\x00-\x1f\x7f]")


def visible_text(data: bytes) -> tuple[bytes, bytes]:
    """Split terminal output into (printable text, trailing incomplete escape sequence)."""
    tail = b""
    i = data.rfind(b"\x1b")
    if i >= 0 and not _SEQ.match(data, i):
        data, tail = data[:i], data[i:]
    return _CTRL.sub(b"", _SEQ.sub(b"", data)), tail
