"""A pytest plugin (entry point ``pytest11``): test your own terminal programs on a private server.

Installed with tmuxish, it gives every test that asks a server of its own, stopped afterwards
with every program it ran, as libtmux's fixtures do for tmux::

    def test_menu(tmuxish_server):
        s = tmuxish_server.new(["python", "-m", "mymenu"], cols=80, rows=24)
        tmuxish_server.wait_for_text(s.id, "Choose:")
        tmuxish_server.send(s.id, ["Down", "Enter"])
        tmuxish_server.wait_for_text(s.id, r"^You chose 2$")

``tmuxish_server`` is a ``tmuxish.SyncClient``; the server starts with its first ``new``.
``$TMUXISH_SOCKET`` points at it for the test, so a ``tmuxish`` command the test runs (``send``,
``capture``, ``record``) reaches the same server. ``tmuxish_socket`` is just the socket path.

Test runs that use neither fixture pay nothing: this module imports only what pytest already
has; the client is imported when a fixture first runs.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tmuxish.client.api import SyncClient

#: How long the teardown waits for the server to stop before killing it.
STOP_TIMEOUT = 5.0
#: How long a program the server hung up gets to exit before it is killed.
PROGRAM_GRACE = 1.0


@pytest.fixture
def tmuxish_socket() -> Iterator[Path]:
    """A socket path in a private directory of its own, removed after the test.

    Under /tmp, not pytest's tmp_path: a Unix socket path must stay under ~107 bytes.
    """
    directory = Path(tempfile.mkdtemp(prefix="tmuxish-test-", dir="/tmp"))
    try:
        yield directory / "server"
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def tmuxish_server(tmuxish_socket: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SyncClient]:
    """A ``SyncClient`` on a private server, which is stopped with its programs afterwards."""
    from tmuxish.client.api import SyncClient

    monkeypatch.setenv("TMUXISH_SOCKET", str(tmuxish_socket))
    monkeypatch.delenv("TMUXISH", raising=False)  # not "inside" a session of some other server
    client = SyncClient(tmuxish_socket)
    try:
        yield client
    finally:
        stop(client)


def stop(client: SyncClient) -> None:
    """Stop the client's server; kill it and its programs if they do not go in time."""
    from tmuxish.errors import TmuxishError

    try:
        server_pid = int(client.server_info["pid"])
        programs = [s.pid for s in client.sessions() if s.pid is not None and s.running]
    except TmuxishError:
        client.close()
        return  # no server was started (or it is already gone)
    with contextlib.suppress(TmuxishError, OSError):
        client.kill_server()
    client.close()
    deadline = time.monotonic() + STOP_TIMEOUT
    if not _gone(server_pid, deadline):
        with contextlib.suppress(ProcessLookupError):
            os.kill(server_pid, signal.SIGKILL)
    deadline = time.monotonic() + PROGRAM_GRACE
    for pid in programs:
        # The server hung them up; one that ignores SIGHUP must not outlive the test.
        if not _gone(pid, deadline):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)


def _gone(pid: int, deadline: float) -> bool:
    """Whether ``pid`` has exited (or is a zombie) by ``deadline``."""
    delay = 0.005
    while True:
        try:
            with open(f"/proc/{pid}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return True
        if state in ("Z", "X"):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(delay)
        delay = min(delay * 2, 0.05)
