"""What a server started by its keeper inherits (issue 13): the link, the listening socket and
lock, every fd the keeper held for the server before (PTY masters, console-socket listeners,
per-session records, screen snapshots, keyed as below), the global state, and the exit codes of
programs that ended while no server ran. ``resume_state`` turns it back into the state
``upgrade.restore`` takes, so a crash and an upgrade rebuild sessions through one path.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import msgpack

from tmuxish.server import pty
from tmuxish.server.screen_snapshots import screen_key
from tmuxish.server.session import Session

if TYPE_CHECKING:
    from tmuxish.server.containers import ConsoleSocket

log = logging.getLogger(__name__)

#: ``<link fd>,<resume memfd>``, set by the keeper (and by a kept server before an upgrade).
ENV_LINK = "TMUXISH_KEEPER_LINK"
STATE_VERSION = 1


def pty_key(session: Session) -> str:
    return f"pty:{session.id}"


def rec_key(sid: int) -> str:
    return f"rec:{sid}"


def console_key(cs: ConsoleSocket) -> str:
    """A console-socket listener's key carries what adopting it takes (the keeper never reads
    keys; a path is at most ~107 bytes, so the key stays far below a link message's size)."""
    spec = {"path": cs.path, "name": cs.name, "persist": cs.persist, "cols": cs.cols,
            "rows": cs.rows, "policy": cs.policy}
    return "console:" + json.dumps(spec, sort_keys=True)


def session_record(session: Session) -> dict[str, Any]:
    """What a new server needs to carry on a session after a crash (upgrade.restore's format,
    the PTY named by its keeper key instead of an fd number; no screen yet)."""
    return {
        "id": session.id,
        "name": session.name,
        "command": session.command,
        "pid": session.pid,
        "key": pty_key(session) if session.fd is not None else None,
        "cols": session.cols,
        "rows": session.rows,
        "policy": session.policy,
        "exit_code": session.exit_code,
        "child_done": session.child_done,
        "created": session.created.isoformat(),
        "extra": session.extra,
        "screen": b"",
        "screen_was_on": session.screen is not None or session.screen_error != "unavailable",
    }


class Inheritance:
    def __init__(self, sock: socket.socket, info: dict[str, Any]) -> None:
        self.sock = sock
        self.info = info
        self.keeper_pid = int(info["keeper"])
        self.generation = int(info.get("generation", 0))
        self.restarts: list[dict[str, Any]] = list(info.get("restarts", []))
        self.oom_score_adj = int(info.get("oom_score_adj", 0))
        #: Exit codes the keeper collected while no server ran, for the Reaper.
        self.exits: dict[int, int] = {
            int(pid): code for pid, code in info.get("exits", {}).items()
        }
        #: Programs that are the keeper's children (an earlier server started them).
        self.adopted: set[int] = set(info.get("adopted", []))
        #: Console-socket listeners to listen on again, by key.
        self.console_fds: dict[str, int] = {}
        #: Sessions restored with no screen snapshot: their programs are asked to redraw.
        self.redraw: set[int] = set()
        #: Sessions whose screen came back from a snapshot the keeper still holds.
        self.restored_screens: set[int] = set()

    @classmethod
    def from_env(cls) -> Inheritance | None:
        """The link our keeper left in the environment, or None when no keeper runs us."""
        value = os.environ.pop(ENV_LINK, "")
        if not value:
            return None
        link_fd, resume_fd = (int(x) for x in value.split(","))
        try:
            info = json.loads(read_all(resume_fd))
        finally:
            os.close(resume_fd)
        sock = socket.socket(fileno=link_fd)
        sock.set_inheritable(False)
        sock.setblocking(False)
        return cls(sock, info)

    def listen_and_lock(self) -> tuple[socket.socket, int]:
        lock_fd = int(self.info["lock_fd"])
        os.set_inheritable(lock_fd, False)
        sock = socket.socket(fileno=int(self.info["listen_fd"]))
        sock.set_inheritable(False)
        sock.setblocking(False)
        return sock, lock_fd

    def resume_state(self, release: Callable[[str], object]) -> dict[str, Any] | None:
        """The last snapshot with each held fd put back in its session, in the format
        ``upgrade.restore`` takes; held fds nobody claims are closed and ``release``d."""
        fds: dict[str, int] = dict(self.info.get("fds", {}))
        exits = self.exits
        state = self._load_state(fds)
        used = {key for key in fds if key.startswith("rec:")}
        for key, held_fd in fds.items():
            if key.startswith("console:"):
                used.add(key)
                self.console_fds[key] = held_fd
        if state is not None:
            for item in state["sessions"]:
                key = item.pop("key", None)
                fd = fds.get(key) if key is not None else None
                item["fd"] = fd
                screen_fd = fds.get(screen_key(item["id"]))
                if screen_fd is not None:
                    # The keeper keeps holding it until a new snapshot replaces it.
                    used.add(screen_key(item["id"]))
                    item["screen"] = read_all(screen_fd)
                    os.close(screen_fd)
                    self.restored_screens.add(item["id"])
                if item["pid"] is not None and not item["child_done"]:
                    self.adopted.add(item["pid"])
                if fd is not None:
                    used.add(key)
                    with contextlib.suppress(OSError):
                        item["cols"], item["rows"] = pty.get_size(fd)
                    if not item["screen"]:
                        self.redraw.add(item["id"])
                elif item["exit_code"] is None:
                    # Its PTY was never held (a crash right after `new`): the program lost its
                    # terminal; report what the keeper knows.
                    item["exit_code"] = exits.get(item["pid"], 129)
                    item["child_done"] = True
        for key, fd in fds.items():
            if key not in used:
                log.warning("held %s is in no snapshot; closing it", key)
                os.close(fd)
                release(key)
        return state

    def _load_state(self, fds: dict[str, int]) -> dict[str, Any] | None:
        """The globals (``S``) and every held record, as one state; None if there is none."""
        state: dict[str, Any] = {"version": STATE_VERSION, "next_id": 1, "sessions": []}
        found = False
        state_fd = self.info.get("state_fd")
        if state_fd is not None:
            try:
                state.update(msgpack.unpackb(read_all(state_fd), raw=False))
                found = True
            except Exception as exc:
                log.error("the last state snapshot is unreadable: %s", exc)
            finally:
                os.close(state_fd)
        for key, fd in fds.items():
            if not key.startswith("rec:"):
                continue
            try:
                state["sessions"].append(msgpack.unpackb(read_all(fd), raw=False))
                found = True
            except Exception as exc:
                log.error("record %s is unreadable: %s", key, exc)
            finally:
                os.close(fd)
        if state.get("version") != STATE_VERSION:
            log.error("state snapshot version %s unknown; not restored", state.get("version"))
            return None
        state["sessions"].sort(key=lambda item: item["id"])
        return state if found else None


def read_all(fd: int) -> bytes:
    """Read a memfd from the start without moving its offset (the keeper shares it)."""
    chunks: list[bytes] = []
    offset = 0
    while True:
        chunk = os.pread(fd, 1 << 20, offset)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        offset += len(chunk)


