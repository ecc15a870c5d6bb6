"""A server killed with SIGKILL leaves nothing that blocks the next start: the stale socket is
detected and replaced, the flock on `<socket>.lock` died with it.

These are about a server without a keeper (TMUXISH_KEEPER=0): with one, a crashed server is
restarted with its sessions (tests/hardening/test_crash_survival.py).
"""

from __future__ import annotations

import os
import signal
import subprocess

import pytest
from hardkit import Kit, kill_and_wait
from helpers import Cli, pid_alive, wait_for


@pytest.fixture(autouse=True)
def no_keeper(cli: Cli) -> None:
    cli.env["TMUXISH_KEEPER"] = "0"


@pytest.mark.timeout(120)
def test_sigkill_leaves_no_stale_state(kit: Kit) -> None:
    cli = kit.cli
    for generation in range(2):
        sid = cli.new("sh", "-c", "exec sleep 100000")
        program = cli.session(sid)["pid"]
        pid = kit.server_pid()
        term = kit.attach_pty(sid, mode="relay" if generation % 2 else "direct")
        wait_for(lambda sid=sid: cli.session(sid)["clients"] == 1, 10, "attached")

        kill_and_wait(pid, signal.SIGKILL)
        assert kit.path.exists(), "expected a stale socket after SIGKILL"
        assert os.path.exists(f"{kit.path}.lock")
        # The attached client notices and exits; the program lost its terminal (SIGHUP).
        term.expect(b"[", timeout=10)
        assert term.wait_exit() == 1
        wait_for(lambda p=program: not pid_alive(p), 10, "the orphaned program to end")
        # `ls` lists nothing and says the server is gone, without hanging or starting one...
        r = cli.run("ls", timeout=10, check=False)
        assert r.stdout.strip() == "" and cli.server_pid() is None
        assert r.returncode == 1, r
        assert r.stderr.endswith("the server is gone, its socket is stale\n"), r.stderr
        # ...and the next command that needs one starts a fresh server in the same place.
        new_id = cli.new("true")
        assert new_id == 1, "a fresh server numbers from 1"
        new_pid = kit.server_pid()
        assert new_pid != pid
        log = (kit.path.parent / "s.log").read_text()
        assert log.count("listening on") == generation + 2


@pytest.mark.timeout(120)
def test_racing_clients_after_a_crash_start_exactly_one_server(kit: Kit) -> None:
    cli = kit.cli
    cli.new("true")
    kill_and_wait(kit.server_pid(), signal.SIGKILL)
    procs = [
        subprocess.Popen(
            cli.argv("new", "-d", "--", "sleep", "1000"),
            env=cli.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(8)
    ]
    outs = [p.communicate(timeout=30) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    assert sorted(int(o.strip()) for o, _ in outs) == list(range(1, 9))
    assert len(cli.sessions()) == 8
    servers = [
        d
        for d in os.listdir("/proc")
        if d.isdigit() and _cmdline(int(d)).endswith(f"-S\0{kit.path}\0server\0")
    ]
    assert len(servers) == 1, servers


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline") as f:
            return f.read()
    except OSError:
        return ""
