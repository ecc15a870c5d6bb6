"""The session factory: the one place sessions are built, from a request or from saved state.

Three kinds of session exist, each a class with its own ``kind`` and ``state()``:

- ``program`` (:class:`~tmuxish.server.session.Session`): a program we spawned on a new PTY;
- ``console`` (:class:`~tmuxish.server.containers.ConsoleSession`): a PTY master received on a
  console socket; its process is unknown;
- ``container`` (:class:`~tmuxish.server.containers.ContainerSession`): a container we ran with
  ``RUNTIME run -d``; its init is our child (we are a subreaper) and it is deleted at the end.

A session's state is a plain msgpack-able dict; its PTY master travels beside it, so whoever
restores (the next process of a ``server upgrade``, or later a crash-recovery keeper that hands
over the fds it kept) passes the fd to use: nothing depends on the old fd numbers.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import signal
import time
from datetime import datetime
from typing import TYPE_CHECKING, Any

from tmuxish.errors import TmuxishError
from tmuxish.server import pty, shellrc
from tmuxish.server.containers import ConsoleSession, ContainerSession, ContainerSpec, InitWatch
from tmuxish.server.handlers import make_screen
from tmuxish.server.session import Session

if TYPE_CHECKING:
    from tmuxish.server.daemon import Server

log = logging.getLogger(__name__)

#: Screen history carried over per session (lines above the visible screen).
HISTORY_LINES = 5000

SESSION_KINDS: dict[str, type[Session]] = {
    Session.kind: Session,
    ConsoleSession.kind: ConsoleSession,
    ContainerSession.kind: ContainerSession,
}


class SessionFactory:
    """Builds the sessions of one server."""

    def __init__(self, server: Server) -> None:
        self.server = server

    def _build(
        self,
        cls: type[Session],
        sid: int,
        name: str | None,
        command: list[str],
        pid: int | None,
        fd: int | None,
        cols: int,
        rows: int,
        policy: str,
        extra: dict[str, Any] | None,
        screen_on: bool = True,
        screen_data: bytes = b"",
    ) -> Session:
        """The only ``Session(...)`` call: the screen model and how it is fed are chosen here."""
        server = self.server
        loop = server.loop
        assert loop is not None
        screen = make_screen(server, cols, rows) if screen_on and fd is not None else None
        if screen is not None and screen_data:
            # A restored session: its saved history and repaint rebuild the model.
            try:
                screen.feed(screen_data)
                screen.take_responses()
            except Exception as exc:
                log.warning("session %d: screen not restored: %s", sid, exc)
        session = cls(
            sid,
            name,
            command,
            pid,
            fd if fd is not None else -1,
            cols,
            rows,
            loop=loop,
            reaper=server.reaper,
            policy=policy,
            screen=screen,
            on_exit=server.session_exited,
            extra=extra,
        )
        session.shell.listener = server.events.listener(session)
        return session

    # -- new sessions ----------------------------------------------------------------------------

    def program(
        self,
        command: list[str],
        name: str | None,
        cwd: str | None,
        env: dict[str, str],
        cols: int,
        rows: int,
        policy: str,
        umask: int | None = None,
    ) -> Session:
        """Spawn ``command`` on a new PTY; the session is built but not added or started.

        It gets the next id, which the caller allocates once the session runs (a request that
        fails uses none up). ``umask``: the requesting client's, for the files it creates.
        """
        server = self.server
        registry = server.registry
        registry.check_name(name)
        sid = registry.next_id
        env = {**env, "TMUXISH": f"{server.socket_path},{sid}"}
        token = secrets.token_hex(8)
        argv, env, shell = shellrc.integrate(
            command, env, shellrc.integration_dir(str(server.socket_path)), token
        )
        pid, fd = pty.spawn(argv, cwd, env, cols, rows, umask)
        extra = {"shell_integration": shell} if shell else None
        try:
            session = self._build(Session, sid, name, command, pid, fd, cols, rows, policy, extra)
            if shell:
                session.shell.mark_token = token
            return session
        except OSError as exc:
            # Out of descriptors (pidfd) or memory: end the program we just started.
            log.warning("session for %r not started: %s", command, exc)
            with contextlib.suppress(OSError):
                os.killpg(pid, signal.SIGKILL)
            with contextlib.suppress(OSError):
                os.close(fd)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
            raise TmuxishError(f"cannot start a session: {exc.strerror or exc}") from exc

    def console(
        self,
        fd: int,
        name: str | None,
        command: list[str],
        cols: int,
        rows: int,
        policy: str,
        extra: dict[str, Any],
    ) -> Session:
        """A session on a received console master (sized already); added and started."""
        registry = self.server.registry
        registry.check_name(name)
        sid = registry.allocate_id()
        session = self._build(
            ConsoleSession, sid, name, command, None, fd, cols, rows, policy, extra
        )
        registry.add(session)
        session.start()
        return session

    def container(
        self,
        sid: int,
        fd: int,
        name: str | None,
        init: InitWatch,
        spec: ContainerSpec,
        cols: int,
        rows: int,
        policy: str,
        extra: dict[str, Any],
    ) -> Session:
        """A session on the console of a container we ran (``sid`` was taken when the launch
        began, so the default container id matches it); added and started."""
        self.server.registry.check_name(name)
        command = [spec.runtime, "run", spec.container_id]
        session = self._build(
            ContainerSession, sid, name, command, init.pid, fd, cols, rows, policy, extra
        )
        assert isinstance(session, ContainerSession)
        self._arm_container(session, spec)
        self.server.registry.add(session)
        # The InitWatch has watched the init since the runtime exited: do not watch it twice.
        session.start(watch=False)
        init.subscribe(session.child_exited)
        return session

    def _arm_container(self, session: ContainerSession, spec: ContainerSpec) -> None:
        session.spec = spec
        # Runs once, when the PTY is released: on exit, rm, hang-up or server shutdown.
        session.cleanup.append(lambda: self.server.containers.delete_container(spec))

    # -- saved state -----------------------------------------------------------------------------

    def state(self, session: Session, fds: list[int], with_screen: bool = True) -> dict[str, Any]:
        """``session.state()`` with its PTY master appended to ``fds`` (``"fd"`` is the index).
        Without ``with_screen`` the screen is left out (the keeper's records carry it apart)."""
        item = session.state(HISTORY_LINES, with_screen)
        item["shell"] = session.shell.snapshot()
        if item.get("recording") is None and session.recording is not None:
            # Still being written (a keeper's record, or a writer that did not finish in time):
            # the next server goes on with the file as after a crash.
            item["recording"] = session.recording.live_state()
        if session.fd is not None:
            item["fd"] = len(fds)
            fds.append(session.fd)
        else:
            item["fd"] = None
        return item

    def restore(self, item: dict[str, Any], fd: int | None) -> Session:
        """Rebuild, register and start one session from its state, on PTY master ``fd``."""
        server = self.server
        loop = server.loop
        assert loop is not None
        cls = SESSION_KINDS.get(item.get("kind", Session.kind))
        if cls is None:
            raise ValueError(f"unknown session kind {item.get('kind')!r}")
        if fd is not None:
            os.set_inheritable(fd, False)
            os.set_blocking(fd, False)
        session = self._build(
            cls,
            item["id"],
            item["name"],
            item["command"],
            item["pid"],
            fd,
            item["cols"],
            item["rows"],
            item["policy"],
            item["extra"],
            screen_on=item["screen_was_on"],
            screen_data=item["screen"],
        )
        session.created = datetime.fromisoformat(item["created"])
        session.shell.restore(item.get("shell"))
        session.last_used = time.monotonic()
        init: InitWatch | None = None
        if isinstance(session, ContainerSession):
            self._arm_container(session, ContainerSpec.from_state(item["container"]))
        # States from before "ended" existed had no unknown codes: an exit code meant the end.
        ended = item.get("ended", item["exit_code"] is not None)
        if fd is None:
            session.fd = None
            session.child_done = True
            session.ended = ended
            session.exit_code = item["exit_code"]
            server.registry.add(session)
            return session
        server.registry.add(session)
        session.schedule_compact()  # the restored history is all in uncompressed pages
        if ended:
            # The program had exited but its PTY was still draining when we stopped. (A
            # console session's child_done says only that it has no process to wait for.)
            session.start(watch=False)
            session.child_exited(item["pid"] or 0, item["exit_code"])
        elif isinstance(session, ContainerSession) and session.pid is not None:
            # Same as at launch: the init may not be our child yet (crun's intermediate).
            init = InitWatch(server.reaper, loop, session.pid)
            session.start(watch=False)
            init.subscribe(session.child_exited)
        else:
            session.start()
        if not ended and item.get("input"):
            # Before the recording resumes: it recorded this input when it was first queued.
            session.write_input(item["input"])
        self._reopen_log(session)
        if item.get("recording") or "recording" in session.extra:
            from tmuxish.server.record_requests import resume

            resume(session, item.get("recording"))
        return session

    @staticmethod
    def _reopen_log(session: Session) -> None:
        path = session.extra.get("log")
        if not path:
            return
        from tmuxish.server.logfile import DEFAULT_MAX_BYTES, OutputLog

        try:
            output_log = OutputLog(path, session.extra.get("log_max", DEFAULT_MAX_BYTES))
        except OSError as exc:
            log.warning("session %d: log not reopened: %s", session.id, exc)
            return
        session.log_sink = output_log.write
        session.cleanup.append(output_log.close)
