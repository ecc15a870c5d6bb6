"""`tmuxish logs [-f] TARGET`: print a session's output log, and follow it (as `docker logs -f`).

The server appends the raw output to the file `new --log` or `tmuxish log` named; this reads that
file on this machine. A rotated log (FILE.1) is printed first. Following polls the file, as
`tail -f` does, notices a rotation by the inode changing, and stops once the session has exited
or its log has been turned off, after printing what was written up to then.
"""

from __future__ import annotations

import contextlib
import os
import stat
import time
from typing import Any, BinaryIO, Protocol

from tmuxish.errors import SessionNotFound, TmuxishError

#: Seconds between looks at the file and at the session while following.
POLL_INTERVAL = 0.1
CHUNK = 65536


class Requester(Protocol):
    def request(self, command: str, /, **args: Any) -> Any: ...


def _copy(fd: int, out: BinaryIO) -> None:
    while data := os.read(fd, CHUNK):
        out.write(data)
    out.flush()


def _open(path: str) -> int | None:
    """The log file ``path`` opened for reading; None if there is none. What the server writes
    is a regular file: a directory, FIFO or device in its place (/dev/zero) is refused rather
    than read as an error or forever."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise TmuxishError(f"cannot read log file {path}: {exc.strerror or exc}") from exc
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise TmuxishError(f"cannot read log file {path}: not a regular file")
    return fd


def show(conn: Requester, target: str | int | None, *, follow: bool, out: BinaryIO) -> int:
    info = conn.request("get", target=target)
    sid = info["id"]
    path = info.get("log")
    if not path:
        raise TmuxishError(
            f"session {sid} has no log; 'tmuxish log {sid} FILE' starts one "
            "(or 'tmuxish new --log FILE')"
        )
    old = _open(path + ".1")
    if old is not None:
        try:
            _copy(old, out)
        finally:
            os.close(old)
    fd = _open(path)
    if fd is None:
        raise TmuxishError(f"log file {path} of session {sid} is gone")
    try:
        _copy(fd, out)
        while follow:
            ended = _log_ended(conn, sid, path)
            # Rotated: finish the old file, then carry on with the new one.
            with contextlib.suppress(FileNotFoundError):
                if os.stat(path).st_ino != os.fstat(fd).st_ino:
                    _copy(fd, out)
                    new = _open(path)
                    if new is not None:
                        os.close(fd)
                        fd = new
            _copy(fd, out)
            if ended:
                break
            time.sleep(POLL_INTERVAL)
    finally:
        os.close(fd)
    return 0


def _log_ended(conn: Requester, sid: int, path: str) -> bool:
    """Whether nothing more will be written to ``path`` for session ``sid``."""
    try:
        info = conn.request("get", target=sid)
    except SessionNotFound:
        return True
    return bool(info["status"] != "running" or info.get("log") != path)
