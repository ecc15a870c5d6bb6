"""`tmuxish wait` survives `tmuxish server upgrade`, so `tmuxish wait build && deploy` holds."""

from __future__ import annotations

import platform
import subprocess

import pytest
from helpers import Cli, wait_for

#: recvfrom(2) on x86_64: the blocking read a client does while it waits for a reply.
RECVFROM = "45 "


@pytest.mark.skipif(platform.machine() != "x86_64", reason="syscall numbers are x86_64's")
def test_wait_keeps_waiting_across_a_server_upgrade(cli: Cli) -> None:
    # Failed before: wait exited 1 with "unexpected stream data while waiting for a reply".
    sid = cli.new("sh", "-c", "read x; exit 7")
    waiter = subprocess.Popen(
        cli.argv("wait", str(sid)),
        env=cli.env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # Waiting on the server means blocked reading its socket (not still starting Python).
        wait_for(lambda: _syscall(waiter.pid).startswith(RECVFROM), 20, "wait to be waiting")
        assert "1 sessions kept" in cli.run("server", "upgrade").stdout
        assert waiter.poll() is None
        cli.run("send", str(sid), "go", "Enter")
        out, err = waiter.communicate(timeout=20)
    finally:
        if waiter.poll() is None:
            waiter.kill()
            waiter.wait(10)
    assert (waiter.returncode, out, err) == (7, "", "")


def _syscall(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/syscall") as f:
            return f.read()
    except OSError:
        return ""
