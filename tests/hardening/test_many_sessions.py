"""Many sessions: 1000 in one server (`sleep` and interactive `sh`), `ls` stays fast, memory per
session is measured and reported. No timing assertions, only generous sanity bounds."""

from __future__ import annotations

import shutil
import statistics
import subprocess
import time

import pytest
from hardkit import CAT, MIB, Kit, echo_check, fd_count, rss_mib
from helpers import TMUXISH, wait_for

N = 1000


@pytest.mark.timeout(180)
def test_a_thousand_sessions(kit: Kit) -> None:
    cli = kit.cli
    cli.env["PS1"] = "$ "
    cli.env["ENV"] = "/dev/null"
    # Start the server with the soft descriptor limit most systems default to (1024): each
    # session needs two (PTY master and pidfd), so the server must raise its own limit.
    if shutil.which("prlimit"):
        subprocess.run(
            ["prlimit", "--nofile=1024:", "--", *cli.argv("new", "-d", "--", *CAT)],
            env=cli.env,
            check=True,
            capture_output=True,
            timeout=30,
        )
        first = 1
    else:
        first = cli.new(*CAT)
    pid = kit.server_pid()
    echo_check(kit, first, b"warm")
    base_rss = rss_mib(pid)
    base_fds = fd_count(pid)
    conn = kit.raw(timeout=30)
    t0 = time.monotonic()
    for i in range(N):
        argv = ["sleep", "100000"] if i % 2 else ["sh", "-i"]
        conn.request("new", command=argv, cols=80, rows=24)
    create_time = time.monotonic() - t0
    sessions = conn.request("ls")
    assert len(sessions) == N + 1 and all(s["status"] == "running" for s in sessions)
    # Let the shells print their prompts into their screen models before measuring.
    wait_for(lambda: "$" in cli.run("capture", str(N)).stdout, 20, "the last shell's prompt")

    proto_ls = []
    for _ in range(20):
        t = time.monotonic()
        conn.request("ls")
        proto_ls.append(time.monotonic() - t)
    cli_ls = []
    for args in (("ls",), ("ls", "--json"), ("ls",)):
        t = time.monotonic()
        out = cli.run(*args).stdout
        cli_ls.append(time.monotonic() - t)
        assert out.count("sleep") == N // 2, out[:500]
    startup = time.monotonic()
    subprocess.run([*TMUXISH, "--version"], capture_output=True, check=True)
    startup = time.monotonic() - startup
    # The others still answer promptly.
    t = time.monotonic()
    echo_check(kit, first, b"still-fast")
    attach_echo = time.monotonic() - t

    rss = rss_mib(pid)
    fds = fd_count(pid)
    per_session_kib = (rss - base_rss) * 1024 / N
    print(
        f"\n{N} sessions ({N // 2} sleep, {N // 2} sh -i) created in {create_time:.1f}s "
        f"({create_time / N * 1000:.1f} ms each)\n"
        f"ls over the protocol: median {statistics.median(proto_ls) * 1000:.1f} ms, "
        f"max {max(proto_ls) * 1000:.1f} ms; `tmuxish ls` wall time "
        f"{', '.join(f'{x * 1000:.0f}' for x in cli_ls)} ms (python startup alone "
        f"{startup * 1000:.0f} ms); attach+echo on another session {attach_echo * 1000:.0f} ms\n"
        f"server RSS {base_rss:.1f} -> {rss:.1f} MiB: {per_session_kib:.0f} KiB per session; "
        f"fds {base_fds} -> {fds} ({(fds - base_fds) / N:.1f} per session)"
    )
    # Sanity only: nothing quadratic, nothing huge.
    assert statistics.median(proto_ls) < 1.0
    assert rss - base_rss < N * 2 * MIB / MIB, "more than 2 MiB per session"
    assert fds - base_fds <= 3 * N
