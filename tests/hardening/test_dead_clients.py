"""Dead clients: kill -9 of attach clients during heavy output; the session runs on and the
server's memory and descriptors return to where they were."""

from __future__ import annotations

import signal

import pytest
from hardkit import (
    MIB,
    Kit,
    RssSampler,
    fd_count,
    kill_and_wait,
    rss_mib,
    session_clients,
    settle_rss,
)
from helpers import wait_for

HEAVY = ["sh", "-c", "while :; do seq 1 100000; done"]


@pytest.mark.timeout(180)
def test_kill_9_clients_during_heavy_output(kit: Kit) -> None:
    cli = kit.cli
    sid = cli.new(*HEAVY)
    pid = kit.server_pid()
    # Warm up: fill the screen model's scrollback (capped) and the allocator's pools, and go
    # through one attach/kill cycle of each kind, so the baseline is the steady state.
    warm_conn = kit.raw()
    warm_conn.attach(sid)
    warm = kit.drain(warm_conn)
    wait_for(lambda: warm.nbytes > 40 * MIB, 60, "40 MiB of output")
    warm.stop()
    warm_conn.close()
    for mode in ("direct", "relay"):
        c = kit.attach_pty(sid, mode=mode)
        c.expect(b"99999")
        kill_and_wait(c.pid)
    wait_for(lambda: session_clients(cli, sid) == 0, 10, "no clients")
    base_rss = settle_rss(pid, rss_mib(pid) - 4, timeout=3)
    base_fds = fd_count(pid)

    rounds = 4
    sampler = RssSampler(pid).__enter__()
    for i in range(rounds):
        clients = []
        for mode in ("direct", "relay", "relay"):
            c = kit.attach_pty(sid, mode=mode)
            clients.append(c)
        for c in clients:
            c.expect(b"99999")
        wait_for(lambda: session_clients(cli, sid) == 3, 10, "3 clients attached")
        # One of them also stops reading first, so the server holds a backlog for it.
        clients[2].signal(signal.SIGSTOP)
        for c in clients:
            kill_and_wait(c.pid)  # SIGKILL works on a stopped process too
        wait_for(lambda: session_clients(cli, sid) == 0, 10, f"round {i}: clients gone")

    sampler.__exit__()
    peak = sampler.peak
    assert cli.session(sid)["status"] == "running"
    after = settle_rss(pid, base_rss + 8)
    wait_for(lambda: fd_count(pid) <= base_fds, 10, f"fds back to {base_fds}")
    print(
        f"\ndead clients: {rounds * 3} clients killed with SIGKILL mid-output; RSS baseline "
        f"{base_rss:.1f} MiB, peak {peak:.1f}, after {after:.1f}; fds {base_fds} -> {fd_count(pid)}"
    )
    assert after - base_rss < 8, f"server RSS grew {after - base_rss:.1f} MiB"
    # The session still produces output for a new client.
    check = kit.raw()
    check.attach(sid)
    d = kit.drain(check)
    wait_for(lambda: d.nbytes > MIB, 10, "output after the killings")
