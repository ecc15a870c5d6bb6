"""A dropped ssh link under a remote attach says so (issue 14), instead of '[server exited]'."""

from __future__ import annotations

import os
import signal
from typing import Any

import pexpect
import pytest
from helpers import Cli, pid_alive, wait_for
from sshd_host import RemoteCli

pytestmark = pytest.mark.timeout(120)


def _dial_stdio_pids(socket_path: str) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if b"dial-stdio" in argv and socket_path.encode() in argv:
            pids.append(int(entry))
    return pids


def _sshd_ancestor(pid: int) -> int:
    """The per-connection sshd above ``pid`` (killing it drops the TCP link)."""
    while pid > 1:
        with open(f"/proc/{pid}/stat") as f:
            ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        with open(f"/proc/{ppid}/comm") as f:
            if f.read().strip().startswith("sshd"):
                return ppid
        pid = ppid
    raise AssertionError("no sshd above dial-stdio")


def test_dropped_link_says_so(remote: RemoteCli, cli: Cli) -> None:
    sid = cli.new("sh", name="far")
    child: Any = remote.spawn("attach", str(sid))
    wait_for(lambda: cli.session(sid)["clients"] == 1, 15, "the remote attach")
    [dialer] = wait_for(lambda: _dial_stdio_pids(str(cli.socket_path)), 15, "dial-stdio")
    sshd = _sshd_ancestor(dialer)
    os.kill(sshd, signal.SIGKILL)
    child.expect(rf"\[lost the ssh connection to {remote.sshd.url}".encode())
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 1
    assert b"server exited" not in child.before
    # The far server and its session are untouched.
    assert cli.session(sid)["status"] == "running"
    wait_for(lambda: not pid_alive(dialer), 15, "dial-stdio to end")
