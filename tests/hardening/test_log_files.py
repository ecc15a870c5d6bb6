"""`new --log FILE`: nothing about the file can stall the server or outlive its fd.

A FIFO blocks open() without a reader and write() once its reader stops; both would stop the
whole server. Only regular files are logged to, opened non-blocking.
"""

from __future__ import annotations

import errno
import os
import subprocess
import time
from pathlib import Path

import pytest
from helpers import Cli

from tmuxish.server import logfile
from tmuxish.server.logfile import OutputLog


def one_line_error(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr and "internal" not in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    return proc.stderr


def test_a_failed_rotation_closes_its_fd_once(tmp_path: Path) -> None:
    """The user deletes a rotating log: the session's end must not close an fd number that by
    then belongs to someone else (another session's process watcher, in the field)."""
    path = tmp_path / "out.log"
    out = OutputLog(str(path), 4096)
    out.write(b"x" * 4000)
    os.unlink(path)
    out.write(b"y" * 200)  # past the cap: rotates with the file gone
    other = os.open(os.devnull, os.O_RDONLY)
    try:
        out.close()
        os.fstat(other)  # EBADF if close() hit a number it no longer owned
    finally:
        os.close(other)


def test_rotation_after_the_log_was_deleted_starts_a_new_file(tmp_path: Path) -> None:
    path = tmp_path / "out.log"
    out = OutputLog(str(path), 4096)
    out.write(b"x" * 4000)
    os.unlink(path)
    out.write(b"after" * 100)
    out.close()
    assert path.read_bytes() == b"after" * 100


def test_a_full_disk_stops_logging_once_and_closes_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = OutputLog(str(tmp_path / "out.log"))
    calls = []

    def full(fd: int, data: object) -> int:
        calls.append(fd)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(logfile.os, "write", full)
    out.write(b"a")
    out.write(b"b")
    monkeypatch.undo()
    assert out.failed and len(calls) == 1
    out.close()


def test_log_at_a_fifo_without_reader_is_refused_at_once(cli: Cli, tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    cli.run("ls", "--json")  # exits 0 without a server too (plain ls says so, exit 1)
    started = time.monotonic()
    proc = cli.run("new", "-d", "--log", str(fifo), "--", "sleep", "100", check=False, timeout=15)
    assert "FIFO" in one_line_error(proc)
    assert time.monotonic() - started < 5
    assert cli.sessions() == []


def test_log_at_a_fifo_with_a_reader_is_refused(cli: Cli, tmp_path: Path) -> None:
    """A reader that stops reading would block the server's write() once the pipe is full."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        proc = cli.run(
            "new", "-d", "--log", str(fifo), "--", "sh", "-c", "yes | head -c 1000000; sleep 100",
            check=False, timeout=15,
        )  # fmt: skip
        assert "regular file" in one_line_error(proc)
        assert cli.run("ls", timeout=10).returncode == 0
    finally:
        os.close(reader)


def test_a_refused_log_starts_nothing_and_uses_no_id(cli: Cli, tmp_path: Path) -> None:
    marker = tmp_path / "started"
    bad = tmp_path / "missing-dir" / "out.log"
    proc = cli.run(
        "new", "-d", "--log", str(bad), "--", "sh", "-c", f"touch {marker}; sleep 100",
        check=False,
    )  # fmt: skip
    one_line_error(proc)
    assert cli.sessions() == []
    assert cli.new("sleep", "100") == 1
    assert not marker.exists()


def test_the_session_gets_the_umask_of_the_client_that_made_it(cli: Cli, tmp_path: Path) -> None:
    out = tmp_path / "umask"
    # The server starts with one umask; the session is made by a client with another.
    first = cli.argv("new", "-d", "--", "sleep", "100")
    subprocess.run(first, env=cli.env, check=True, capture_output=True, umask=0o022, timeout=30)
    subprocess.run(
        cli.argv("new", "-d", "--", "sh", "-c", f"umask >{out}.t; mv {out}.t {out}; sleep 100"),
        env=cli.env, check=True, capture_output=True, umask=0o077, timeout=30,
    )  # fmt: skip
    deadline = time.monotonic() + 10
    while not out.exists():
        assert time.monotonic() < deadline, "the session never wrote its umask"
        time.sleep(0.02)
    assert out.read_text().strip() == "0077"
