"""The one path from a session's output to its screen model, in parse steps bounded in time.

The relay comes first: a chunk reaches clients before the emulator sees it. Every chunk then
goes into this feed, which parses it in *slices*: a slice is cut so that its predicted cost
(:class:`SliceCost`) fits what is left of a step of ``STEP`` seconds, and the loop gets control
back between steps. What a byte costs libghostty depends on the byte and on the screen size
(ARCHITECTURE section 9: plain text 7 ns, one ``ESC # 8`` at 1000x1000 about 2 ms, one
``a ESC[65535b`` 135 us at any size), so a slice size in bytes cannot be right for all of them;
a prediction from a few counts the C library does fast (escape sequences, line feeds, resets,
repeat candidates) is, and whatever it still misses is learnt from the measured time.

While the program floods, the model gets ``SHARE`` of the wall-clock time (with a small bank,
so a burst is parsed as it comes); once output pauses, or someone waits for the model, it is
parsed at full speed, one step per loop turn. A backlog that would take more than
``BEHIND_TIME`` to parse, or is past ``BEHIND_LIMIT`` bytes, is let go (issue 3): clients still
get every byte, the model is "behind" and keeps only the last ``TAIL`` bytes, from which it is
resynced once output pauses or someone needs the screen; the next attach also makes the
program redraw itself.

Readers catch up before they read: :meth:`ScreenFeed.catch_up` is awaited by whoever needs the
model to match every byte relayed (attach, capture, upgrade; the session stops reading the PTY
meanwhile), and the synchronous readers first parse what they can within ``READ_STEP``.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Callable
from typing import NamedTuple

from tmuxish.server.parse_cost import ReflowCost, SliceCost, history_that_fits
from tmuxish.server.screen import Screen

log = logging.getLogger(__name__)

#: Longest the loop is held by one parse step (seconds).
STEP = 0.004
#: A step longer than this is logged: the prediction missed a cost (or the CPU was taken).
SLOW_STEP = 0.05
#: Longest a synchronous reader (detach's mode reset, `send`) parses before reading.
READ_STEP = 0.01
#: The share of wall-clock time the model may take while the program floods the relay.
SHARE = 0.10
#: Credit banked while output is quiet, so a short burst is parsed as it comes (seconds).
BANK = 0.02
#: No output for this long (seconds) and the backlog is parsed at full speed.
QUIET = 0.005
#: Output the model may be behind by, in bytes and in estimated parse time, before it lets go
#: of it and resyncs later.
BEHIND_LIMIT = 2 * 1024 * 1024
BEHIND_TIME = 1.0
#: Output kept while behind, to resync from: many screenfuls of even dense colour output ...
TAIL = 1024 * 1024
#: ... cut to what is predicted to parse within this long (seconds).
RESYNC_TIME = 0.5
#: Longest a change of the model's size may hold the loop (seconds). libghostty reflows all
#: the history in one call when the width changes (bench/reflow_cost.py: 14,000 plain lines
#: from 10,000 columns back to 80 0.3 s, 0.53 s compressed; 3,000 lines of colour or combining
#: marks 0.74-0.86 s); a reflow predicted to take longer drops the oldest history it has no
#: time for.
RESIZE_STEP = 0.05
#: How far into the tail to look for a line start to resync from (not mid-sequence).
_RESYNC_SEARCH = 64 * 1024
#: How far a model left mid-line looks for the end of that line before it lets go.
_FINISH_LINE_SEARCH = 4096


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


class _Chunk(NamedTuple):
    data: bytes
    #: False for a resync tail: replies to queries in it would reach the program late.
    answer: bool


class _Resize(NamedTuple):
    cols: int
    rows: int


class ScreenFeed:
    """A session's screen model and the bytes it has yet to parse.

    ``push`` and ``resize`` on the producer side; ``idle``, ``behind``, ``catch_up`` and
    ``settle`` to know or bring about that the model has seen every byte relayed; readers.
    """

    def __init__(
        self,
        screen: Screen,
        loop: asyncio.AbstractEventLoop,
        *,
        answer: Callable[[bytes], None],
        left_alt: Callable[[], None],
        failed: Callable[[str], None],
        reading: Callable[[], bool],
    ) -> None:
        self.screen = screen
        self._loop = loop
        self._answer = answer
        self._left_alt = left_alt
        self._failed = failed
        #: Whether the session reads its PTY: no output while it does not (clients behind) is
        #: no pause, and parsing at full speed then would take the time the relay waits to get.
        self._reading = reading
        self._cost = SliceCost(screen.cols, screen.rows)
        self._reflow = ReflowCost()
        #: Rows of history dropped so that a resize fits ``RESIZE_STEP`` (since the start).
        self.history_dropped = 0
        #: A resize was applied during this loop turn: the next ones wait for a step, so a
        #: burst of them (many RESIZE frames in one read) costs one reflow, not one each.
        self._resized_this_turn = False
        self._pending: collections.deque[_Chunk | _Resize] = collections.deque()
        #: Bytes of the first pending chunk already parsed.
        self._offset = 0
        #: Bytes relayed but not parsed yet (resync tail included).
        self.backlog = 0
        #: Seconds per byte the last slices took: how long the backlog will take.
        self._rate = 20e-9
        #: Chunks pushed; a scheduled step compares it to tell a pause in output from a flood.
        self._chunks = 0
        #: Behind: output only goes to the tail kept for the resync; ``skipped`` counts it.
        self.behind = False
        self.skipped = 0
        self._tail = bytearray()
        self._tail_cut = False
        #: Set by a resync; the session makes the program redraw on the next attach.
        self.resynced = False
        self.error: str | None = None
        self._alt = screen.is_alt
        self._budget = FeedBudget(SHARE, BANK, time.perf_counter())
        self._handle: asyncio.Handle | None = None
        #: Whether ``_handle`` is for the next loop turn rather than a timer.
        self._handle_soon = False
        self._waiters: list[asyncio.Future[None]] = []
        #: Parse at full speed until current: someone asked (``start_catch_up``).
        self._hurry = False

    # -- producer side ---------------------------------------------------------------------------

    def push(self, data: bytes) -> None:
        """Output just relayed to clients."""
        if self.error is not None:
            return
        self._chunks += 1
        if self.behind:
            self.skipped += len(data)
            self._keep(data)
            return
        idle = not self._pending
        self._pending.append(_Chunk(data, True))
        self.backlog += len(data)
        if self.backlog > BEHIND_LIMIT or self.backlog * self._rate > BEHIND_TIME:
            self._fall_behind()
            return
        if idle and not self._waiters:
            credit = self._budget.available(time.perf_counter())
            if credit > 0:
                # Typing, a shell, an editor: parsed as it comes, as an inline model would.
                self._budget.spend(self._step(STEP))
        if self._pending:
            self._schedule(QUIET)

    def resize(self, cols: int, rows: int) -> None:
        """Bytes already relayed were written at the old size: the resize waits its turn.

        At most one resize a loop turn is applied here; later ones wait for a step of their
        own, and resizes with no output between them are one resize (the last).
        """
        if self.error is not None:
            return
        if self._pending and isinstance(self._pending[-1], _Resize):
            self._pending[-1] = _Resize(cols, rows)
        elif self._pending or (self._resized_this_turn and cols != self.screen.cols):
            self._pending.append(_Resize(cols, rows))
        else:
            self._bounded_resize(cols, rows)
            return
        self._schedule(0.0 if len(self._pending) == 1 else QUIET)

    # -- knowing and bringing about that the model is current ------------------------------------

    @property
    def idle(self) -> bool:
        """The model has seen every byte relayed (or has failed and sees nothing more)."""
        return self.error is not None or (not self._pending and not self.behind)

    async def catch_up(self) -> None:
        """Parse everything relayed so far, one bounded step per loop turn; resync if behind.

        The caller stops the output meanwhile (``Session.quiesce``), or this may chase it.
        """
        while not self.idle:
            waiter: asyncio.Future[None] = self._loop.create_future()
            self._waiters.append(waiter)
            self.start_catch_up()
            await waiter

    def start_catch_up(self) -> None:
        """Begin resyncing (if behind) and parsing at full speed; returns at once."""
        if self.behind and self.error is None:
            self._resync()
        if self._pending:
            self._hurry = True
            self._schedule(0.0)
        else:
            self._wake()

    def discard(self) -> None:
        """The session is gone: parse nothing more (readers see the model as it is)."""
        self._stop("discarded")

    def settle(self, budget: float = READ_STEP) -> bool:
        """Parse for at most ``budget`` seconds now; True if the model is then current."""
        if self.idle:
            return True
        if self.behind:
            self._resync()
        deadline = time.perf_counter() + budget
        while self._pending and self.error is None and not self._resize_waits():
            left = deadline - time.perf_counter()
            if left <= 0:
                break
            self._step(left)
        if self.idle:
            self._wake()
        return self.idle

    # -- parsing ---------------------------------------------------------------------------------

    def _schedule(self, delay: float) -> None:
        if self._handle is not None:
            if delay > 0 or self._handle_soon:
                return  # a step is on its way already
            self._handle.cancel()  # someone waits: not for the quiet period
        if delay > 0:
            self._handle = self._loop.call_later(delay, self._run, self._chunks)
        else:
            self._handle = self._loop.call_soon(self._run, self._chunks)
        self._handle_soon = delay <= 0

    def _run(self, chunks: int) -> None:
        """One step: at full speed if output paused or someone waits, else within the budget."""
        self._handle = None
        if self.error is not None or not self._pending:
            self._wake()
            return
        now = time.perf_counter()
        if self._hurry or self._waiters or (chunks == self._chunks and self._reading()):
            # Nothing to relay (or someone waits for the model): not the flood's budget.
            self._step(STEP)
            if self._pending:
                self._schedule(0.0)
            else:
                self._wake()
            return
        credit = self._budget.available(now)
        if credit > 0:
            self._budget.spend(self._step(STEP))
        if self._pending:
            self._schedule(max(QUIET, self._budget.wait()))
        else:
            self._wake()

    def _step(self, budget: float) -> float:
        """Parse pending slices for about ``budget`` seconds (at least one slice)."""
        t0 = time.perf_counter()
        deadline = t0 + budget
        now = t0
        first = True
        while self._pending and self.error is None:
            item = self._pending[0]
            if isinstance(item, _Resize):
                # A step of its own: a reflow may take all of RESIZE_STEP.
                if not first or self._resize_waits():
                    break
                self._pending.popleft()
                self._bounded_resize(item.cols, item.rows)
                now = time.perf_counter()
                break
            else:
                start = self._offset
                end, predicted = self._cost.cut(item.data, start, max(deadline - now, 0.0))
                whole = start == 0 and end == len(item.data)
                data = item.data if whole else item.data[start:end]
                self._parse(data, item.answer, predicted)
                self.backlog -= end - start
                if end >= len(item.data):
                    self._pending.popleft()
                    self._offset = 0
                else:
                    self._offset = end
            first = False
            now = time.perf_counter()
            if now >= deadline:
                break
        spent = now - t0
        if spent > SLOW_STEP:
            log.info("screen model: a parse step held the loop %.0f ms", spent * 1000)
        return spent

    def _parse(self, data: bytes, answer: bool, predicted: float) -> None:
        # CPU time, not wall time: a slice the scheduler preempted (2 CPUs, busy) says nothing
        # about what its bytes cost, and would shrink the slices after it for no reason.
        t0 = time.thread_time()
        screen = self.screen
        try:
            # The primary history is invisible from the alternate screen, yet a resize
            # reflows it: count it on the way in.
            before = None if self._alt else screen.history_rows
            screen.feed(data)
            responses = screen.take_responses()
            alt = screen.is_alt
            if alt and before is not None:
                # Each line feed or screen width of bytes adds at most a row.
                screen.note_primary_rows(before + data.count(b"\n") + len(data) // screen.cols + 1)
            elif not alt:
                screen.note_primary_rows(None)
        except Exception as exc:
            self._fail(f"{type(exc).__name__}: {exc}")
            return
        spent = time.thread_time() - t0
        self._cost.learn(predicted, spent)
        if data:
            # Weighted by bytes: a few slow slices are no change of content.
            weight = len(data) / (len(data) + 256 * 1024)
            self._rate += (spent / len(data) - self._rate) * weight
        left_alt, self._alt = self._alt and not alt, alt
        if responses and answer:
            self._answer(responses)
        if left_alt:
            self._left_alt()

    def _bounded_resize(self, cols: int, rows: int) -> None:
        """Resize the model within about ``RESIZE_STEP``: a change of width that would reflow
        more history than that allows first drops the oldest rows of it."""
        screen = self.screen
        if cols != screen.cols and not self._resized_this_turn:
            self._resized_this_turn = True
            self._loop.call_soon(self._next_turn)
        try:
            old = screen.cols
            history = screen.reflow_rows() if cols != old else 0
            cells = history * max(old, cols)
            sampled: float | None = None
            if cells * ReflowCost.WORST_PER_CELL > RESIZE_STEP:
                # CPU time, as for parse slices: preemption on a busy machine is no cost of
                # the content, and a factor learnt from it would drop history for nothing.
                t0 = time.thread_time()
                sampled = screen.sample_reflow(cols)
                budget = RESIZE_STEP - (time.thread_time() - t0)
                keep = history_that_fits(history, self._reflow.predict(cells, sampled), budget)
                if keep < history:
                    screen.trim_history(keep)
                    left = screen.reflow_rows()
                    self.history_dropped += history - left
                    log.info(
                        "screen model: dropped %d of %d rows of history to reflow them from %d "
                        "to %d columns within %.0f ms",
                        history - left,
                        history,
                        old,
                        cols,
                        RESIZE_STEP * 1000,
                    )
                    cells = left * max(old, cols)
            t0 = time.thread_time()
            screen.resize(cols, rows)
            spent = time.thread_time() - t0
        except Exception as exc:
            self._fail(f"resize failed: {exc}")
            return
        if cells:
            self._reflow.learn(cells, spent, sampled)
        if spent > SLOW_STEP:
            log.info("screen model: a resize held the loop %.0f ms", spent * 1000)
        self._cost.resize(cols, rows)

    def _resize_waits(self) -> bool:
        """The next item is a reflow, and this loop turn has had one already."""
        head = self._pending[0] if self._pending else None
        return (
            self._resized_this_turn and isinstance(head, _Resize) and head.cols != self.screen.cols
        )

    def _next_turn(self) -> None:
        self._resized_this_turn = False
        if self._pending and isinstance(self._pending[0], _Resize):
            self._schedule(0.0)

    def _wake(self) -> None:
        self._hurry = False
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    # -- falling behind and resyncing ------------------------------------------------------------

    def _fall_behind(self) -> None:
        log.info("screen model %d bytes behind a flood: skipping to its tail", self.backlog)
        self._finish_line()
        if self.error is not None:
            return
        self.behind = True
        self.skipped = self.backlog
        last: _Resize | None = None
        for n, item in enumerate(self._pending):
            if isinstance(item, _Chunk):
                self._keep(item.data[self._offset :] if n == 0 else item.data)
            else:
                last = item  # the output between resizes is skipped: only the last matters
        self._pending.clear()
        self._offset = 0
        self.backlog = 0
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._hurry = False
        if last is not None:
            self._pending.append(last)  # in a step of its own, as any resize
            self._schedule(0.0)
        if self._waiters:
            self.start_catch_up()  # someone waits for the model: resync from the tail

    def _finish_line(self) -> None:
        """Parse to the end of a line the model stopped in the middle of, if that is cheap:
        the history then holds no half line where the flood was skipped."""
        head = self._pending[0] if self._pending else None
        if not isinstance(head, _Chunk) or not self._offset or self.error is not None:
            return
        start = self._offset
        if head.data[start - 1] == 10:  # "\n": already at a line start
            return
        nl = head.data.find(b"\n", start, start + _FINISH_LINE_SEARCH)
        if nl < 0:
            return
        predicted = self._cost.predict(head.data, start, nl + 1)
        if predicted <= STEP:
            self._parse(head.data[start : nl + 1], head.answer, predicted)
            self.backlog -= nl + 1 - start
            self._offset = nl + 1

    def _keep(self, data: bytes) -> None:
        self._tail += data
        if len(self._tail) > 2 * TAIL:  # trim in big steps: amortised O(1) per byte
            del self._tail[: len(self._tail) - TAIL]
            self._tail_cut = True

    def _resync(self) -> None:
        """Queue the tail kept while behind, cut to what parses within ``RESYNC_TIME``."""
        tail = self._tail
        if len(tail) > TAIL:
            del tail[: len(tail) - TAIL]
            self._tail_cut = True
        predicted = self._cost.predict(tail)
        if predicted > RESYNC_TIME:
            del tail[: len(tail) - int(len(tail) * RESYNC_TIME / predicted)]
            self._tail_cut = True
        start = resync_start(tail, self._tail_cut)
        log.info(
            "screen model resynced from the last %d of %d bytes", len(tail) - start, self.skipped
        )
        self.behind = False
        self.skipped = 0
        self._tail = bytearray()
        self._tail_cut = False
        self.resynced = True
        # CAN first: the model may have stopped inside an escape sequence, which would
        # otherwise swallow the start of the tail (ESC ^ even the whole of it); and a tail cut
        # at a line start starts on a line of its own, not after half a line the model had.
        newline = b"\r\n" if start and tail[start - 1] == 10 and self.screen.cursor[0] else b""
        data = b"\x18" + newline + bytes(tail[start:])
        self._pending.append(_Chunk(data, False))
        self.backlog += len(data)

    def _fail(self, error: str) -> None:
        if self.error is None:
            self._stop(error)
            self._failed(error)

    def _stop(self, error: str) -> None:
        self.error = error
        self._pending.clear()
        self._offset = 0
        self.backlog = 0
        self._tail = bytearray()
        self.behind = False
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._wake()

    # -- readers: each parses what it can first --------------------------------------------------

    def repaint(self) -> bytes:
        self.settle()
        return self.screen.repaint()

    def history(self, lines: int) -> bytes:
        self.settle()
        return self.screen.history(lines)

    def screen_text(self, escapes: bool = False) -> str:
        self.settle()
        return self.screen.screen_text(escapes=escapes)

    def history_text(self, escapes: bool = False) -> str:
        self.settle()
        return self.screen.history_text(escapes=escapes)

    def reset_modes(self) -> bytes:
        """What undoes the program's terminal modes; if the model could not catch up within
        ``READ_STEP``, it also leaves the alternate screen the unparsed output may have entered."""
        current = self.settle()
        return self.screen.reset_modes(maybe_alt=not current)

    def mode(self, number: int, ansi: bool = False) -> bool:
        self.settle()
        return self.screen.mode(number, ansi)

    @property
    def is_alt(self) -> bool:
        self.settle()
        return self.screen.is_alt

    def compact(self, budget: float) -> bool:
        """Compress cold history once current (True: call again later)."""
        if not self.idle:
            return True
        return self.screen.compact(budget)
