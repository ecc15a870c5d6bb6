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

from tmuxish.server import pty, upgrade
from tmuxish.server.screen_snapshots import screen_key
from tmuxish.server.session import Session

if TYPE_CHECKING:
    from tmuxish.server.containers import ConsoleSocket
    from tmuxish.server.factory import SessionFactory

log = logging.getLogger(__name__)

#: ``<link fd>,<resume memfd>``, set by the keeper (and by a kept server before an upgrade).
ENV_LINK = "TMUXISH_KEEPER_LINK"
#: Records and globals are in the upgrade state's format, so they carry its version.
STATE_VERSION = upgrade.STATE_VERSION


def pty_key(session: Session) -> str:
    return f"pty:{session.id}"


def rec_key(sid: int) -> str:
    return f"rec:{sid}"


def console_key(cs: ConsoleSocket) -> str:
    """A console-socket listener's key carries what adopting it takes (the keeper never reads
    keys; a path is at most ~107 bytes, so the key stays far below a link message's size)."""
    spec = {
        "path": cs.path,
        "name": cs.name,
        "persist": cs.persist,
        "cols": cs.cols,
        "rows": cs.rows,
        "policy": cs.policy,
    }
    return "console:" + json.dumps(spec, sort_keys=True)


def session_record(
    factory: SessionFactory, session: Session, with_input: bool = False
) -> dict[str, Any]:
    """A session's record: its per-kind state (``factory.state``, as an upgrade carries it)
    without the screen, which screen snapshots carry apart, and with its PTY named by its keeper
    key (``"key"``) instead of an fd index. The queued input goes in only ``with_input`` (a
    handover, with the session suspended): in a record sent while the session runs it would
    be stale, and a crash would write it twice."""
    item = factory.state(session, [], with_screen=False)
    if not with_input:
        item.pop("input", None)
    item["fd"] = None
    item["key"] = pty_key(session) if session.fd is not None else None
    return item


class Inheritance:
    def __init__(self, sock: socket.socket, info: dict[str, Any]) -> None:
        self.sock = sock
        self.info = info
        self.keeper_pid = int(info["keeper"])
        self.generation = int(info.get("generation", 0))
        self.restarts: list[dict[str, Any]] = list(info.get("restarts", []))
        self.oom_score_adj = int(info.get("oom_score_adj", 0))
        #: Started for a planned upgrade (the previous server handed over), not after a crash.
        self.upgrade = bool(info.get("upgrade", False))
        #: Exit codes the keeper collected while no server ran, for the Reaper.
        self.exits: dict[int, int] = {int(pid): code for pid, code in info.get("exits", {}).items()}
        #: Programs that are the keeper's children (an earlier server started them).
        self.adopted: set[int] = set(info.get("adopted", []))
        #: Keys of the console-socket listeners restored from the keeper's fds.
        self.console_keys: set[str] = set()
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
        """The last records with each held fd put back beside its session: the state
        ``upgrade.restore`` takes (its ``fds`` are the held fds), as after an upgrade. Held fds
        nobody claims are closed and ``release``d."""
        held: dict[str, int] = dict(self.info.get("fds", {}))
        exits = self.exits
        state = self._load_state(held)
        used = {key for key in held if key.startswith("rec:")}
        if state is None and any(key.startswith("console:") for key in held):
            # No session yet, but a console socket to listen on again.
            state = self._empty_state()
        if state is None:
            for key, unused in held.items():
                if key not in used:
                    log.warning("held %s is in no snapshot; closing it", key)
                    os.close(unused)
                    release(key)
            return None
        fds: list[int] = []
        for item in state["sessions"]:
            key = item.pop("key", None)
            fd = held.get(key) if key is not None else None
            item["fd"] = None
            screen_fd = held.get(screen_key(item["id"]))
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
                item["fd"] = len(fds)
                fds.append(fd)
                with contextlib.suppress(OSError):
                    item["cols"], item["rows"] = pty.get_size(fd)
                if not item["screen"]:
                    self.redraw.add(item["id"])
            elif not item.get("ended", item["exit_code"] is not None):
                # Its PTY was never held (a crash right after `new`): the program lost its
                # terminal; report what the keeper knows (a console session has no code).
                item["exit_code"] = exits.get(item["pid"], 129) if item["pid"] is not None else None
                item["ended"] = True
                item["child_done"] = True
        for key, held_fd in held.items():
            if key.startswith("console:") and key not in used:
                used.add(key)
                self.console_keys.add(key)
                state["listeners"].append({**json.loads(key[len("console:") :]), "fd": len(fds)})
                fds.append(held_fd)
        state["fds"] = fds
        for key, unused in held.items():
            if key not in used:
                log.warning("held %s is in no snapshot; closing it", key)
                os.close(unused)
                release(key)
        return state

    def _empty_state(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "next_id": 1,
            "generation": self.generation,
            "sessions": [],
            "listeners": [],
        }

    def _load_state(self, fds: dict[str, int]) -> dict[str, Any] | None:
        """The globals (``S``) and every held record, as one state; None if there is none."""
        state = self._empty_state()
        found = False
        state_fd = self.info.get("state_fd")
        if state_fd is not None:
            try:
                state.update(upgrade.unpack(read_all(state_fd)))
                state["generation"] = self.generation
                found = True
            except Exception as exc:
                log.error("the last state snapshot is unreadable: %s", exc)
            finally:
                os.close(state_fd)
        for key, fd in fds.items():
            if not key.startswith("rec:"):
                continue
            try:
                state["sessions"].append(upgrade.unpack(read_all(fd)))
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
