"""A resize of the screen model is bounded like a parse step: libghostty reflows all the history
in one call when the width changes (0.4 s for 14,000 lines from 10,000 columns back to 80), so
the feed reflows only the history that fits ``RESIZE_STEP``, applies at most one reflow a loop
turn, and makes a burst of resizes one.

The assertions are on the mechanism (cells handed to one reflow, reflows per turn), not on
measured step times, which a busy machine would make flaky.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator

import pytest

pytest.importorskip("pyghostty")

from tmuxish.server import feed as feed_mod
from tmuxish.server.feed import ScreenFeed
from tmuxish.server.parse_cost import ReflowCost, history_that_fits
from tmuxish.server.screen import Screen

#: A full default history of plain lines.
FULL = 14_000


class CountingLoop(asyncio.SelectorEventLoop):
    """An event loop that counts its turns (``_run_once``: one select and the callbacks that
    were ready), so a test can tell two reflows in one turn from two in consecutive ones."""

    turns = 0

    def _run_once(self) -> None:
        self.turns += 1
        super()._run_once()  # type: ignore[misc]


@pytest.fixture
def loop() -> Iterator[CountingLoop]:
    loop = CountingLoop()
    yield loop
    loop.close()


def lines(count: int, start: int = 0) -> bytes:
    return b"".join(b"line-%05d %s\r\n" % (i, b"x" * 60) for i in range(start, start + count))


def make_feed(loop: asyncio.AbstractEventLoop, history: int) -> ScreenFeed:
    screen = Screen(80, 24)
    data = lines(history)
    for i in range(0, len(data), 65536):
        screen.feed(data[i : i + 65536])
    return ScreenFeed(
        screen,
        loop,
        answer=lambda _: None,
        left_alt=lambda: None,
        failed=lambda error: pytest.fail(error),
        reading=lambda: True,
    )


class Reflows:
    """Every change of the model's size: (history rows, old cols, new cols, loop turn)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, feed: ScreenFeed) -> None:
        self.calls: list[tuple[int, int, int, int]] = []
        screen = feed.screen
        loop = feed._loop
        assert isinstance(loop, CountingLoop)
        real = Screen.resize

        def resize(this: Screen, cols: int, rows: int) -> None:
            if this is screen and (cols, rows) != (this.cols, this.rows):
                self.calls.append((this.reflow_rows(), this.cols, cols, loop.turns))
            real(this, cols, rows)

        monkeypatch.setattr(Screen, "resize", resize)

    def narrowing(self) -> list[int]:
        """Cells of history each reflow to fewer columns read: the costly direction (widening
        80 to 10,000 columns costs ~0.3 ns a cell of the new width, narrowing back 3-8)."""
        return [rows * old for rows, old, new, _ in self.calls if new < old]


def run_turns(loop: asyncio.AbstractEventLoop, reflows: Reflows, feed: ScreenFeed) -> None:
    """Run the loop until the model has applied every resize."""

    async def turns() -> None:
        async with asyncio.timeout(10.0):
            while not feed.idle:
                await asyncio.sleep(0.001)

    loop.run_until_complete(turns())


def in_one_turn(loop: asyncio.AbstractEventLoop, action: Callable[[], None]) -> None:
    """Run ``action`` inside one loop turn, as a read of many frames is (a task's first step
    is one callback), failing the test if it raises."""

    async def step() -> None:
        action()

    loop.run_until_complete(step())


def test_history_that_fits_scales_with_the_budget() -> None:
    assert history_that_fits(1000, 0.01, 0.05) == 1000
    assert history_that_fits(1000, 0.5, 0.05) == 100
    assert history_that_fits(1000, 0.5, -0.01) == 0  # the sample alone took the budget


def test_reflow_cost_learns_a_miss_at_once_and_decays_back() -> None:
    cost = ReflowCost()
    assert cost.predict(1_000_000, 5e-9) == pytest.approx(1_000_000 * 5e-9 * cost.START_FACTOR)
    cost.learn(1_000_000, 0.04, 5e-9)  # eight times the sample
    assert cost.factor == pytest.approx(8.0)
    assert cost.per_cell == pytest.approx(40e-9)
    for _ in range(50):
        cost.learn(1_000_000, 0.005, 5e-9)
    assert cost.factor == 1.0  # down to what the reflows took, not below
    for _ in range(50):
        cost.learn(1_000_000, 0.001, 5e-9)
    assert cost.factor == cost.MIN_FACTOR
    assert cost.predict(1_000_000, None) == pytest.approx(0.001 * cost.MIN_FACTOR)


def test_a_sample_predicts_the_reflow_of_plain_history_within_a_few_times() -> None:
    screen = Screen(80, 24)
    data = lines(3000)
    for i in range(0, len(data), 65536):
        screen.feed(data[i : i + 65536])
    sampled = screen.sample_reflow(200)
    assert sampled is not None and sampled > 0
    assert screen.cols == 80 and screen.history_rows >= 2900  # the sample left it alone
    screen.feed(b"\x1b[?1049h")
    assert screen.sample_reflow(200) is None  # the primary history is out of sight


