"""At the descriptor limit the server backs off instead of spinning, and keeps serving.

The server runs under ``prlimit --nofile=64:64``; idle connections that never send anything use
up its descriptors. accept() then fails with EMFILE while the listening socket stays readable.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hardkit import fd_count
from helpers import Cli, pid_alive, wait_for

from tmuxish import protocol

LIMIT = 64


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.fixture
def limited_server(cli: Cli) -> Iterator[int]:
    """A server whose descriptor limit is LIMIT; yields its pid."""
    proc = subprocess.Popen(
        ["prlimit", f"--nofile={LIMIT}:{LIMIT}", *cli.argv("server")],
        env=cli.env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        pid = wait_for(cli.server_pid, 10, "server start")
        yield pid
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def idle_connections(path: str, count: int) -> list[socket.socket]:
    socks = []
    for _ in range(count):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(path)
        socks.append(s)
    return socks


def accept_log_lines(cli: Cli) -> int:
    with open(f"{cli.socket_path}.log", errors="replace") as f:
        return sum("accept" in line for line in f)


def test_idle_connections_at_the_fd_limit_neither_spin_nor_flood_nor_lock_out(
    cli: Cli, limited_server: int
) -> None:
    pid = limited_server
    idle = idle_connections(str(cli.socket_path), LIMIT + 6)
    try:
        wait_for(lambda: fd_count(pid) >= LIMIT - 1, 10, "the server to reach its fd limit")
        before_cpu, before_lines = cpu_seconds(pid), accept_log_lines(cli)
        # The measurement window is the behaviour under test: a spinning loop burns it all.
        window = 1.0
        time.sleep(window)
        spent = cpu_seconds(pid) - before_cpu
        assert spent < 0.3 * window, f"the server used {spent:.2f}s of CPU in {window}s while idle"
        assert accept_log_lines(cli) - before_lines < 5, "the log floods with accept failures"
        # A real client still gets in while the idle ones are held: the oldest silent
        # connection makes room for it.
        started = time.monotonic()
        out = cli.run("ls", timeout=20)
        assert out.returncode == 0
        assert time.monotonic() - started < 5
    finally:
        for s in idle:
            s.close()
    cli.run("ls")
    assert pid_alive(pid)


def test_new_at_the_fd_limit_says_too_many_open_files(cli: Cli, limited_server: int) -> None:
    pid = limited_server
    made = 0
    for _ in range(LIMIT):
        proc = cli.run("new", "-d", "--", "sleep", "100", check=False)
        if proc.returncode != 0:
            break
        made += 1
    else:
        raise AssertionError(f"{LIMIT} sessions fit in {LIMIT} descriptors")
    assert made > 0
    assert "Traceback" not in proc.stderr and "internal" not in proc.stderr, proc.stderr
    assert "too many open files" in proc.stderr.lower(), (
        proc.stderr + Path(f"{cli.socket_path}.log").read_text()[-3000:]
    )
    assert len(proc.stderr.strip().splitlines()) == 1
    # Nothing half-made is left behind, and the server still answers.
    assert len(cli.sessions()) == made
    assert pid_alive(pid)


def test_a_client_at_the_fd_limit_is_told_so_at_once(cli: Cli, limited_server: int) -> None:
    """Greeted connections (not evictable) use up the descriptors: the next client gets a
    one-line answer instead of waiting in the backlog for its own timeout."""
    held: list[socket.socket] = []
    try:
        while True:
            assert len(held) <= LIMIT, "the limit was never reached"
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            held.append(s)
            s.settimeout(5)
            s.connect(str(cli.socket_path))
            s.sendall(protocol.hello({}))
            reply = next(iter(protocol.Decoder().feed(s.recv(65536))))
            if reply[0] != protocol.HELLO:
                assert "too many open files" in reply[3], reply
                break
        started = time.monotonic()
        proc = cli.run("ls", check=False, timeout=20)
        assert time.monotonic() - started < 3
        assert proc.returncode != 0 and "too many open files" in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1
    finally:
        for s in held:
            s.close()
    wait_for(lambda: cli.run("ls", check=False).returncode == 0, 10, "the server to recover")
