"""`new --log FILE`: the session's raw output appended to a file, capped, with one rotation.

Nothing here may block the event loop: the file is opened non-blocking (a FIFO without a
reader fails at once with ENXIO instead of hanging the server) and only regular files are
accepted, since a FIFO, a socket or a terminal can block a write whenever its reader stops.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import stat

log = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 64 * 1024 * 1024

_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY


class LogFileError(OSError):
    """The log file cannot be used; ``strerror`` is the one line users see."""


def open_log(path: str) -> int:
    """An append-only fd on the regular file ``path`` (created 0600), or LogFileError."""
    try:
        fd = os.open(path, _FLAGS, 0o600)
    except OSError as exc:
        if exc.errno == errno.ENXIO:
            raise LogFileError(exc.errno, "it is a FIFO that nobody reads") from exc
        raise LogFileError(exc.errno, exc.strerror or str(exc)) from exc
    try:
        mode = os.fstat(fd).st_mode
    except OSError as exc:
        os.close(fd)
        raise LogFileError(exc.errno, exc.strerror or str(exc)) from exc
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise LogFileError(errno.EINVAL, "not a regular file (a pipe or device could block)")
    return fd


class OutputLog:
    """Appends bytes unchanged; past ``max_bytes`` the file becomes FILE.1 and a new one starts.

    Writes go straight to the fd (no Python buffering) so the log is current when a program
    crashes or the server is killed; the page cache makes them cheap. The fd is owned here
    alone and closed exactly once: after a close its number may belong to anyone.
    """

    def __init__(self, path: str, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.path = path
        self.max_bytes = max(4096, max_bytes)
        self._fd = open_log(path)
        self._size = os.fstat(self._fd).st_size
        self.failed = False

    def write(self, data: bytes) -> None:
        if self.failed:
            return
        try:
            if self._size + len(data) > self.max_bytes and self._size > 0:
                self._rotate()
            # A chunk larger than the cap itself is split at it: however much one PTY read
            # brings (4 KiB usually, more when the server falls behind), no file passes it.
            view = memoryview(data)
            while view:
                if self._size >= self.max_bytes:
                    self._rotate()
                written = os.write(self._fd, view[: self.max_bytes - self._size])
                self._size += written
                view = view[written:]
        except OSError as exc:
            # A full disk (ENOSPC) or a vanished file must not take the session down: stop
            # logging and say so once; the program and its clients go on.
            log.warning("log %s: %s; logging stopped", self.path, exc.strerror or exc)
            self.failed = True
            self.close()

    def _rotate(self) -> None:
        # The user may have moved or deleted the file: then there is nothing to keep as FILE.1.
        with contextlib.suppress(FileNotFoundError):
            os.replace(self.path, self.path + ".1")
        new = open_log(self.path)  # raises with the old fd still ours, closed once by close()
        old, self._fd = self._fd, new
        os.close(old)
        self._size = 0

    def close(self) -> None:
        fd, self._fd = self._fd, -1
        if fd >= 0:
            with contextlib.suppress(OSError):
                os.close(fd)
