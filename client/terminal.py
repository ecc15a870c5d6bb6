"""The user's terminal: raw mode that is always restored, size, and complete writes."""

from __future__ import annotations

import contextlib
import fcntl
import os
import select
import stat
import struct
import termios
import tty
from collections.abc import Iterator

from tmuxish import protocol


def get_size(fd: int) -> tuple[int, int]:
    """(cols, rows) of the terminal on ``fd``, or (0, 0) if it is not a terminal; a side past
    protocol.MAX_SIDE is taken as that (the server refuses more, as a request or a RESIZE)."""
    try:
        rows, cols, _, _ = struct.unpack("HHHH", fcntl.ioctl(fd, termios.TIOCGWINSZ, b"\0" * 8))
    except OSError:
        return 0, 0
    return min(cols, protocol.MAX_SIDE), min(rows, protocol.MAX_SIDE)


def user_size() -> tuple[int, int]:
    """The user's terminal size: stdout's, else stdin's (output may be redirected)."""
    cols, rows = get_size(1)
    return (cols, rows) if cols else get_size(0)


@contextlib.contextmanager
def raw_mode(fd: int) -> Iterator[None]:
    """Raw mode with output post-processing off too, so every byte reaches the screen as sent."""
    if not os.isatty(fd):
        yield
        return
    saved = termios.tcgetattr(fd)
    try:
        tty.setraw(fd, termios.TCSANOW)
        yield
    finally:
        with contextlib.suppress(termios.error):
            termios.tcsetattr(fd, termios.TCSAFLUSH, saved)


def write_all(fd: int, data: bytes | memoryview) -> None:
    """Write everything, also to a descriptor someone else made non-blocking."""
    view = memoryview(data)
    while view:
        try:
            n = os.write(fd, view)
        except BlockingIOError:
            select.select([], [fd], [])
            continue
        view = view[n:]


def nonblocking_twin(fd: int) -> int | None:
    """A second, non-blocking descriptor of what ``fd`` writes to (the user's terminal), or None.

    Opened anew through /proc, not dup()ed: O_NONBLOCK lives on the open file description, which
    fd 0/1 share with the user's shell, so it must not be set there. None for a regular file
    (`attach > FILE`): a new description would write from offset 0 over what fd 1 wrote, and a
    file never stalls a write the way a stopped terminal does.
    """
    try:
        if stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        return os.open(
            f"/proc/self/fd/{fd}", os.O_WRONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
        )
    except OSError:
        return None


def write_within(fd: int, data: bytes | bytearray | memoryview, patience: float) -> bool:
    """Write ``data`` to the non-blocking ``fd``, waiting as long as the terminal takes some of
    it every ``patience`` seconds; False if it took none for that long (stopped with ^S, a
    dead ssh) and the rest was given up."""
    view = memoryview(data)
    while view:
        try:
            n = os.write(fd, view)
        except BlockingIOError:
            if not select.select([], [fd], [], patience)[1]:
                return False
            continue
        view = view[n:]
    return True


def write_patiently(fd: int, data: bytes, patience: float) -> bool:
    """Write ``data`` to what ``fd`` writes to, giving up if it takes none for ``patience``
    seconds (a terminal stopped with ^S must not keep a client from exiting); a blocking
    write where no non-blocking twin can be opened. False if it gave up."""
    twin = nonblocking_twin(fd)
    if twin is None:
        write_all(fd, data)
        return True
    try:
        return write_within(twin, data, patience)
    finally:
        os.close(twin)
