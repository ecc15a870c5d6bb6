"""Finding the server, and starting one when none answers (like tmux and shpool do)."""

from __future__ import annotations

import _socket
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from tmuxish.client.connection import Connection
from tmuxish.errors import ServerNotRunning, UsageError
from tmuxish.paths import ensure_private_dir, is_default_dir, log_path, open_server_log

START_TIMEOUT = 10.0

T = TypeVar("T")


def connect(socket_path: Path, start: bool = False, pass_fds: tuple[int, ...] = ()) -> Connection:
    """Connect to the server on ``socket_path``; with ``start``, launch one if none answers."""
    return _reach(socket_path, start, lambda: Connection.open(socket_path, pass_fds=pass_fds))


def dial(socket_path: Path, start: bool = False) -> _socket.socket:
    """Like ``connect``, but the bare socket, not greeted (for `dial-stdio` to pass through)."""
    return _reach(socket_path, start, lambda: Connection.dial(socket_path))


def _reach(socket_path: Path, start: bool, attempt: Callable[[], T]) -> T:
    if is_default_dir(socket_path.parent):
        ensure_private_dir(socket_path.parent)
    try:
        return attempt()
    except ServerNotRunning:
        if not start:
            raise
    spawn_server(socket_path)
    return _wait_for_server(socket_path, attempt)


def spawn_server(socket_path: Path) -> None:
    import subprocess  # ~3 ms; every command imports this module, few start a server

    if not socket_path.parent.is_dir():
        # Only the default directory is ever created (by ensure_private_dir); a -S path in a
        # directory that does not exist is a mistake, as tmux says too (issue 14).
        raise UsageError(f"socket directory {socket_path.parent} does not exist")
    # -P: never import a source checkout from the working directory instead of the install.
    argv = [sys.executable, "-P", "-m", "tmuxish", "-S", str(socket_path), "server"]
    if os.environ.get("TMUXISH_KEEPER", "1") != "0":
        # The keeper (server/keeper.py) runs the server as its child and restarts it after a
        # crash. -I -S: it imports neither tmuxish nor site-packages (~6 MiB private memory).
        argv = [sys.executable, "-I", "-S", keeper_script(), str(socket_path), "--", *argv]
    try:
        log_fd = open_server_log(log_path(socket_path))
    except OSError as exc:
        raise ServerNotRunning(f"cannot start a server: {exc.filename}: {exc.strerror}") from None
    with os.fdopen(log_fd, "ab") as log:
        subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
            close_fds=True,
            cwd="/",
        )


def keeper_script() -> str:
    """The installed keeper script, found without importing the server package."""
    return str(Path(__file__).resolve().parent.parent / "server" / "keeper.py")


def keeper_pid(socket_path: Path) -> int | None:
    """The pid of the keeper of ``socket_path`` (it writes it into the lock file), if alive."""
    try:
        pid = int(Path(f"{socket_path}.lock").read_text().split()[0])
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError, IndexError):
        return None
    # The lock may name a pid that ended long ago and now belongs to someone else.
    return pid if b"keeper.py\0" + bytes(socket_path) + b"\0" in cmdline else None


def _wait_for_server(
    socket_path: Path, attempt: Callable[[], T], timeout: float = START_TIMEOUT
) -> T:
    deadline = time.monotonic() + timeout
    delay = 0.002
    while True:
        try:
            return attempt()
        except ServerNotRunning:
            if time.monotonic() > deadline:
                raise ServerNotRunning(
                    f"the server did not start on {socket_path}{_last_log_line(socket_path)}"
                ) from None
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


def _last_log_line(socket_path: Path) -> str:
    try:
        with open(log_path(socket_path), "rb") as f:
            f.seek(max(0, os.fstat(f.fileno()).st_size - 4096))
            lines = f.read().decode(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return f" (log: {lines[-1]})" if lines else ""
