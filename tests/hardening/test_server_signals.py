"""Server signals: SIGTERM/SIGHUP end every session cleanly (SIGHUP to each program), the server
exits and removes its socket; SIGPIPE never kills it."""

from __future__ import annotations

import os
import signal
import socket
import struct

import pytest
from hardkit import CAT, Kit, echo_check
from helpers import pid_alive, wait_for

from tmuxish import protocol


def hup_trap(path: str) -> list[str]:
    # sh runs the trap once the foreground sleep ends; the sleep gets the SIGHUP too.
    return ["sh", "-c", f"trap 'echo got-hup > {path}; exit 0' HUP; while :; do sleep 0.05; done"]


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT], ids=lambda s: s.name
)
def test_signal_ends_sessions_cleanly_and_removes_the_socket(kit: Kit, sig: signal.Signals) -> None:
    cli = kit.cli
    marks = [kit.path.parent / f"hup-{i}" for i in range(3)]
    sids = [cli.new(*hup_trap(str(m))) for m in marks]
    heavy = cli.new("sh", "-c", "while :; do seq 1 10000; done")
    programs = [s["pid"] for s in cli.sessions()]
    pid = kit.server_pid()
    term = kit.attach_pty(sids[0], mode="relay")
    wait_for(lambda: cli.session(sids[0])["clients"] == 1, 10, "attached")
    watcher = kit.raw()
    watcher.attach(heavy)
    drain = kit.drain(watcher)
    wait_for(lambda: drain.nbytes > 100_000, 10, "heavy output flowing")

    os.kill(pid, sig)
    wait_for(lambda: not pid_alive(pid), 15, "the server to exit")
    assert not kit.path.exists(), "the socket was left behind"
    for m in marks:
        wait_for(m.exists, 10, f"{m.name}: the program's HUP trap to run")
        assert m.read_text().strip() == "got-hup"
    for p in programs:
        wait_for(lambda p=p: not pid_alive(p), 10, f"program {p} to end")
    # Clients learn the server is gone and exit; nothing hangs.
    assert drain.done.wait(10)
    term.expect(b"[server exited]")
    assert term.wait_exit() == 1
    log = (kit.path.parent / "s.log").read_text()
    assert "server shutting down" in log and "server exited" in log
    assert "Traceback" not in log
    # The lock is free and a new server starts in the same place.
    again = cli.new("true")
    assert again == 1


@pytest.mark.timeout(60)
def test_sigpipe_never_kills_the_server(kit: Kit) -> None:
    cli = kit.cli
    sid = cli.new("sh", "-c", "while :; do seq 1 10000; done")
    quiet = cli.new(*CAT)
    pid = kit.server_pid()
    keeper_conn = kit.raw()
    keeper_conn.attach(sid)
    keeper = kit.drain(keeper_conn)
    for i in range(30):
        c = kit.raw()
        c.attach(sid)
        c.recv(timeout=10)  # output is flowing to it
        if i % 3 == 0:
            # Reset instead of a clean close.
            c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        elif i % 3 == 1:
            c.sock.shutdown(socket.SHUT_RD)
        c.close()
    for _ in range(30):
        # Hang up right after asking for something big.
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(str(kit.path))
        s.sendall(
            protocol.hello({}) + protocol.request(1, "capture", {"target": sid, "history": True})
        )
        s.close()
    # A direct-attach terminal that vanishes under the server mid-output.
    for _ in range(3):
        t = kit.attach_pty(sid)
        t.expect(b"9999")
        t.child.close(force=True)
    os.kill(pid, signal.SIGPIPE)
    assert pid_alive(pid)
    before = keeper.nbytes
    wait_for(lambda: keeper.nbytes > before + 100_000, 10, "output to the remaining client")
    assert keeper.end is None
    echo_check(kit, quiet, b"still-serving")
    wait_for(lambda: cli.session(sid)["clients"] == 1, 10, "only the keeper left")
    log = (kit.path.parent / "s.log").read_text()
    assert "Traceback" not in log, log[-3000:]
