"""Feeding screen models on a worker thread, so the relay never waits for the emulator.

libghostty-vt releases the GIL while it parses, and dense colour output costs it ~110 us per
4 KiB (measured): inline on the event loop that halves attached throughput. Here the loop only
appends each chunk to a queue; one worker thread (shared by every session) feeds the emulators in
order. Anything that reads a screen takes that screen's lock, and whatever must match exactly
the bytes clients already have (the repaint on attach, the repaint after the alternate screen)
first waits until the session's queue is empty while the PTY is not read (``Session.quiesce``).

Replies to terminal queries and "left the alternate screen" are noticed on the worker and handed
to the loop with call_soon_threadsafe, only when there is something to report.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

#: Per-session queued bytes above which the session stops reading its PTY until the worker
#: catches up (the program then waits, as it would on a slow terminal) ...
FEED_HIGH = 4 * 1024 * 1024
#: ... and below which reading resumes.
FEED_LOW = 1024 * 1024

EventCallback = Callable[[bytes, bool, bool, str | None], None]


class Feeder:
    """One worker thread feeding every session's emulator in submission order."""

    def __init__(self) -> None:
        self._queue: collections.deque[tuple[ThreadedScreen, Any]] = collections.deque()
        self._cv = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stopping = False

    def submit(self, screen: ThreadedScreen, item: Any) -> None:
        with self._cv:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="tmuxish-screen-feeder", daemon=True
                )
                self._thread.start()
            self._queue.append((screen, item))
            self._cv.notify()

    def stop(self) -> None:
        with self._cv:
            self._stopping = True
            self._cv.notify()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._queue and not self._stopping:
                    self._cv.wait()
                if self._stopping:
                    return
                screen, item = self._queue.popleft()
            screen.apply(item)


class ThreadedScreen:
    """A screen model whose ``feed`` and ``resize`` run on the feeder thread.

    Readers (repaint, capture, ...) see everything fed so far; callers that need "everything
    relayed so far" wait for ``backlog == 0`` first.
    """

    def __init__(
        self,
        screen: Any,
        feeder: Feeder,
        loop: asyncio.AbstractEventLoop,
        on_event: EventCallback,
    ) -> None:
        self.inner = screen
        self.lock = threading.Lock()
        self._feeder = feeder
        self._loop = loop
        self._on_event = on_event
        #: Bytes submitted but not yet fed. Written under ``lock``.
        self.backlog = 0
        #: Resizes submitted but not yet applied (queued behind bytes). Written under ``lock``.
        self.resizes = 0
        #: The loop asked to hear when the backlog empties (or falls below FEED_LOW).
        self.want_drained = False
        self.want_low = False
        self.failed: str | None = None
        self._alt = False

    # -- producer side (event loop) --------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        with self.lock:
            self.backlog += len(data)
        self._feeder.submit(self, data)

    def resize(self, cols: int, rows: int) -> None:
        with self.lock:
            if self.backlog == 0 and self.resizes == 0:
                # Nothing queued ahead of it: apply it now. An attach resizes and then takes
                # the repaint in the same step; queued, the repaint would be of the old size.
                if self.failed is None:
                    self.inner.resize(cols, rows)
                return
            self.resizes += 1
        self._feeder.submit(self, (cols, rows))

    # -- worker side -----------------------------------------------------------------------------

    def apply(self, item: Any) -> None:
        responses = b""
        left_alt = False
        error: str | None = None
        with self.lock:
            try:
                if isinstance(item, bytes):
                    if self.failed is None:
                        self.inner.feed(item)
                        responses = self.inner.take_responses()
                        alt = self.inner.is_alt
                        left_alt = self._alt and not alt
                        self._alt = alt
                    self.backlog -= len(item)
                else:
                    self.resizes -= 1
                    if self.failed is None:
                        self.inner.resize(*item)
            except Exception as exc:
                if isinstance(item, bytes):
                    self.backlog -= len(item)
                if self.failed is None:
                    self.failed = error = f"{type(exc).__name__}: {exc}"
            drained = self.backlog == 0 and self.resizes == 0 and self.want_drained
            low = self.want_low and self.backlog < FEED_LOW
            if drained:
                self.want_drained = False
            if low:
                self.want_low = False
        if responses or left_alt or drained or low or error:
            # RuntimeError: the loop is closed because the server is exiting.
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(
                    self._on_event, responses, left_alt, drained or low, error
                )

    # -- readers (event loop) --------------------------------------------------------------------

    @property
    def idle(self) -> bool:
        with self.lock:
            return self.backlog == 0 and self.resizes == 0

    def ask_drained(self) -> bool:
        """True if already drained; otherwise an event with drained=True follows."""
        with self.lock:
            if self.backlog == 0 and self.resizes == 0:
                return True
            self.want_drained = True
            return False

    def ask_low(self) -> bool:
        with self.lock:
            if self.backlog < FEED_LOW:
                return True
            self.want_low = True
            return False

    def repaint(self) -> bytes:
        with self.lock:
            return self.inner.repaint()  # type: ignore[no-any-return]

    def history(self, lines: int) -> bytes:
        with self.lock:
            return self.inner.history(lines)  # type: ignore[no-any-return]

    def screen_text(self, escapes: bool = False) -> str:
        with self.lock:
            return self.inner.screen_text(escapes=escapes)  # type: ignore[no-any-return]

    def history_text(self, escapes: bool = False) -> str:
        with self.lock:
            return self.inner.history_text(escapes=escapes)  # type: ignore[no-any-return]

    def reset_modes(self) -> bytes:
        with self.lock:
            return self.inner.reset_modes()  # type: ignore[no-any-return]

    def compact(self, budget: float) -> bool:
        """The inner screen's ``compact``, once the worker has fed everything (True: later)."""
        with self.lock:
            if self.failed is not None:
                return False
            if self.backlog or self.resizes:
                return True
            compact = getattr(self.inner, "compact", None)
            return bool(compact(budget)) if compact is not None else False

    def mode(self, number: int, ansi: bool = False) -> bool:
        with self.lock:
            return bool(self.inner.mode(number, ansi))

    def take_responses(self) -> bytes:
        # Replies are delivered by the worker through on_event.
        return b""

    @property
    def is_alt(self) -> bool:
        with self.lock:
            return bool(self.inner.is_alt)

    def __getattr__(self, name: str) -> Any:
        # cursor, title, cols, rows, mode(), close() ... read under the lock by callers that
        # need consistency; plain attribute access is enough for diagnostics.
        return getattr(self.inner, name)
