"""The server's side of the link to its keeper (server/keeper.py, whose docstring is the spec).

When a keeper runs the server, every PTY master the registry gains is duplicated to the keeper
(``hold``) and released when the session closes it. Each session's record (ids, name, command,
pid, size, policy, status, exit code) is a small memfd the keeper holds under ``rec:<id>``,
replaced when it changes, so an update costs one record whatever the number of sessions, and
a record always says a program has exited before its PTY is released. ``S`` carries the rest
(next id, generation); ``screen:<id>`` memfds carry screen snapshots. After a crash the keeper
starts a new server with all of them: server/keeper_inheritance.py turns them back into the state
``upgrade.restore`` takes (the records are the sessions' per-kind ``state()``), so a crash and an
upgrade rebuild sessions through one path. Exit
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

from tmuxish.server import upgrade
from tmuxish.server.keeper_inheritance import (
    ENV_LINK,
    STATE_VERSION,
    Inheritance,
    console_key,
    pty_key,
    rec_key,
    session_record,
)
from tmuxish.server.reaper import Reaper
from tmuxish.server.registry import Registry
from tmuxish.server.screen_snapshots import INTERVAL, ScreenSnapshots, screen_key
from tmuxish.server.session import Session

if TYPE_CHECKING:
    from tmuxish.server.daemon import Server

log = logging.getLogger(__name__)

#: What a kept server writes to its own oom_score_adj: the OOM killer takes it before any program
#: (it comes back within a second) and never the keeper.
SERVER_OOM_SCORE_ADJ = 1000
#: Coalesce state snapshots: at most one per this many seconds after a change.
STATE_DELAY = 0.02
#: How often cheap changes (sizes, exit codes) are looked for.
CHECK_INTERVAL = 1.0
SEND_TIMEOUT = 2.0


def _fingerprint(s: Session) -> tuple[Any, ...]:
    """What, when it changes, makes a session's record worth sending again."""
    return (
        s.name,
        s.exit_code,
        s.child_done,
        s.cols,
        s.rows,
        s.fd is None,
        s.policy,
        # An integrated shell's prompt state (server/shellhook.py) travels too.
        tuple(sorted(s.shell.snapshot().items())),
        # A recording a crash must not end (and one stopped that must not come back).
        None if s.recording is None else (s.recording.path, s.recording.failed is None),
    )


