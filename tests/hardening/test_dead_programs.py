"""Dead programs: output still buffered when the program exits reaches every attached client, in
full and in order, before the exit notice; exited children never linger as zombies."""

from __future__ import annotations

import base64
import hashlib
import os

import pytest
from hardkit import Kit, zombie_children
from helpers import wait_for

from tmuxish import protocol


@pytest.mark.timeout(120)
@pytest.mark.parametrize("holder", [False, True], ids=["plain-exit", "pty-held-open-after-exit"])
def test_every_byte_arrives_before_the_exit_notice(kit: Kit, holder: bool) -> None:
    """5 MB of base64 then `exit 3`, to a fast and a deliberately slow client at once.

    With ``holder`` a background process that ignores SIGHUP keeps the PTY open after the shell
    exits, so the end of output is never signalled by EOF: the server must still drain it all.
    """
    data = os.urandom(3_750_000)
    blob = kit.path.parent / "data.bin"
    blob.write_bytes(data)
    expected = base64.encodebytes(data)  # 76-column lines, like base64(1)
    keep_open = "(trap '' HUP; exec sleep 3) & " if holder else ""
    sid = kit.cli.new("sh", "-c", f"stty raw -echo; read go; {keep_open}base64 {blob}; exit 3")
    pid = kit.server_pid()
    fast_conn = kit.raw()
    fast_conn.attach(sid)
    fast = kit.drain(fast_conn, keep=True)
    slow_conn = kit.raw()
    slow_conn.attach(sid)
    slow = kit.drain(slow_conn, keep=True, delay=0.002, read_size=8192)
    fast_conn.send(protocol.input_frame(b"go\n"))
    for name, d in (("fast", fast), ("slow", slow)):
        assert d.done.wait(60), f"{name} client never saw the end"
        assert d.error is None, d.error
        assert d.end == [protocol.EXITED, 3], f"{name}: ended with {d.end}"
        assert d.bytes_at_end == len(expected) == len(d.data), (
            f"{name}: {d.bytes_at_end} bytes before the exit notice, expected {len(expected)}"
        )
        assert hashlib.sha256(d.data).hexdigest() == hashlib.sha256(expected).hexdigest(), (
            f"{name}: the bytes differ from what the program wrote"
        )
    s = kit.cli.session(sid)
    assert (s["status"], s["exit_code"]) == ("exited", 3)
    print(f"\n{len(expected)} bytes + EXITED 3 to a fast and a slow client, checksums match")
    if holder:
        # The holder was re-parented to the server (a child subreaper); once it exits it is
        # reaped by the sweep that follows the next watched exit (or the periodic one).
        wait_for(lambda: not any(_cmd(p) == "sleep" for p in _kids(pid)), 15, "holder gone")
        kit.cli.new("true")
    wait_for(lambda: not zombie_children(pid), 15, "no zombie children of the server")


def _kids(pid: int) -> list[int]:
    from hardkit import children, proc_state

    return [c for c in children(pid) if proc_state(c) not in (None, "Z")]


def _cmd(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


@pytest.mark.timeout(120)
def test_exited_programs_are_reaped(kit: Kit) -> None:
    cli = kit.cli
    codes = {cli.new("true"): 0}  # starts the server
    conn = kit.raw()

    def new(*argv: str) -> int:
        return int(conn.request("new", command=list(argv))["id"])

    for i in range(60):
        if i % 4 == 3:
            codes[new("sh", "-c", "kill -9 $$")] = 128 + 9
        elif i % 4 == 2:
            # Grandchildren in the background that outlive the session leader.
            codes[new("sh", "-c", f"(sleep 0.2 &) ; exit {i}")] = i
        else:
            codes[new("sh", "-c", f"exit {i}")] = i
    pid = kit.server_pid()
    wait_for(
        lambda: all(s["status"] == "exited" for s in cli.sessions()), 20, "every program to exit"
    )
    got = {s["id"]: s["exit_code"] for s in cli.sessions()}
    assert got == codes
    # Orphaned grandchildren were re-parented to the server; nothing stays a zombie.
    cli.new("true")  # one more watched exit triggers a sweep right away
    wait_for(lambda: not zombie_children(pid), 15, f"zombies: {zombie_children(pid)}")
