"""The feed: its budget, where a resync starts, slices cut to a step, and a model that
catches up to exactly what a whole-chunk feed gives."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator

import pytest

from tmuxish.server import feed as feed_mod
from tmuxish.server.feed import FeedBudget, ScreenFeed, _Chunk, resync_start
from tmuxish.server.parse_cost import MIN_SLICE, SliceCost
from tmuxish.server.screen import Screen


def test_budget_starts_with_its_bank() -> None:
    budget = FeedBudget(share=0.15, bank=0.02, now=100.0)
    assert budget.available(100.0) == pytest.approx(0.02)
    assert budget.wait() == 0.0


def test_budget_refills_at_its_share_of_wall_time_up_to_the_bank() -> None:
    budget = FeedBudget(share=0.15, bank=0.02, now=0.0)
    budget.spend(0.02)
    assert budget.available(0.0) == pytest.approx(0.0)
    assert budget.available(0.1) == pytest.approx(0.015)  # 15% of 100 ms
    assert budget.available(10.0) == pytest.approx(0.02)  # a long pause banks no more


def test_an_overrun_is_paid_back_before_more_parsing() -> None:
    budget = FeedBudget(share=0.1, bank=0.02, now=0.0)
    budget.spend(0.05)  # one big chunk took 50 ms
    assert budget.available(0.0) == pytest.approx(-0.03)
    assert budget.wait() == pytest.approx(0.3)  # 30 ms of debt at 10% of wall time
    assert budget.available(0.3) == pytest.approx(0.0, abs=1e-9)
    assert budget.available(0.4) == pytest.approx(0.01)


def test_sustained_parsing_stays_within_the_share() -> None:
    # A flood: parse whenever there is credit, 4 ms a chunk, for 10 simulated seconds.
    budget = FeedBudget(share=0.15, bank=0.02, now=0.0)
    now, parsed = 0.0, 0.0
    while now < 10.0:
        if budget.available(now) > 0:
            budget.spend(0.004)
            parsed += 0.004
        now += 0.001
    assert parsed <= 0.15 * 10.0 + 0.02 + 0.004
    assert parsed >= 0.15 * 10.0 - 0.01


def test_an_uncut_tail_is_fed_whole() -> None:
    assert resync_start(b"\x1b[31mred\r\nmore", cut=False) == 0


def test_a_cut_tail_starts_after_its_first_line_break() -> None:
    tail = b"5;31mend of a line\r\nnext line\r\n"
    assert tail[resync_start(tail, cut=True) :] == b"next line\r\n"


def test_a_cut_tail_without_lines_starts_at_an_escape_sequence() -> None:
    tail = b"[12;1Hxx\x1b[1;1Hscreen"
    assert tail[resync_start(tail, cut=True) :] == b"\x1b[1;1Hscreen"


def test_a_cut_tail_of_plain_bytes_is_fed_as_is() -> None:
    assert resync_start(b"x" * 100, cut=True) == 0


def test_a_resync_does_not_let_an_unfinished_sequence_swallow_the_tail(
    loop: asyncio.AbstractEventLoop,
) -> None:
    paced = make_feed(loop)
    paced.push(b"abc\x1b")  # the model stops right after an ESC ...
    paced._fall_behind()
    paced.push(b"^Cdone")  # ... and ESC ^ would start a privacy message
    assert paced.behind
    loop.run_until_complete(paced.catch_up())
    assert not paced.behind and paced.resynced
    assert paced.screen_text().splitlines()[0] == "abc^Cdone"


# -- the feed ----------------------------------------------------------------------------------


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def make_feed(
    loop: asyncio.AbstractEventLoop,
    cols: int = 80,
    rows: int = 24,
    answers: list[bytes] | None = None,
) -> ScreenFeed:
    return ScreenFeed(
        Screen(cols, rows),
        loop,
        answer=(answers if answers is not None else []).append,
        left_alt=lambda: None,
        failed=lambda _: None,
        reading=lambda: True,
    )


def coloured(lines: int) -> bytes:
    return b"".join(b"\x1b[1;3%dmline-%d\x1b[0m\r\n" % (i % 8, i) for i in range(lines))


def test_a_caught_up_feed_is_the_screen_fed_whole(
    loop: asyncio.AbstractEventLoop, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(feed_mod, "BEHIND_LIMIT", 64 * 1024 * 1024)  # about catching up, not
    monkeypatch.setattr(feed_mod, "BEHIND_TIME", 3600.0)  # about letting go (even when slow)
    data = coloured(150_000) + b"\x1b[5;7Hend\x1b[?25l"
    feed = make_feed(loop)
    for i in range(0, len(data), 65536):
        feed.push(data[i : i + 65536])
    assert not feed.idle  # more than one bounded step's worth
    loop.run_until_complete(feed.catch_up())
    assert feed.idle and feed.backlog == 0
    whole = Screen(80, 24)
    whole.feed(data)
    assert feed.screen_text() == whole.screen_text()
    assert feed.history_text() == whole.history_text()
    assert feed.repaint() == whole.repaint()


def test_a_resize_waits_for_the_bytes_written_before_it(loop: asyncio.AbstractEventLoop) -> None:
    data = coloured(20000)
    feed = make_feed(loop)
    feed.push(data)
    feed.resize(40, 10)
    assert feed.screen.cols == 80  # the bytes before it are not parsed yet
    loop.run_until_complete(feed.catch_up())
    whole = Screen(80, 24)
    whole.feed(data)
    whole.resize(40, 10)
    assert (feed.screen.cols, feed.screen.rows) == (40, 10)
    assert feed.screen_text() == whole.screen_text()


def test_replies_come_from_live_output_but_not_from_a_resync_tail(
    loop: asyncio.AbstractEventLoop,
) -> None:
    answers: list[bytes] = []
    feed = make_feed(loop, answers=answers)
    feed.push(b"\x1b[6n")
    loop.run_until_complete(feed.catch_up())
    assert answers == [b"\x1b[1;1R"]
    feed._fall_behind()
    feed.push(b"x\r\n\x1b[6n")
    loop.run_until_complete(feed.catch_up())
    assert feed.resynced and answers == [b"\x1b[1;1R"]


def test_a_reset_before_the_model_caught_up_leaves_the_alternate_screen(
    loop: asyncio.AbstractEventLoop,
) -> None:
    # Seconds of parsing (REP), then the alternate screen: a detach now cannot wait for it.
    feed = make_feed(loop)
    feed.push(b"a\x1b[65535b" * 5000 + b"\x1b[?1049h")
    assert b"\x1b[?1047l" in feed.reset_modes()
    assert not feed.idle
    loop.run_until_complete(feed.catch_up())
    assert feed.is_alt
    reset = feed.reset_modes()
    assert b"\x1b[?1049l" in reset and b"\x1b[?1047l" not in reset


def test_a_model_let_go_mid_line_keeps_no_half_line(
    loop: asyncio.AbstractEventLoop, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(feed_mod, "TAIL", 4096)  # the tail resynced from is cut, at a line
    feed = make_feed(loop)
    data = b"".join(b"line-%d\r\n" % i for i in range(1000, 2000))
    cut = data.index(b"line-1500") + 8
    feed._parse(data[:cut], True, 0.0)  # the model stopped after "line-150" of "line-1500" ...
    feed._pending.append(_Chunk(data, True))
    feed._offset = cut
    feed.backlog = len(data) - cut
    feed._fall_behind()  # ... when the flood was let go
    feed.push(b"".join(b"line-%d\r\n" % i for i in range(5000, 6000)))
    loop.run_until_complete(feed.catch_up())
    numbers = [int(n) for n in re.findall(r"line-(\d+)", feed.history_text() + "\n")]
    assert 150 not in numbers and 1500 in numbers  # the line was finished, not cut
    assert numbers[-1] == 5999


@pytest.mark.parametrize(
    ("unit", "size"),
    [
        (b"a\x1b[65535b", (80, 24)),
        (b"\x1bc", (80, 24)),
        (b"\x1b#8", (1000, 1000)),
        (b"\x1b[2J", (1000, 1000)),
        (b"\x1b[9999L", (1000, 1000)),
        (b"\n", (1000, 1000)),
        (b"\x1b[1;31mword\x1b[0m ", (80, 24)),
    ],
)
def test_a_slice_is_cut_to_what_fits_a_step(unit: bytes, size: tuple[int, int]) -> None:
    # The prediction is an upper bound: a slice cut for 4 ms parses within it, with a wide
    # margin for a shared machine (before, one 64 KiB read of these took 0.3 to 6.6 s).
    cols, rows = size
    data = unit * (65536 // len(unit))
    cost = SliceCost(cols, rows)
    screen = Screen(cols, rows)
    worst = 0.0
    start = 0
    for _ in range(5):
        end, predicted = cost.cut(data, start, 0.004)
        assert predicted <= 0.004 or end - start <= MIN_SLICE
        t0 = time.perf_counter()
        screen.feed(data[start:end])
        worst = max(worst, time.perf_counter() - t0)
        start = end
    assert worst < 0.05, worst
