"""A client's terminal driven directly by the server (local attach): one hop instead of two.

A local client passes its terminal to the server over SCM_RIGHTS (as tmux does), so keystrokes
are read and output is written by the server itself; the client only forwards window-size changes
and waits. The client opens the terminal afresh for us, so O_NONBLOCK here does not change the
client's own descriptor. The detach filter runs here, on the same bytes the relay would see.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
from collections.abc import Callable

from tmuxish.keyreader import KeyReader
from tmuxish.keys import DetachFilter

log = logging.getLogger(__name__)

#: Output queued for a terminal that cannot keep up; above HIGH the client counts as behind.
HIGH = 1024 * 1024
LOW = 256 * 1024


class DirectTerminal:
    """The I/O half of a direct attachment: the tty fd, its input filter and its output queue."""

    def __init__(
        self,
        fd: int,
        loop: asyncio.AbstractEventLoop,
        detach_filter: DetachFilter,
        *,
        on_input: Callable[[bytes], None],
        on_detach: Callable[[], None],
        on_gone: Callable[[], None],
        on_behind: Callable[[bool], None],
    ) -> None:
        self.fd = fd
        self._loop = loop
        self._on_gone = on_gone
        self._on_behind = on_behind
        self._out = bytearray()
        self._writing = False
        self.behind = False
        self.closed = False
        os.set_blocking(fd, False)
        self.keys = KeyReader(
            fd, loop, detach_filter, on_input=on_input, on_detach=on_detach, on_gone=on_gone
        )

    @property
    def buffered(self) -> int:
        return len(self._out)

    # -- input -----------------------------------------------------------------------------------

    def pause_input(self) -> None:
        """The program is not reading: stop reading the user's terminal, as a terminal would."""
        if not self.closed:
            self.keys.pause()

    def resume_input(self) -> None:
        if not self.closed:
            self.keys.resume()

    # -- output ----------------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        if self.closed or not data:
            return
        if self._out:
            self._out += data
        else:
            try:
                n = os.write(self.fd, data)
            except BlockingIOError:
                n = 0
            except OSError as exc:
                if exc.errno not in (errno.EIO, errno.EPIPE, errno.EBADF):
                    log.warning("terminal write failed: %s", exc)
                self._loop.call_soon(self._on_gone)
                return
            if n == len(data):
                return
            self._out += memoryview(data)[n:]
            self._loop.add_writer(self.fd, self._on_writable)
            self._writing = True
        if not self.behind and len(self._out) > HIGH:
            self.behind = True
            self._on_behind(True)

    def _on_writable(self) -> None:
        try:
            n = os.write(self.fd, self._out)
        except BlockingIOError:
            return
        except OSError:
            self._stop_writing()
            self._on_gone()
            return
        del self._out[:n]
        if not self._out:
            self._stop_writing()
        if self.behind and len(self._out) < LOW:
            self.behind = False
            self._on_behind(False)

    def _stop_writing(self) -> None:
        if self._writing:
            self._loop.remove_writer(self.fd)
            self._writing = False

    def finish(self, last: bytes = b"") -> None:
        """Stop all I/O: drop queued output, write ``last`` (mode resets) best effort, close."""
        if self.closed:
            return
        self.closed = True
        self.keys.close()
        self._stop_writing()
        self._out.clear()
        if last:
            # One non-blocking attempt: a terminal that cannot take a few hundred bytes after its
            # queue was dropped is gone or stopped, and must not stall the server.
            with contextlib.suppress(OSError):
                os.write(self.fd, last)
        os.close(self.fd)
