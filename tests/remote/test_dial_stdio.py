"""`tmuxish dial-stdio`, the host's end of -H, driven without ssh: a socketpair as its stdio."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Callable, Iterator

import pytest
from helpers import TMUXISH, Cli

from tmuxish.client.connection import Connection
from tmuxish.errors import ServerNotRunning

Dial = Callable[..., tuple[Connection, "subprocess.Popen[bytes]"]]


@pytest.fixture
def dial(cli: Cli) -> Iterator[Dial]:
    started: list[subprocess.Popen[bytes]] = []

    def run(*flags: str) -> tuple[Connection, subprocess.Popen[bytes]]:
        ours, theirs = socket.socketpair()
        proc = subprocess.Popen(
            [*TMUXISH, "-S", str(cli.socket_path), "dial-stdio", *flags],
            stdin=theirs.fileno(),
            stdout=theirs.fileno(),
            env=cli.env,
        )
        theirs.close()
        ours.settimeout(15)
        started.append(proc)
        return Connection(ours), proc

    yield run
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def test_bridges_the_protocol_and_starts_the_server(dial: Dial, cli: Cli) -> None:
    conn, proc = dial()
    conn.handshake()
    info = conn.request("new", command=["cat"], cols=80, rows=24)
    assert [s["id"] for s in conn.request("ls")] == [info["id"]]
    # Our EOF is passed on; the server closes, dial-stdio ends, the session stays.
    conn.sock.shutdown(socket.SHUT_WR)
    assert conn.sock.recv(1) == b""
    assert proc.wait(10) == 0
    conn.close()
    assert cli.session(info["id"])["status"] == "running"


def test_no_start_sends_the_error_as_a_frame(dial: Dial, cli: Cli) -> None:
    conn, proc = dial("--no-start")
    with pytest.raises(ServerNotRunning, match="no server running on"):
        conn.handshake()
    assert proc.wait(10) == 1
    conn.close()
    assert cli.server_pid() is None


def test_server_going_away_ends_it(dial: Dial, cli: Cli) -> None:
    cli.new("cat")
    conn, proc = dial("--no-start")
    conn.handshake()
    conn.request("kill-server")
    assert proc.wait(10) == 0
    conn.close()
