"""The server's side of the link to its keeper (server/keeper.py, whose docstring is the spec).

When a keeper runs the server, every PTY master the registry gains is duplicated to the keeper
(``hold``) and released when the session closes it. Each session's record (ids, name, command,
pid, size, policy, status, exit code) is a small memfd the keeper holds under ``rec:<id>``,
replaced when it changes, so an update costs one record whatever the number of sessions, and
a record always says a program has exited before its PTY is released. ``S`` carries the rest
(next id, generation); ``screen:<id>`` memfds carry screen snapshots. After a crash the keeper
starts a new server with all of them: ``resume_state`` turns them back into the state
``upgrade.restore`` takes, so a crash and an upgrade rebuild sessions through one path. Exit
codes of programs that are the keeper's children (started by an earlier server) arrive as ``X``
messages and go to the Reaper.
"""

from __future__ import annotations

import array
import contextlib
import inspect
import json
import logging
import os
import select
import socket
import time
from typing import TYPE_CHECKING, Any

import msgpack

from tmuxish.server import pty
from tmuxish.server.reaper import Reaper
from tmuxish.server.registry import Registry
from tmuxish.server.session import Session

if TYPE_CHECKING:
    from tmuxish.server.containers import ConsoleSocket
    from tmuxish.server.daemon import Server

log = logging.getLogger(__name__)

ENV_LINK = "TMUXISH_KEEPER_LINK"
#: What a kept server writes to its own oom_score_adj: the OOM killer takes it before any program
#: (it comes back within a second) and never the keeper.
SERVER_OOM_SCORE_ADJ = 1000
#: Coalesce state snapshots: at most one per this many seconds after a change.
STATE_DELAY = 0.02
#: How often cheap changes (sizes, exit codes) are looked for.
CHECK_INTERVAL = 1.0
#: How often changed screens are snapshotted for the keeper, and the loop time that may take.
SCREEN_INTERVAL = 2.0
SCREEN_BUDGET = 0.02
#: Scrollback lines in a screen snapshot (as an upgrade carries).
SCREEN_HISTORY = 5000
SEND_TIMEOUT = 2.0
STATE_VERSION = 1


def pty_key(session: Session) -> str:
    return f"pty:{session.id}"


def screen_key(sid: int) -> str:
    return f"screen:{sid}"


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


def _fingerprint(s: Session) -> tuple[Any, ...]:
    """What, when it changes, makes a session's record worth sending again."""
    return (s.name, s.exit_code, s.child_done, s.cols, s.rows, s.fd is None, s.policy)


