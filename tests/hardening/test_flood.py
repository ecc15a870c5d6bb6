"""Floods: 100 MB printed as fast as possible, with nobody attached and with clients attached.

The server's RSS is sampled every 20 ms throughout and must stay under 200 MiB.
"""

from __future__ import annotations

import hashlib
import time

import pytest
from hardkit import CAT, MIB, Kit, RssSampler, echo_check, rss_mib
from helpers import wait_for

from tmuxish import protocol

FLOOD_BYTES = 100_000_000
LINE = "flood 0123456789 abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ"
RSS_LIMIT_MIB = 200


def flood_script(raw: bool) -> list[str]:
    """Waits for one line, floods, prints a marker, then echoes one more line and idles."""
    setup = "stty raw -echo; " if raw else ""
    return [
        "sh",
        "-c",
        f"{setup}read go; yes '{LINE}' | head -c {FLOOD_BYTES}; echo; echo FLOOD-DONE; "
        "read y; echo got-$y; exec sleep 100000",
    ]


def expected_flood() -> bytes:
    unit = (LINE + "\n").encode()
    return (unit * (FLOOD_BYTES // len(unit) + 1))[:FLOOD_BYTES] + b"\nFLOOD-DONE\n"


@pytest.mark.timeout(240)
def test_flood_with_nobody_attached(kit: Kit) -> None:
    cli = kit.cli
    quiet = cli.new(*CAT)
    sid = cli.new(*flood_script(raw=False))
    pid = kit.server_pid()
    before = rss_mib(pid)
    probe = kit.raw()
    ls_times: list[float] = []
    sends = 0
    with RssSampler(pid) as sampler:
        t0 = time.monotonic()
        cli.run("send", str(sid), "go", "Enter")
        while True:
            t = time.monotonic()
            probe.request("ls")
            ls_times.append(time.monotonic() - t)
            screen = cli.run("capture", str(sid)).stdout
            if "FLOOD-DONE" in screen:
                break
            assert time.monotonic() - t0 < 150, "flood did not finish"
            if sends == 0 and LINE in screen:
                # Typed mid-flood: queued in the tty until the program reads it after the flood.
                t = time.monotonic()
                cli.run("send", str(sid), "hello", "Enter")
                send_time = time.monotonic() - t
                sends += 1
            echo_check(kit, quiet, b"quiet-%d" % len(ls_times))  # other sessions unaffected
        flood_time = time.monotonic() - t0
        wait_for(lambda: "got-hello" in cli.run("capture", str(sid)).stdout, 20, "the typed line")
    cli_ls = time.monotonic()
    cli.run("ls")
    cli_ls = time.monotonic() - cli_ls
    print(
        f"\nflood, no client: {FLOOD_BYTES / 1e6:.0f} MB in {flood_time:.1f}s "
        f"({FLOOD_BYTES / MIB / flood_time:.0f} MiB/s); RSS before {before:.1f} MiB, "
        f"peak {sampler.peak:.1f} MiB ({sampler.samples} samples); "
        f"ls during flood: {len(ls_times)} requests, max {max(ls_times) * 1000:.0f} ms; "
        f"send during flood {send_time * 1000:.0f} ms (CLI); "
        f"`tmuxish ls` after {cli_ls * 1000:.0f} ms"
    )
    assert sends == 1, "never saw the flood on screen to type into it"
    assert sampler.peak < RSS_LIMIT_MIB, f"server RSS peaked at {sampler.peak:.1f} MiB"
    # A client attaching afterwards sees the final screen.
    late = kit.raw()
    info = late.attach(sid)
    initial = info["initial"]
    assert b"FLOOD-DONE" in initial and b"got-hello" in initial, initial[-500:]
    late.close()
    term = kit.attach_pty(sid)
    term.expect(b"got-hello")
    term.send(b"\x10\x11")
    assert term.wait_exit() == 0
    assert b"[detached from session" in term.text()


@pytest.mark.timeout(240)
def test_flood_with_clients_attached(kit: Kit) -> None:
    """A fast reader gets every byte in order; a slow one is cut off with a reason; RSS bounded."""
    cli = kit.cli
    sid = cli.new(*flood_script(raw=True))
    pid = kit.server_pid()
    before = rss_mib(pid)
    fast_conn = kit.raw()
    fast_conn.attach(sid)
    fast = kit.drain(fast_conn, keep=True)
    slow_conn = kit.raw()
    slow_conn.attach(sid)
    slow = kit.drain(slow_conn, delay=0.02, read_size=16384)  # ~0.8 MB/s
    term = kit.attach_pty(sid, keep=64 * 1024)  # a real `tmuxish attach` on a real terminal
    wait_for(lambda: cli.session(sid)["clients"] == 3, 10, "three clients attached")
    expected = expected_flood()
    with RssSampler(pid) as sampler:
        t0 = time.monotonic()
        fast_conn.send(protocol.input_frame(b"go\n"))
        wait_for(lambda: fast.nbytes >= len(expected), 180, "the fast client to get everything")
        flood_time = time.monotonic() - t0
    assert fast.end is None, fast.end
    assert len(fast.data) == len(expected)
    assert hashlib.sha256(fast.data).digest() == hashlib.sha256(expected).digest(), (
        "the fast client's bytes differ from what the program printed"
    )
    # The real terminal kept up or was detached with a message; either way it is not stuck.
    term_line = term.text()[-300:]
    try:
        term.expect(b"FLOOD-DONE", timeout=60)
        term_result = "kept up"
    except AssertionError:
        term.expect(b"[detached from session", timeout=30)
        term_result = "dropped: " + term.text()[-120:].decode(errors="replace")
    # The slow reader: let it catch up now; it either got everything or was told why it was cut.
    slow.delay = 0.0
    slow.done.wait(60)
    if slow.end is not None:
        assert (slow.end[0] == protocol.DETACHED and "too slow" in slow.end[1]) or (
            "stopped reading" in slow.end[1]
        ), slow.end
        slow_result = f"dropped after {slow.bytes_at_end / MIB:.1f} MiB: {slow.end[1]}"
    else:
        wait_for(lambda: slow.nbytes >= len(expected), 60, "slow client to catch up")
        slow_result = "kept up"
    print(
        f"\nflood, 3 clients: {len(expected) / 1e6:.0f} MB in {flood_time:.1f}s; RSS before "
        f"{before:.1f} MiB, peak {sampler.peak:.1f} MiB; fast client: every byte; "
        f"slow client: {slow_result}; terminal: {term_result}"
    )
    assert sampler.peak < RSS_LIMIT_MIB, f"server RSS peaked at {sampler.peak:.1f} MiB"
    # The session is fine and the fast client still attached.
    assert cli.session(sid)["status"] == "running", term_line
    fast_conn.send(protocol.input_frame(b"after\n"))
    wait_for(lambda: b"got-after" in fast.data[-100:], 10, "the session to answer")
