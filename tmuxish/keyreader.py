"""The terminal key reader: read a terminal on the event loop, filter out the detach keys, and
forward a held prefix when its time is up.

Shared by the client's relay (its own terminal) and the server's direct attach (a terminal a client
passed over SCM_RIGHTS): both read keystrokes the same way, so both behave the same way. The
matching itself is the pure ``DetachFilter``; this is only the I/O around it.

``pause()`` stops reading the terminal, as a terminal does when the program does not read: what the
user types then waits in the terminal (the kernel's tty buffer, then the terminal emulator), not in
our memory. While paused the detach keys are not seen either, since they are somewhere behind the
bytes that wait; they take effect once the program reads again. A prefix already held when the
pause began is still forwarded when its time is up.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import asyncio

    from tmuxish.keys import DetachFilter

READ_SIZE = 65536


class KeyReader:
    """Keystrokes from ``fd`` to ``on_input``; the detach keys to ``on_detach``; a read error
    or end of file (the terminal hung up) to ``on_gone``. Each end is reported once; after it,
    or after ``close()``, the reader is stopped. ``close()`` does not close ``fd``."""

    def __init__(
        self,
        fd: int,
        loop: asyncio.AbstractEventLoop,
        detach_filter: DetachFilter,
        *,
        on_input: Callable[[bytes], None],
        on_detach: Callable[[], None],
        on_gone: Callable[[], None],
    ) -> None:
        self.fd = fd
        self._loop = loop
        self._filter = detach_filter
        self._on_input = on_input
        self._on_detach = on_detach
        self._on_gone = on_gone
        self._timer: asyncio.TimerHandle | None = None
        self._reading = False
        self.paused = False
        self.closed = False
        self._start_reading()

    def pause(self) -> None:
        """Stop reading the terminal until ``resume()``."""
        self.paused = True
        self._stop_reading()

    def resume(self) -> None:
        self.paused = False
        self._start_reading()

    def close(self) -> None:
        """Stop reading and drop any held prefix (the attachment is over)."""
        if self.closed:
            return
        self.closed = True
        self._stop_reading()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    # -- internals -------------------------------------------------------------------------------

    def _start_reading(self) -> None:
        if not self._reading and not self.paused and not self.closed:
            self._loop.add_reader(self.fd, self._on_readable)
            self._reading = True

    def _stop_reading(self) -> None:
        if self._reading:
            self._loop.remove_reader(self.fd)
            self._reading = False

    def _on_readable(self) -> None:
        try:
            data = os.read(self.fd, READ_SIZE)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self.close()
            self._on_gone()
            return
        passthrough, detached = self._filter.feed(data, self._loop.time())
        if passthrough:
            self._on_input(passthrough)
            if self.closed:
                return  # the input ended the attachment (its terminal or connection is gone)
        if detached:
            self.close()
            self._on_detach()
            return
        self._arm_timer()

    def _arm_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        deadline = self._filter.deadline()
        if deadline is not None and not self.closed:
            self._timer = self._loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        held = self._filter.expire(self._loop.time())
        if held:
            self._on_input(held)
        self._arm_timer()
