"""Stuck clients: one client that stops reading never slows the others; past the bound it is dropped
with a message it sees when it wakes, and it can attach again.

Two ways to be stuck: a relaying `tmuxish attach` stopped with SIGSTOP, and a terminal nobody reads
(direct attach: the server writes to the terminal itself, so stopping the client process changes
nothing; the terminal's reader is what stops).
"""

from __future__ import annotations

import signal
import time

import pytest
from hardkit import Kit, session_clients
from helpers import wait_for

STALL = 2.0
#: Steady heavy output (a few MB/s), with pauses so the CPU is not pinned.
PRODUCER = ["sh", "-c", "while :; do seq 1 10000; sleep 0.01; done"]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("how", ["relay-sigstop", "direct-unread-terminal"])
def test_stuck_client_is_dropped_without_delaying_others(kit: Kit, how: str) -> None:
    cli = kit.cli
    cli.env["TMUXISH_STALL_TIMEOUT"] = str(STALL)  # the autostarted server inherits it
    a = cli.new(*PRODUCER)
    b = cli.new(*PRODUCER)
    mode = "relay" if how.startswith("relay") else "direct"
    stuck = kit.attach_pty(a, mode=mode)
    stuck.expect(b"9999")
    same_conn = kit.raw()
    same_conn.attach(a)
    same = kit.drain(same_conn)
    other_conn = kit.raw()
    other_conn.attach(b)
    other = kit.drain(other_conn)
    wait_for(lambda: session_clients(cli, a) == 2, 10, "both clients on session a")

    t_stop = time.monotonic()
    if mode == "relay":
        stuck.signal(signal.SIGSTOP)
    else:
        stuck.pause()
    wait_for(lambda: session_clients(cli, a) == 1, STALL + 30, "the stuck client to be dropped")
    t_drop = time.monotonic()
    dropped_after = t_drop - t_stop
    gaps = {name: d.max_gap(t_stop, t_drop) for name, d in (("same", same), ("other", other))}
    rates = {
        name: d.bytes_between(t_stop, t_drop) / (t_drop - t_stop) / 1e6
        for name, d in (("same", same), ("other", other))
    }
    print(
        f"\n{how}: dropped {dropped_after:.1f}s after it stopped reading (stall timeout {STALL}s); "
        f"meanwhile the other clients got {rates['same']:.1f} MB/s (same session, longest gap "
        f"{gaps['same'] * 1000:.0f} ms) and {rates['other']:.1f} MB/s (other session, longest "
        f"gap {gaps['other'] * 1000:.0f} ms)"
    )
    assert dropped_after >= STALL * 0.9
    for name in ("same", "other"):
        assert gaps[name] < 1.0, f"output to the {name} client stalled for {gaps[name]:.2f}s"
        assert rates[name] > 0.2, f"output to the {name} client slowed to {rates[name]:.2f} MB/s"
    assert same.end is None and other.end is None

    # It wakes up: the message is on its terminal, it exits non-zero, the session runs on.
    mark = stuck.mark()
    if mode == "relay":
        stuck.signal(signal.SIGCONT)
    else:
        stuck.resume()
    stuck.expect(f"[detached from session {a}: client ".encode(), timeout=30, since=0)
    tail = stuck.text()[-200:]
    assert b"stopped reading" in tail or b"too slow" in tail, tail
    assert stuck.wait_exit() == 1
    assert stuck.total > mark or mode == "direct"
    assert cli.session(a)["status"] == "running"

    # And it may attach again.
    again = kit.attach_pty(a, mode=mode)
    again.expect(b"9999")
    wait_for(lambda: session_clients(cli, a) == 2, 10, "re-attached")
    again.send(b"\x10\x11")
    assert again.wait_exit() == 0
    assert b"[detached from session" in again.text()[-300:]
    assert session_clients(cli, a) == 1
