"""Feeding a screen model on the event loop without letting it slow the relay much.

The relay comes first: a chunk reaches clients before the emulator sees it, and the emulator
gets at most ``SHARE`` of the wall-clock time (with a small bank, so a burst is parsed as it
comes). Typing, a shell, an editor or a build log use a tiny fraction of that and are parsed chunk
by chunk exactly as an inline model would be. What a flood brings faster than the budget allows
waits in a backlog, fed within the budget while output continues and all at once when output has
paused for ``QUIET``. Measured on 2 CPUs: libghostty parses dense colour output at ~31 MB/s and
the relay alone moves ~50 MB/s, so an always-inline model cost half of attached throughput on
such floods; issue 3 allows 20%.

A backlog past ``BEHIND_LIMIT`` is let go, as issue 3 asks of a model that falls behind: clients
still get every byte, the model is "behind" (``ls`` says so) and only the last ``TAIL`` bytes of
output are kept. Once output pauses, or as soon as someone needs the screen (attach, capture, an
upgrade), the model is resynced from that tail, which rebuilds the visible screen and the recent
history of line-oriented output; the next attach also makes the program redraw itself, for
full-screen programs whose state was in the bytes skipped.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Callable
from typing import Any

from tmuxish.server.feeder import EventCallback

log = logging.getLogger(__name__)

#: The share of wall-clock time the model may take while the program floods the relay.
SHARE = 0.10
#: Credit banked while output is quiet, so a short burst is parsed as it comes (seconds).
BANK = 0.02
#: No output for this long (seconds) and the backlog is parsed at once, whatever the budget.
QUIET = 0.005
#: Output the model may be behind by before it lets go of it and resyncs later.
BEHIND_LIMIT = 2 * 1024 * 1024
#: Output kept while behind, to resync from: many screenfuls of even dense colour output.
TAIL = 1024 * 1024
#: How far into the tail to look for a line start to resync from (not mid-sequence).
_RESYNC_SEARCH = 64 * 1024


class FeedBudget:
    """Time the model may spend while the relay is busy: ``share`` of the wall-clock time that
    passes, banked up to ``bank`` seconds. Pure bookkeeping; the caller says what time it is."""

    def __init__(self, share: float, bank: float, now: float) -> None:
        self.share = share
        self.bank = bank
        self._credit = bank
        self._at = now

    def available(self, now: float) -> float:
        """Seconds of parsing allowed now (negative after an overrun)."""
        self._credit = min(self.bank, self._credit + (now - self._at) * self.share)
        self._at = now
        return self._credit

    def spend(self, seconds: float) -> None:
        self._credit -= seconds

    def wait(self) -> float:
        """Seconds until there is credit again (0 if there is)."""
        return max(0.0, -self._credit / self.share) if self._credit <= 0 else 0.0


def resync_start(tail: bytes | bytearray, cut: bool) -> int:
    """Where to start feeding a tail of output: after its first line break if it was cut from a
    longer stream (the cut may fall inside an escape sequence or a UTF-8 character)."""
    if not cut:
        return 0
    nl = tail.find(b"\n", 0, _RESYNC_SEARCH)
    if nl >= 0:
        return nl + 1
    esc = tail.find(b"\x1b", 0, _RESYNC_SEARCH)
    return esc if esc >= 0 else 0


class PacedScreen:
    """A screen model fed on the loop within a time budget. Same reader interface as
    ``ThreadedScreen``; ``catch_up`` (via ``ask_drained``) brings it level synchronously."""

    def __init__(
        self,
        screen: Any,
        loop: asyncio.AbstractEventLoop,
        on_event: EventCallback,
        reading: Callable[[], bool] = lambda: True,
    ) -> None:
        self.inner = screen
        self._loop = loop
        self._on_event = on_event
        #: Whether the session reads its PTY: no output while it does not (clients behind) is
        #: no pause, and parsing then would take the time the relay waits to get.
        self._reading = reading
        #: Chunks relayed; the drain compares it to tell a pause in output from a flood.
        self._chunks = 0
        self._pending: collections.deque[bytes] = collections.deque()
        #: Bytes relayed but not fed yet.
        self.backlog = 0
        #: Behind: output only goes to the tail kept for the resync; ``skipped`` counts it.
        self.behind = False
        self.skipped = 0
        self._tail = bytearray()
        self._tail_cut = False
        #: Set by a resync; the session makes the program redraw on the next attach.
        self.resynced = False
        self.failed: str | None = None
        #: Whether the last chunk parsed left the model on the alternate screen.
        self._alt = bool(screen.is_alt)
        self._budget = FeedBudget(SHARE, BANK, time.perf_counter())
        self._drain_handle: asyncio.Handle | asyncio.TimerHandle | None = None

    # -- producer side ---------------------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        if self.failed is not None:
            return
        self._chunks += 1
        if self.behind:
            self.skipped += len(data)
            self._keep(data)
            return
        if not self._pending and self._budget.available(time.perf_counter()) > 0:
            self._budget.spend(self._feed(data))
            return
        self._pending.append(data)
        self.backlog += len(data)
        if self.backlog > BEHIND_LIMIT:
            self._fall_behind()
        elif self._drain_handle is None:
            self._drain_handle = self._loop.call_later(QUIET, self._drain, self._chunks)

    def resize(self, cols: int, rows: int) -> None:
        # Bytes already relayed were written at the old size: parse them first.
        self._feed_pending()
        if self.failed is None:
            self.inner.resize(cols, rows)

    # -- feeding ---------------------------------------------------------------------------------

    def _feed(self, data: bytes, answer: bool = True) -> float:
        """Parse ``data``; report replies and leaving the alternate screen. Returns the time."""
        t0 = time.perf_counter()
        try:
            self.inner.feed(data)
            responses = self.inner.take_responses()
            alt = self.inner.is_alt
        except Exception as exc:
            self._fail(f"{type(exc).__name__}: {exc}")
            return 0.0
        spent = time.perf_counter() - t0
        left_alt, self._alt = self._alt and not alt, alt
        if not answer:
            responses = b""  # replies to old queries in a resync tail would arrive late
        if responses or left_alt:
            self._on_event(responses, left_alt, False, None)
        return spent

    def _drain(self, chunks: int) -> None:
        self._drain_handle = None
        if chunks == self._chunks and self._reading():
            self._feed_pending()  # output paused: the loop has nothing better to do
            return
        while self._pending and self.failed is None:
            if self._budget.available(time.perf_counter()) <= 0:
                break
            self._budget.spend(self._feed_next())
        if self._pending:
            self._drain_handle = self._loop.call_later(
                max(QUIET, self._budget.wait()), self._drain, self._chunks
            )

    def _feed_next(self) -> float:
        chunk = self._pending.popleft()
        self.backlog -= len(chunk)
        return self._feed(chunk)

    def _feed_pending(self) -> None:
        while self._pending and self.failed is None:
            self._feed_next()

    def _fall_behind(self) -> None:
        log.info("screen model %d bytes behind a flood: skipping to its tail", self.backlog)
        self.behind = True
        self.skipped = self.backlog
        for chunk in self._pending:
            self._keep(chunk)
        self._pending.clear()
        self.backlog = 0
        if self._drain_handle is not None:
            self._drain_handle.cancel()
            self._drain_handle = None

    def _keep(self, data: bytes) -> None:
        self._tail += data
        if len(self._tail) > 2 * TAIL:  # trim in big steps: amortised O(1) per byte
            del self._tail[: len(self._tail) - TAIL]
            self._tail_cut = True

    def catch_up(self) -> None:
        """Make the model current now: parse the backlog, or resync from the tail if behind."""
        if self.behind and self.failed is None:
            tail = self._tail
            if len(tail) > TAIL:
                del tail[: len(tail) - TAIL]
                self._tail_cut = True
            start = resync_start(tail, self._tail_cut)
            log.info(
                "screen model resynced from the last %d of %d bytes",
                len(tail) - start,
                self.skipped,
            )
            self.behind = False
            self.skipped = 0
            self._tail = bytearray()
            self._tail_cut = False
            self.resynced = True
            # CAN first: the model may have stopped inside an escape sequence, which would
            # otherwise swallow the start of the tail (ESC ^ even the whole of it).
            self._feed(b"\x18" + tail[start:], answer=False)
        self._feed_pending()

    def _fail(self, error: str) -> None:
        self.failed = error
        self._pending.clear()
        self.backlog = 0
        self._tail = bytearray()
        self._on_event(b"", False, False, error)

    # -- readers ---------------------------------------------------------------------------------

    @property
    def idle(self) -> bool:
        return not self._pending and not self.behind

    def ask_drained(self) -> bool:
        self.catch_up()
        return True

    def take_responses(self) -> bytes:
        return b""  # delivered through on_event

    def compact(self, budget: float) -> bool:
        if not self.idle:
            return True
        compact = getattr(self.inner, "compact", None)
        return bool(compact(budget)) if compact is not None else False

    def __getattr__(self, name: str) -> Any:
        # repaint, history, screen_text, history_text, reset_modes, mode, is_alt, cursor, ...:
        # every reader goes through ask_drained first when it needs the present.
        return getattr(self.inner, name)