class KeeperLink:
    def __init__(self, inheritance: Inheritance) -> None:
        self.inheritance = inheritance
        self.sock = inheritance.sock
        self.keeper_pid = inheritance.keeper_pid
        self.generation = inheritance.generation
        self.restarts = inheritance.restarts
        self.oom_score_adj = inheritance.oom_score_adj
        self._server: Server | None = None
        #: The keeper died (or stopped reading): we carry on alone.
        self.lost = False
        #: Keys of what the keeper holds for us.
        self._held: set[str] = set()
        self._state_timer: Any = None
        self._check_timer: Any = None
        #: Per session id, the fingerprint of the record the keeper holds.
        self._recorded: dict[int, tuple[Any, ...]] = {}
        self._globals: tuple[int, int] | None = None
        #: Console-socket listeners the keeper holds, by key.
        self._consoles: set[str] = set()
        self.screens = ScreenSnapshots(self._hold_bytes)
        self._screen_timer: Any = None

    @classmethod
    def from_env(cls) -> KeeperLink | None:
        """The link our keeper left in the environment, or None when no keeper runs us."""
        inheritance = Inheritance.from_env()
        return None if inheritance is None else cls(inheritance)

    def listen_and_lock(self) -> tuple[socket.socket, int]:
        return self.inheritance.listen_and_lock()

    def resume_state(self) -> dict[str, Any] | None:
        """After a crash: the state to restore (``upgrade.restore``'s format), or None."""
        inh = self.inheritance
        state = inh.resume_state(lambda key: self._send(f"R{key}".encode()))
        # upgrade.restore listens on them again; the keeper already holds them.
        self._consoles.update(inh.console_keys)
        for sid in inh.restored_screens:
            self._held.add(screen_key(sid))
            self.screens.restored(sid)
        return state

    # -- running ---------------------------------------------------------------------------------

    def start(self, server: Server) -> None:
        """Before sessions are restored: watch the registry, learn exits, extend `info`."""
        assert server.loop is not None
        self._server = server
        inh = self.inheritance
        server.reaper.adopted.update(inh.adopted)
        for pid, code in inh.exits.items():
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
        self._check_timer = server.loop.call_later(CHECK_INTERVAL, self._check)
        self._screen_timer = server.loop.call_later(INTERVAL, self._screen_round)
        if inh.redraw:
            server.loop.call_soon(self._redraw_all)

    def _redraw_all(self) -> None:
        """After a crash restore (which runs right after ``start``): make each program whose
        screen was never snapshotted draw it again into the fresh model, as an attach to a
        model-less session does (a one-row resize and back)."""
        assert self._server is not None
        for session in self._server.registry:
            if session.id in self.inheritance.redraw and session.running and session.fd is not None:
                session._force_redraw()  # session.py is not ours to change here
        self.inheritance.redraw.clear()

    def _sync_consoles(self, server: Server) -> None:
        current = {console_key(cs): cs for cs in server.console_listeners if not cs.listener.closed}
        for key in self._consoles - current.keys():
            self._consoles.discard(key)
            self._send(f"R{key}".encode())
        for key, cs in current.items():
            fd = cs.fileno()
            if key not in self._consoles and fd >= 0 and self._send(f"H{key}".encode(), fd):
                self._consoles.add(key)

    def _screen_round(self) -> None:
        server = self._server
        if server is None or server.loop is None:
            return
        self.screens.round(server.registry)
        self._screen_timer = server.loop.call_later(INTERVAL, self._screen_round)

    def _hold_bytes(self, key: str, data: bytes) -> bool:
        if self._send_memfd(key, data, "tmuxish-screen"):
            self._held.add(key)
            return True
        return False

    def forget(self, session: Session) -> None:
        """The session was removed: its record and screen snapshot go too (they may be held
        for the process before an upgrade, so released whether or not we sent them)."""
        self.screens.forget(session.id)
        self._recorded.pop(session.id, None)
        for key in (rec_key(session.id), screen_key(session.id)):
            self._held.discard(key)
            self._send(f"R{key}".encode())

    def hand_over(self, server: Server) -> bool:
        """A planned upgrade (sessions suspended, screens settled): fresh records, a full
        screen snapshot of every session and the console sockets to the keeper, then ``U``:
        the keeper restarts the installed server, which restores them as after a crash.
        False if the keeper cannot take it (the caller upgrades by exec instead)."""
        if self.lost:
            return False
        for session in server.registry:
            self.send_record(session, with_input=True)
            if session.screen is not None and session.fd is not None:
                self.screens.take(session)
        self._globals = None
        self._send_globals()
        self._sync_consoles(server)
        return self._send(b"U")

    def send_records(self, server: Server) -> None:
        """Every session's record again (after a handover, once recordings have finished),
        with the input still queued for each."""
        for session in server.registry:
            self.send_record(session, with_input=True)

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
        # No globals here: `new` takes its id only after this (the sync that changed() schedules
        # sends them), and a restart derives next_id from the held records anyway.
        if session.pid is not None and self.oom_score_adj != SERVER_OOM_SCORE_ADJ:
            # posix_spawn gave the program our own score; give it the keeper's back.
            with contextlib.suppress(OSError):
                fd = os.open(f"/proc/{session.pid}/oom_score_adj", os.O_WRONLY | os.O_CLOEXEC)
                try:
                    os.write(fd, str(self.oom_score_adj).encode())
                finally:
                    os.close(fd)

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

    def record_now(self, session: Session) -> None:
        """Send ``session``'s record at once, not with the next coalesced round: what it holds
        must survive a crash that comes right after (a run that just began)."""
        if self._server is not None:
            self.send_record(session)

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

    def send_record(self, session: Session, with_input: bool = False) -> None:
        key = rec_key(session.id)
        assert self._server is not None
        record = session_record(self._server.factory, session, with_input)
        if self._send_memfd(key, upgrade.pack(record)):
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
        if self._send_memfd(None, upgrade.pack(state)):
            self._globals = now

    def _send_memfd(self, key: str | None, data: bytes, name: str = "tmuxish-state") -> bool:
        """``data`` in a memfd, held under ``key`` (or as the globals, ``S``, for None)."""
        memfd = os.memfd_create(name, os.MFD_CLOEXEC)
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
            **self.inheritance.info,
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
        self.on_change = base.on_change  # after the adds: those were announced already

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


def set_own_oom_score_adj(value: int = SERVER_OOM_SCORE_ADJ) -> None:
    """Make this (kept) server the OOM killer's first choice: it is the one that comes back."""
    try:
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write(str(value))
    except OSError as exc:
        log.warning("cannot set oom_score_adj: %s", exc)