class KeeperLink:
    def __init__(self, sock: socket.socket, info: dict[str, Any]) -> None:
        self.sock = sock
        self.info = info
        self.keeper_pid = int(info["keeper"])
        self.generation = int(info.get("generation", 0))
        self.restarts: list[dict[str, Any]] = list(info.get("restarts", []))
        self.oom_score_adj = int(info.get("oom_score_adj", 0))
        self._server: Server | None = None
        #: The keeper died (or stopped reading): we carry on alone.
        self.lost = False
        self._held: set[str] = set()
        self._state_timer: Any = None
        self._check_timer: Any = None
        #: Per session id, the fingerprint of the record the keeper holds.
        self._recorded: dict[int, tuple[Any, ...]] = {}
        self._globals: tuple[int, int] | None = None
        #: Console-socket listeners the keeper holds, by key; and those to adopt after a crash.
        self._consoles: set[str] = set()
        self._console_fds: dict[str, int] = {}
        #: Exit codes the keeper collected while no server ran, for the Reaper.
        self._preload_exits: dict[int, int] = {
            int(pid): code for pid, code in info.get("exits", {}).items()
        }
        #: Programs that are the keeper's children (an earlier server started them).
        self._adopted: set[int] = set(info.get("adopted", []))
        #: Sessions restored after a crash with no screen snapshot: their programs are asked
        #: to redraw into the fresh screen model.
        self._redraw: set[int] = set()
        #: Per session id, its relay count when its screen was last snapshotted.
        self._screened: dict[int, int] = {}
        self._screen_timer: Any = None

    @classmethod
    def from_env(cls) -> KeeperLink | None:
        """The link our keeper left in the environment, or None when no keeper runs us."""
        value = os.environ.pop(ENV_LINK, "")
        if not value:
            return None
        link_fd, resume_fd = (int(x) for x in value.split(","))
        try:
            info = json.loads(_read_all(resume_fd))
        finally:
            os.close(resume_fd)
        sock = socket.socket(fileno=link_fd)
        sock.set_inheritable(False)
        sock.setblocking(False)
        return cls(sock, info)

    # -- the inheritance -------------------------------------------------------------------------

    def listen_and_lock(self) -> tuple[socket.socket, int]:
        lock_fd = int(self.info["lock_fd"])
        os.set_inheritable(lock_fd, False)
        sock = socket.socket(fileno=int(self.info["listen_fd"]))
        sock.set_inheritable(False)
        sock.setblocking(False)
        return sock, lock_fd

    def resume_state(self) -> dict[str, Any] | None:
        """The last snapshot with each held fd put back in its session, in the format
        ``upgrade.restore`` takes; held fds nobody claims are closed (and released)."""
        fds: dict[str, int] = dict(self.info.get("fds", {}))
        exits = self._preload_exits
        state = self._load_state(fds)
        used = {key for key in fds if key.startswith("rec:")}
        for key, held_fd in fds.items():
            if key.startswith("console:"):
                used.add(key)
                self._console_fds[key] = held_fd
        if state is not None:
            for item in state["sessions"]:
                key = item.pop("key", None)
                fd = fds.get(key) if key is not None else None
                item["fd"] = fd
                screen_fd = fds.get(screen_key(item["id"]))
                if screen_fd is not None:
                    # The keeper keeps holding it until a new snapshot replaces it.
                    used.add(screen_key(item["id"]))
                    self._held.add(screen_key(item["id"]))
                    item["screen"] = _read_all(screen_fd)
                    os.close(screen_fd)
                    self._screened[item["id"]] = -1
                if item["pid"] is not None and not item["child_done"]:
                    self._adopted.add(item["pid"])
                if fd is not None:
                    used.add(key)
                    with contextlib.suppress(OSError):
                        item["cols"], item["rows"] = pty.get_size(fd)
                    if not item["screen"]:
                        self._redraw.add(item["id"])
                elif item["exit_code"] is None:
                    # Its PTY was never held (a crash right after `new`): the program lost its
                    # terminal; report what the keeper knows.
                    item["exit_code"] = exits.get(item["pid"], 129)
                    item["child_done"] = True
        for key, fd in fds.items():
            if key not in used:
                log.warning("held %s is in no snapshot; closing it", key)
                os.close(fd)
                self._send(f"R{key}".encode())
        return state

    def _load_state(self, fds: dict[str, int]) -> dict[str, Any] | None:
        """The globals (``S``) and every held record, as one state; None if there is none."""
        state: dict[str, Any] = {"version": STATE_VERSION, "next_id": 1, "sessions": []}
        found = False
        state_fd = self.info.get("state_fd")
        if state_fd is not None:
            try:
                state.update(msgpack.unpackb(_read_all(state_fd), raw=False))
                found = True
            except Exception as exc:
                log.error("the last state snapshot is unreadable: %s", exc)
            finally:
                os.close(state_fd)
        for key, fd in fds.items():
            if not key.startswith("rec:"):
                continue
            try:
                state["sessions"].append(msgpack.unpackb(_read_all(fd), raw=False))
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

    # -- running ---------------------------------------------------------------------------------

    def start(self, server: Server) -> None:
        """Before sessions are restored: watch the registry, learn exits, extend `info`."""
        assert server.loop is not None
        self._server = server
        server.reaper.adopted.update(self._adopted)
        for pid, code in self._preload_exits.items():
            server.reaper.foreign_exit(pid, code)
        server.registry = LinkedRegistry(self, server.registry)
        server.loop.add_reader(self.sock.fileno(), self._on_readable)
        self._send(f"G{server.generation}".encode())
        info = server.handlers["info"]

        def info_with_keeper(conn: Any, args: dict[str, Any]) -> Any:
            return {**info(conn, args), **self.describe()}

        server.handlers["info"] = info_with_keeper
        attach = server.handlers["attach"]

        def attach_kept(conn: Any, args: dict[str, Any]) -> Any:
            # Tells the client to reconnect if this server vanishes (a keeper restarts it).
            reply = attach(conn, args)
            if not inspect.isawaitable(reply):
                return {**reply, "kept": not self.lost}

            async def later() -> Any:
                return {**(await reply), "kept": not self.lost}

            return later()

        server.handlers["attach"] = attach_kept
        console_socket = server.handlers.get("console-socket")
        if console_socket is not None:

            def console_socket_held(conn: Any, args: dict[str, Any]) -> Any:
                result = console_socket(conn, args)
                self._sync_consoles(server)  # hold the new listener before the reply
                return result

            server.handlers["console-socket"] = console_socket_held
        if self._console_fds:
            server.loop.call_soon(self._adopt_consoles)
        self._check_timer = server.loop.call_later(CHECK_INTERVAL, self._check)
        self._screen_timer = server.loop.call_later(SCREEN_INTERVAL, self._snapshot_screens)
        if self._redraw:
            server.loop.call_soon(self._redraw_all)

    def _redraw_all(self) -> None:
        """After a crash restore (which runs right after ``start``): make each program whose
        screen was never snapshotted draw it again into the fresh model, as an attach to a
        model-less session does (a one-row resize and back)."""
        assert self._server is not None
        for session in self._server.registry:
            if session.id in self._redraw and session.running and session.fd is not None:
                session._force_redraw()  # session.py is not ours to change here
        self._redraw.clear()

    def _adopt_consoles(self) -> None:
        """After a crash: listen again on the console sockets the keeper kept open (a runtime
        that connected meanwhile waits in the backlog)."""
        assert self._server is not None
        fds, self._console_fds = self._console_fds, {}
        for key, fd in fds.items():
            try:
                cs = self._server.containers.adopt_console_socket(fd, **json.loads(key[8:]))
            except Exception as exc:
                log.warning("console socket %s not adopted: %s", key[8:], exc)
                os.close(fd)
                self._send(f"R{key}".encode())
                continue
            self._consoles.add(key)
            log.info("console socket %s: listening again", cs.path)

    def _sync_consoles(self, server: Server) -> None:
        current = {
            console_key(cs): cs for cs in server.console_listeners if not cs.listener.closed
        }
        for key in self._consoles - current.keys():
            self._consoles.discard(key)
            self._send(f"R{key}".encode())
        for key, cs in current.items():
            fd = cs.fileno()
            if key not in self._consoles and fd >= 0 and self._send(f"H{key}".encode(), fd):
                self._consoles.add(key)

    def _snapshot_screens(self) -> None:
        """Hand the keeper the screens that changed since their last snapshot, within a time
        budget (the rest on the next round). Each is a memfd held under its own key, so one
        busy session costs one screen, not all of them."""
        server = self._server
        if server is None or server.loop is None:
            return
        deadline = time.monotonic() + SCREEN_BUDGET
        stale = [
            s for s in server.registry
            if s.screen is not None and s.screen_settled
            and self._screened.get(s.id) != s._relays  # session.py is not ours to change here
        ]
        stale.sort(key=lambda s: s.id in self._screened)  # never snapshotted ones first
        for session in stale:
            if time.monotonic() > deadline:
                break
            self._snapshot_screen(session)
        self._screen_timer = server.loop.call_later(SCREEN_INTERVAL, self._snapshot_screens)

    def _snapshot_screen(self, session: Session) -> None:
        assert session.screen is not None
        try:
            data = session.screen.history(SCREEN_HISTORY) + session.screen.repaint()
        except Exception as exc:
            log.warning("session %d: screen not snapshotted: %s", session.id, exc)
            return
        session.schedule_compact()  # reading the history restored compressed pages
        memfd = os.memfd_create("tmuxish-screen", os.MFD_CLOEXEC)
        try:
            os.write(memfd, data)
            key = screen_key(session.id)
            if self._send(f"H{key}".encode(), memfd):
                self._held.add(key)
                self._screened[session.id] = session._relays
        finally:
            os.close(memfd)

    def forget(self, session: Session) -> None:
        """The session was removed: its record and screen snapshot go too (they may be held
        for the process before an upgrade, so released whether or not we sent them)."""
        self._screened.pop(session.id, None)
        self._recorded.pop(session.id, None)
        for key in (rec_key(session.id), screen_key(session.id)):
            self._held.discard(key)
            self._send(f"R{key}".encode())

    def describe(self) -> dict[str, Any]:
        return {"keeper": None if self.lost else self.keeper_pid, "restarts": self.restarts}

    def stop(self) -> None:
        if self._server is not None and self._server.loop is not None:
            with contextlib.suppress(Exception):
                self._server.loop.remove_reader(self.sock.fileno())
        for timer in (self._state_timer, self._check_timer, self._screen_timer):
            if timer is not None:
                timer.cancel()

    def hold(self, session: Session) -> None:
        if session.fd is None:
            return
        key = pty_key(session)
        if self._send(f"H{key}".encode(), session.fd):
            self._held.add(key)
            session.cleanup.append(lambda: self.release_pty(session))
        self.send_record(session)
        self._send_globals()
        if session.pid is not None and self.oom_score_adj != SERVER_OOM_SCORE_ADJ:
            # posix_spawn gave the program our own score; give it the keeper's back.
            with contextlib.suppress(OSError), open(f"/proc/{session.pid}/oom_score_adj", "w") as f:
                f.write(str(self.oom_score_adj))

    def release_pty(self, session: Session) -> None:
        """The session closed its PTY: first a record saying so (with the exit code), then
        the keeper's duplicate goes, so a crash in between loses nothing."""
        key = pty_key(session)
        if key in self._held:
            self.send_record(session)
            self._held.discard(key)
            self._send(f"R{key}".encode())

    def changed(self) -> None:
        """Something material changed: send the changed records soon (coalesced)."""
        server = self._server
        if server is None or server.loop is None or self._state_timer is not None:
            return
        self._state_timer = server.loop.call_later(STATE_DELAY, self.sync)

    def sync(self) -> None:
        """Send every record whose session changed since it was sent, and the globals."""
        self._state_timer = None
        server = self._server
        if server is None:
            return
        for session in server.registry:
            if self._recorded.get(session.id) != _fingerprint(session):
                self.send_record(session)
        self._send_globals()
        self._sync_consoles(server)

    def send_record(self, session: Session) -> None:
        key = rec_key(session.id)
        if self._send_memfd(key, msgpack.packb(session_record(session), use_bin_type=True)):
            self._held.add(key)
            self._recorded[session.id] = _fingerprint(session)

    def _send_globals(self) -> None:
        server = self._server
        if server is None:
            return
        now = (server.registry.next_id, server.generation)
        if now == self._globals:
            return
        state = {"version": STATE_VERSION, "next_id": now[0], "generation": now[1]}
        if self._send_memfd(None, msgpack.packb(state, use_bin_type=True)):
            self._globals = now

    def _send_memfd(self, key: str | None, data: bytes) -> bool:
        """``data`` in a memfd, held under ``key`` (or as the globals, ``S``, for None)."""
        memfd = os.memfd_create("tmuxish-state", os.MFD_CLOEXEC)
        try:
            os.write(memfd, data)
            return self._send(b"S" if key is None else f"H{key}".encode(), memfd)
        finally:
            os.close(memfd)

    def _check(self) -> None:
        server = self._server
        if server is None or server.loop is None:
            return
        self.sync()
        self._check_timer = server.loop.call_later(CHECK_INTERVAL, self._check)

    def _on_readable(self) -> None:
        while True:
            try:
                data = self.sock.recv(256)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                data = b""
            if not data:
                self._lost()
                return
            if data[:1] == b"X" and self._server is not None:
                try:
                    pid, code = (int(x) for x in data[1:].split())
                except ValueError:
                    continue
                self._server.reaper.foreign_exit(pid, code)

    def _lost(self) -> None:
        if self.lost:
            return
        log.error("the keeper is gone: sessions will not survive a crash of this server")
        self.lost = True
        self.stop()
        if self._server is not None:
            # Programs that were the keeper's children now belong to init: nobody will learn
            # their exit codes.
            self._server.reaper.keeper_lost()

    def _send(self, message: bytes, fd: int | None = None) -> bool:
        if self.lost:
            return False
        anc = []
        if fd is not None:
            anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fd]).tobytes())]
        deadline = time.monotonic() + SEND_TIMEOUT
        while True:
            try:
                self.sock.sendmsg([message], anc)
                return True
            except (BlockingIOError, InterruptedError):
                # The keeper reads at once; a full buffer means it is stopped or stuck.
                left = deadline - time.monotonic()
                if left <= 0 or not select.select([], [self.sock], [], left)[1]:
                    log.error("the keeper does not read the link; %r not sent", message[:1])
                    return False
            except OSError as exc:
                log.error("link to the keeper: %s", exc)
                self._lost()
                return False

    def handover_env(self, reaper: Reaper) -> None:
        """Before an upgrade re-exec: leave the link (and what we know) to the next process."""
        info = {
            **self.info,
            "fds": {},
            "state_fd": None,
            "exits": {str(p): c for p, c in reaper.foreign_codes().items()},
            "adopted": sorted(reaper.adopted),
            "restarts": self.restarts,
        }
        resume = os.memfd_create("tmuxish-resume", 0)
        os.write(resume, json.dumps(info).encode())
        os.set_inheritable(resume, True)
        self.sock.set_inheritable(True)
        os.environ[ENV_LINK] = f"{self.sock.fileno()},{resume}"


class LinkedRegistry(Registry):
    """The registry, telling the keeper about every PTY it gains and every change."""

    def __init__(self, link: KeeperLink, base: Registry) -> None:
        super().__init__(base.next_id)
        self._link = link
        for session in base:
            self.add(session)

    def add(self, session: Session) -> None:
        super().add(session)
        self._link.hold(session)
        self._link.changed()

    def remove(self, session: Session) -> None:
        super().remove(session)
        self._link.forget(session)
        self._link.changed()

    def rename(self, session: Session, name: str) -> None:
        super().rename(session, name)
        self._link.changed()


def _read_all(fd: int) -> bytes:
    """Read a memfd from the start without moving its offset (the keeper shares it)."""
    chunks: list[bytes] = []
    offset = 0
    while True:
        chunk = os.pread(fd, 1 << 20, offset)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        offset += len(chunk)


def set_own_oom_score_adj(value: int = SERVER_OOM_SCORE_ADJ) -> None:
    """Make this (kept) server the OOM killer's first choice: it is the one that comes back."""
    try:
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write(str(value))
    except OSError as exc:
        log.warning("cannot set oom_score_adj: %s", exc)

