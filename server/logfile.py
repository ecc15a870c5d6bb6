"""`new --log FILE`: the session's raw output appended to a file, capped, with one rotation."""

from __future__ import annotations

import contextlib
import logging
import os

log = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 64 * 1024 * 1024


class OutputLog:
    """Appends bytes unchanged; past ``max_bytes`` the file becomes FILE.1 and a new one starts.

    Writes go straight to the fd (no Python buffering) so the log is current when a program
    crashes or the server is killed; the page cache makes them cheap.
    """

    def __init__(self, path: str, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.path = path
        self.max_bytes = max(4096, max_bytes)
        self._fd = self._open()
        self._size = os.fstat(self._fd).st_size
        self.failed = False

    def _open(self) -> int:
        return os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)

    def write(self, data: bytes) -> None:
        if self.failed:
            return
        try:
            if self._size + len(data) > self.max_bytes and self._size > 0:
                self._rotate()
            os.write(self._fd, data)
            self._size += len(data)
        except OSError as exc:
            # A full disk must not take the session down; stop logging and say so once.
            log.warning("log %s: %s; logging stopped", self.path, exc)
            self.failed = True

    def _rotate(self) -> None:
        os.close(self._fd)
        os.replace(self.path, self.path + ".1")
        self._fd = self._open()
        self._size = 0

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self._fd)
