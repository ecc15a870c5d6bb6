"""Signals the server has no use for never kill it; QUIT stops it as cleanly as TERM does.
Its own files (`<socket>.log`, `<socket>.lock`) are never opened through a symlink."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from helpers import Cli, pid_alive, wait_for


@pytest.mark.parametrize(
    "sig",
    [signal.SIGUSR1, signal.SIGUSR2, signal.SIGALRM, signal.SIGPWR, signal.SIGRTMIN + 3],
    ids=["USR1", "USR2", "ALRM", "PWR", "RTMIN+3"],
)
def test_a_stray_signal_leaves_the_server_and_its_sessions_alone(cli: Cli, sig: int) -> None:
    sid = cli.new("sleep", "100")
    pid = cli.server_pid()
    assert pid is not None
    os.kill(pid, sig)
    wait_for(
        lambda: "ignored" in Path(f"{cli.socket_path}.log").read_text(), 10, "the log to say so"
    )
    assert pid_alive(pid)
    assert cli.session(sid)["status"] == "running"
    assert cli.server_pid() == pid


def test_quit_stops_the_server_cleanly(cli: Cli) -> None:
    sid = cli.new("sleep", "100")
    program = cli.session(sid)["pid"]
    pid = cli.server_pid()
    assert pid is not None
    os.kill(pid, signal.SIGQUIT)
    wait_for(lambda: not pid_alive(pid), 10, "the server to exit")
    assert not cli.socket_path.exists(), "the socket was left behind"
    wait_for(lambda: not pid_alive(program), 10, "the program to get its SIGHUP")
    assert "server exited" in Path(f"{cli.socket_path}.log").read_text()


@pytest.mark.parametrize("suffix", [".log", ".lock"])
def test_the_server_never_follows_a_symlink_at_its_own_files(
    cli: Cli, tmp_path: Path, suffix: str
) -> None:
    victim = tmp_path / "victim"
    os.symlink(victim, f"{cli.socket_path}{suffix}")
    proc = cli.run("new", "-d", "--", "sleep", "100", check=False, timeout=30)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    assert not victim.exists(), f"the server wrote through {suffix}"


def test_the_server_never_deletes_a_file_that_is_not_a_socket(cli: Cli) -> None:
    cli.socket_path.write_text("precious\n")
    proc = cli.run("new", "-d", "--", "sleep", "100", check=False, timeout=30)
    assert proc.returncode != 0
    assert cli.socket_path.read_text() == "precious\n"