def test_the_full_history_is_never_reflowed_from_10000_columns_in_one_step(
    loop: asyncio.AbstractEventLoop, monkeypatch: pytest.MonkeyPatch
) -> None:
    feed = make_feed(loop, FULL)
    reflows = Reflows(monkeypatch, feed)
    for _ in range(3):
        feed.resize(10000, 100)
        run_turns(loop, reflows, feed)
        feed.resize(80, 24)
        run_turns(loop, reflows, feed)
    assert (feed.screen.cols, feed.screen.rows) == (80, 24)
    # The old code handed libghostty 14,000 rows of 10,000 cells (140M cells, 0.4-0.7 s) on
    # every way back; plain text costs 2-8 ns a cell, so 50 ms is at most ~25M of them.
    assert max(reflows.narrowing()) <= 40_000_000, reflows.calls
    assert feed.history_dropped > 0
    # What is left is the newest history, in order, and the screen is intact.
    text = feed.history_text()
    numbers = [int(n) for n in text.split("line-")[1:] if n[:5].isdigit() for n in [n[:5]]]
    assert numbers == list(range(FULL - len(numbers), FULL))


def test_a_burst_of_resizes_costs_one_reflow_per_loop_turn_and_ends_at_the_last(
    loop: asyncio.AbstractEventLoop, monkeypatch: pytest.MonkeyPatch
) -> None:
    feed = make_feed(loop, 2000)
    reflows = Reflows(monkeypatch, feed)
    # As from many RESIZE frames in one read: all within one loop turn.

    def burst() -> None:
        for i in range(200):
            feed.resize(10000 if i % 2 else 80 + i, 24)
        feed.resize(100, 30)
        assert len(reflows.calls) == 1  # the first at once, the rest wait for a step

    in_one_turn(loop, burst)
    run_turns(loop, reflows, feed)
    assert (feed.screen.cols, feed.screen.rows) == (100, 30)
    assert len(reflows.calls) == 2  # and are one resize: the last
    turns = [turn for *_, turn in reflows.calls]
    assert len(set(turns)) == len(turns)


def test_readers_do_not_apply_a_second_reflow_in_the_same_turn(
    loop: asyncio.AbstractEventLoop, monkeypatch: pytest.MonkeyPatch
) -> None:
    feed = make_feed(loop, 2000)
    reflows = Reflows(monkeypatch, feed)

    def burst() -> None:
        feed.resize(200, 24)
        for cols in (90, 300, 120):
            feed.resize(cols, 24)
            feed.screen_text()  # a reader settles first, but not with another reflow this turn
            feed.mode(1)
        assert len(reflows.calls) == 1

    in_one_turn(loop, burst)
    run_turns(loop, reflows, feed)
    assert feed.screen.cols == 120


def test_resizes_with_output_between_them_each_get_a_step_of_their_own(
    loop: asyncio.AbstractEventLoop, monkeypatch: pytest.MonkeyPatch
) -> None:
    feed = make_feed(loop, 2000)
    reflows = Reflows(monkeypatch, feed)
    feed.push(b"before\r\n")
    for cols in (100, 120, 140):
        feed.resize(cols, 24)
        feed.push(b"at %d\r\n" % cols)
    run_turns(loop, reflows, feed)
    assert [new for _, _, new, _ in reflows.calls] == [100, 120, 140]
    turns = [turn for *_, turn in reflows.calls]
    assert len(set(turns)) == len(turns)
    assert "at 140" in feed.screen_text()


def test_normal_resizes_keep_all_history_and_match_a_direct_reflow(
    loop: asyncio.AbstractEventLoop, monkeypatch: pytest.MonkeyPatch
) -> None:
    feed = make_feed(loop, 3000)
    reference = Screen(80, 24)
    data = lines(3000)
    for i in range(0, len(data), 65536):
        reference.feed(data[i : i + 65536])
    reflows = Reflows(monkeypatch, feed)
    for size in ((200, 50), (1000, 40), (120, 30), (80, 24)):
        feed.resize(*size)
        run_turns(loop, reflows, feed)
        Screen.resize(reference, *size)
        assert feed.history_dropped == 0
        assert feed.history_text() == reference.history_text()
        assert feed.repaint() == reference.repaint()


def test_on_the_alternate_screen_the_primary_history_is_counted_and_trimmed(
    loop: asyncio.AbstractEventLoop, monkeypatch: pytest.MonkeyPatch
) -> None:
    feed = make_feed(loop, FULL)
    before = feed.screen.history_rows
    feed.push(b"more\r\n" * 10 + b"\x1b[?1049hvim")
    loop.run_until_complete(feed.catch_up())
    assert feed.screen.is_alt
    # libghostty reports no history here; the count taken on the way in is a bound.
    assert before + 10 <= feed.screen.reflow_rows() <= before + 100
    reflows = Reflows(monkeypatch, feed)
    for _ in range(2):
        feed.resize(10000, 100)
        run_turns(loop, reflows, feed)
        feed.resize(80, 24)
        run_turns(loop, reflows, feed)
    # The rows recorded are the bound, which the reflows were cut to.
    assert max(reflows.narrowing()) <= 40_000_000, reflows.calls
    assert "vim" in feed.screen_text()
    bound = feed.screen.reflow_rows()
    feed.push(b"\x1b[?1049l")
    loop.run_until_complete(feed.catch_up())
    assert feed.screen.history_rows <= bound
    assert feed.screen.history_rows < before


def test_a_resize_queued_when_the_model_falls_behind_is_applied_last(
    loop: asyncio.AbstractEventLoop, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(feed_mod, "BEHIND_LIMIT", 64 * 1024)
    feed = make_feed(loop, 100)
    reflows = Reflows(monkeypatch, feed)
    feed.push(lines(10))
    for cols in (100, 10000, 90):
        feed.resize(cols, 24)
        feed.push(lines(10))
    feed.push(lines(2000))  # past the bound: skipped to its tail
    assert feed.behind
    loop.run_until_complete(feed.catch_up())
    assert feed.screen.cols == 90
    # The first one came while the model was current; the one whose output was skipped never
    # reflowed.
    assert [new for _, _, new, _ in reflows.calls] == [100, 90]
