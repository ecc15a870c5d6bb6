"""The screen model's feeding budget and where a resync starts: pure bookkeeping."""

from __future__ import annotations

import pytest

from tmuxish.server.feed import FeedBudget, resync_start


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


def test_a_resync_does_not_let_an_unfinished_sequence_swallow_the_tail() -> None:
    import asyncio

    from tmuxish.server.feed import ScreenFeed
    from tmuxish.server.screen import Screen

    loop = asyncio.new_event_loop()
    try:
        paced = ScreenFeed(
            Screen(80, 24),
            loop,
            answer=lambda _: None,
            left_alt=lambda: None,
            failed=lambda _: None,
            reading=lambda: True,
        )
        paced.push(b"abc\x1b")  # the model stops right after an ESC ...
        paced._fall_behind()
        paced.push(b"^Cdone")  # ... and ESC ^ would start a privacy message
        assert paced.behind
        loop.run_until_complete(paced.catch_up())
        assert not paced.behind and paced.resynced
        assert paced.screen_text().splitlines()[0] == "abc^Cdone"
    finally:
        loop.close()
