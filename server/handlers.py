"""Request handlers: one function per protocol command, each taking the connection and its args.

A handler returns the reply value (or an awaitable of it) and raises TmuxishError for the user.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

from tmuxish import protocol
from tmuxish.errors import (
    BadRequest,
    ExitCodeUnknown,
    SessionNotFound,
    SessionRunning,
    TmuxishError,
)
from tmuxish.keys import DetachFilter
from tmuxish.server.logfile import DEFAULT_MAX_BYTES, OutputLog
from tmuxish.server.policy import validate_policy
from tmuxish.server.session import Session, clamp_size

if TYPE_CHECKING:
    from tmuxish.server.connection import Connection
    from tmuxish.server.daemon import Server
    from tmuxish.server.screen import Screen

log = logging.getLogger(__name__)

DEFAULT_COLS, DEFAULT_ROWS = 80, 24


def _int(args: dict[str, Any], key: str, default: int, low: int = 0, high: int = 10000) -> int:
    value = args.get(key)
    if value is None:
        return default
    if type(value) is not int or not low <= value <= high:
        raise BadRequest(f"{key} must be an integer from {low} to {high}")
    return value


def _str_or_none(args: dict[str, Any], key: str) -> str | None:
    value = args.get(key)
    if value is not None and not isinstance(value, str):
        raise BadRequest(f"{key} must be a string")
    return value


def make_screen(server: Server, cols: int, rows: int) -> Screen | None:
    if os.environ.get("TMUXISH_NO_SCREEN", "") not in ("", "0"):
        # Turned off for the whole server (its environment comes from the client that started
        # it): sessions then work as dtach's do, and attaching makes the program redraw.
        return None
    try:
        from tmuxish.server.screen import Screen
    except Exception as exc:
        log.warning("screen model unavailable: %s", exc)
        return None
    try:
        return Screen(cols, rows, history_lines=server.history_limit)
    except Exception as exc:
        log.warning("screen model unavailable: %s", exc)
        return None


def _signal_number(value: Any) -> int:
    """A signal this system has, from a number or a name (``TERM``, ``SIGTERM``, ``15``)."""
    if value is None:
        return int(signal.SIGHUP)
    number: int | None = None
    if type(value) is int:
        number = value
    elif isinstance(value, str):
        name = value.strip().upper()
        if name.isdigit() and len(name) < 10:
            number = int(name)
        elif name.isidentifier():
            if not name.startswith("SIG"):
                name = "SIG" + name
            with contextlib.suppress(KeyError):
                number = int(signal.Signals[name])
    if number is None or number <= 0 or number not in _VALID_SIGNALS:
        raise BadRequest(f"unknown signal {value!r}")
    return number


_VALID_SIGNALS = frozenset(int(s) for s in signal.valid_signals())


class Handlers:
    def __init__(self, server: Server) -> None:
        self.server = server

    def new(self, conn: Connection, args: dict[str, Any]) -> dict[str, Any]:
        server = self.server
        command = args.get("command")
        if command is None:
            # A remote client cannot know this host's shell (`-H` with no command).
            command = [os.environ.get("SHELL") or "/bin/sh"]
        if (
            not isinstance(command, list)
            or not command
            or not all(isinstance(a, str) for a in command)
        ):
            raise BadRequest("command must be a non-empty list of strings")
        name = _str_or_none(args, "name")
        server.registry.check_name(name)
        cwd = _str_or_none(args, "cwd")
        if cwd is None:
            # No client directory (remote clients): start at home, as ssh does.
            home = os.environ.get("HOME", "")
            cwd = home if os.path.isdir(home) else None
        cols = _int(args, "cols", DEFAULT_COLS, 1) or DEFAULT_COLS
        rows = _int(args, "rows", DEFAULT_ROWS, 1) or DEFAULT_ROWS
        cols, rows = clamp_size(cols, rows)
        policy = validate_policy(_str_or_none(args, "window_size") or "latest")
        env_arg = args.get("env") or {}
        if not isinstance(env_arg, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in env_arg.items()
        ):
            raise BadRequest("env must map strings to strings")
        env = dict(env_arg) if args.get("replace_env") else {**os.environ, **env_arg}
        umask = _int(args, "umask", -1, 0, 0o777)
        output_log = self._open_log(args)
        conn_loop(server)
        try:
            session = server.factory.program(
                command, name, cwd, env, cols, rows, policy, None if umask < 0 else umask
            )
        except BaseException:
            if output_log is not None:
                output_log.close()
            raise
        try:
            if output_log is not None:
                attach_log(session, output_log)
            if args.get("record"):
                from tmuxish.server import record_requests

                record_requests.start_for_new(session, args, env)
            if args.get("auto_remove"):
                # `new --rm`: forgotten once it exits (the server's session_exited does it).
                session.extra["auto_remove"] = True
            server.registry.add(session)
            session.start()
        except BaseException as exc:
            # The program runs already: whatever failed after the spawn (a --record file that
            # cannot be opened, no descriptor for the process watcher, a state record the
            # keeper cannot take) must not leave it running unlisted, or listed but unwatched.
            _abandon(server, session)
            if isinstance(exc, OSError):
                log.warning("session for %r not started: %s", command, exc)
                raise TmuxishError(f"cannot start a session: {exc.strerror or exc}") from exc
            raise
        # The id is taken only once the session runs: a refused request uses none up.
        server.registry.allocate_id()
        log.info("session %d started: pid %s, %r", session.id, session.pid, command)
        return session.info()

    def _open_log(self, args: dict[str, Any]) -> OutputLog | None:
        """The ``--log`` file, opened before anything starts: a refused one starts nothing."""
        path = _str_or_none(args, "log")
        if not path:
            return None
        log_max = _int(args, "log_max", DEFAULT_MAX_BYTES, 4096, protocol.MAX_LOG_BYTES)
        try:
            return OutputLog(path, log_max)
        except OSError as exc:
            raise BadRequest(f"cannot use log file {path}: {exc.strerror or exc}") from exc

    def attach(
        self, conn: Connection, args: dict[str, Any]
    ) -> dict[str, Any] | Awaitable[dict[str, Any]]:
        session = self.server.registry.get(args.get("target"))
        if args.get("target") is None and not session.running:
            # No target means the most recently used running session (as tmux does).
            raise SessionNotFound("no running sessions")
        if not session.screen_settled:
            # The screen model is still catching up on output clients already have: hold the
            # PTY, let it catch up, then repaint and register in one step.
            return self._attach_settled(conn, session, args)
        return self._attach(conn, session, args)

    async def _attach_settled(
        self, conn: Connection, session: Session, args: dict[str, Any]
    ) -> dict[str, Any]:
        await session.quiesce()
        try:
            return self._attach(conn, session, args)
        finally:
            session.release()

    def _attach(self, conn: Connection, session: Session, args: dict[str, Any]) -> dict[str, Any]:
        inside = args.get("inside")
        if inside is not None and inside == session.id:
            raise BadRequest(
                f"refusing to attach to session {session.id} from inside itself "
                "(its output would feed back into it)"
            )
        if not session.running:
            raise TmuxishError(
                f"session {session.id} has exited ({session.exit_text}); "
                f"'tmuxish rm {session.id}' removes it"
            )
        cols = _int(args, "cols", 0)
        rows = _int(args, "rows", 0)
        history = _int(args, "history", 0, 0, protocol.MAX_HISTORY_LINES)
        direct = args.get("direct")
        detach_filter = None
        if direct is not None:
            if not isinstance(direct, dict) or not isinstance(direct.get("keys"), bytes):
                raise BadRequest("direct must be a map with the detach keys")
            timeout = direct.get("timeout", 0.5)
            if not isinstance(timeout, (int, float)):
                raise BadRequest("direct.timeout must be a number")
            detach_filter = DetachFilter(direct["keys"], float(timeout))
        initial = conn.attach_to(
            session, cols, rows, bool(args.get("readonly")), history, detach_filter
        )
        info = session.info()
        info["initial"] = initial
        info["reset"] = session.reset_modes()
        return info

    def ls(self, conn: Connection, args: dict[str, Any]) -> list[dict[str, Any]]:
        return [s.info() for s in self.server.registry]

    def get(self, conn: Connection, args: dict[str, Any]) -> dict[str, Any]:
        return self.server.registry.get(args.get("target")).info()

    def kill(self, conn: Connection, args: dict[str, Any]) -> dict[str, Any]:
        session = self.server.registry.get(args.get("target"))
        session.kill(_signal_number(args.get("signal")))
        return session.info()

    def rm(self, conn: Connection, args: dict[str, Any]) -> dict[str, Any]:
        session = self.server.registry.get(args.get("target"))
        if session.running and not args.get("force"):
            raise SessionRunning(
                f"session {session.id} is still running; 'tmuxish kill {session.id}' ends it"
            )
        if session.running:
            session.kill(signal.SIGHUP)
        session.close()
        self.server.registry.remove(session)
        return session.info()

    def rename(self, conn: Connection, args: dict[str, Any]) -> dict[str, Any]:
        session = self.server.registry.get(args.get("target"))
        name = _str_or_none(args, "name")
        if not name:
            raise BadRequest("a new name is required")
        self.server.registry.rename(session, name)
        return session.info()

    def kill_server(self, conn: Connection, args: dict[str, Any]) -> bool:
        self.server.remove_files = True
        conn_loop(self.server).call_soon(self.server.request_stop)
        return True

    def send(self, conn: Connection, args: dict[str, Any]) -> int | Awaitable[int]:
        session = self.server.registry.get(args.get("target"))
        data = args.get("data")
        if not isinstance(data, bytes):
            raise BadRequest("data must be bytes")
        if not session.running:
            raise TmuxishError(f"session {session.id} has exited")
        app_data = args.get("app_data")
        if isinstance(app_data, bytes) and session.application_cursor_keys():
            data = app_data
        session.write_input(data)
        room = session.input_room()
        if room is None:
            return len(data)
        return self._sent_when_room(conn, room, len(data))

    async def _sent_when_room(
        self, conn: Connection, room: asyncio.Future[None], count: int
    ) -> int:
        """The program is behind on its input: the reply (and this connection's next request)
        waits until it has caught up, so `send` slows down instead of input being dropped."""
        conn.hold_reading(True)
        try:
            await room
        finally:
            conn.hold_reading(False)
        return count

    def resize(self, conn: Connection, args: dict[str, Any]) -> dict[str, Any]:
        session = self.server.registry.get(args.get("target"))
        session.resize(_int(args, "cols", session.cols, 1), _int(args, "rows", session.rows, 1))
        return session.info()

    async def wait(self, conn: Connection, args: dict[str, Any]) -> int:
        session = self.server.registry.get(args.get("target"))
        code = await session.wait()
        if code is None:
            raise ExitCodeUnknown(
                f"session {session.id} has ended; its exit code is unknown "
                "(its process is not the server's child)"
            )
        return code

    def capture(self, conn: Connection, args: dict[str, Any]) -> str | Awaitable[str]:
        session = self.server.registry.get(args.get("target"))
        if not session.screen_settled:
            return self._capture_settled(session, args)
        return self._capture(session, args)

    async def _capture_settled(self, session: Session, args: dict[str, Any]) -> str:
        await session.quiesce()
        try:
            return self._capture(session, args)
        finally:
            session.release()

    def _capture(self, session: Session, args: dict[str, Any]) -> str:
        if session.screen is None:
            raise TmuxishError(
                f"session {session.id} has no screen model ({session.screen_error}); "
                "capture is not available"
            )
        escapes = bool(args.get("escapes"))
        if args.get("history"):
            text = session.screen.history_text(escapes=escapes)
            session.schedule_compact()  # reading the history restored compressed pages
            return text
        return session.screen.screen_text(escapes=escapes)

    def prune(self, conn: Connection, args: dict[str, Any]) -> list[dict[str, Any]]:
        """Forget every exited session (`tmuxish prune`); the ones forgotten."""
        gone = []
        for session in list(self.server.registry):
            if not session.running:
                session.close()
                self.server.registry.remove(session)
                gone.append(session.info())
        return gone

    def log(self, conn: Connection, args: dict[str, Any]) -> dict[str, Any]:
        """Start (``path``) or stop (``path`` None) a running session's output log."""
        session = self.server.registry.get(args.get("target"))
        path = _str_or_none(args, "path")
        if path is not None and not session.running:
            raise TmuxishError(f"session {session.id} has exited; there is no output to log")
        stop_log(session)
        if path:
            start_log(session, path, args.get("log_max"))
        return session.info()

    def upgrade(self, conn: Connection, args: dict[str, Any]) -> dict[str, Any]:
        server = self.server
        server.upgrading = True
        conn_loop(server).call_soon(server.request_stop)
        return {"pid": os.getpid(), "version": server.version, "sessions": len(server.registry)}

    def hello(self, conn: Connection, args: dict[str, Any]) -> dict[str, Any]:
        return {
            "pid": os.getpid(),
            "version": self.server.version,
            "sessions": len(self.server.registry),
            "generation": self.server.generation,
        }


def start_log(session: Session, path: str, log_max: Any) -> None:
    """Append the session's output to ``path`` from now on (`tmuxish log`)."""
    limit = _int({"log_max": log_max}, "log_max", DEFAULT_MAX_BYTES, 4096, protocol.MAX_LOG_BYTES)
    try:
        output_log = OutputLog(path, limit)
    except OSError as exc:
        raise BadRequest(f"cannot use log file {path}: {exc.strerror or exc}") from exc
    attach_log(session, output_log)


def attach_log(session: Session, output_log: OutputLog) -> None:
    """Make ``output_log`` the session's log (`new --log`, `tmuxish log`)."""
    session.log_sink = output_log.write
    session.cleanup.append(output_log.close)
    session.extra["log"] = output_log.path
    # Kept with the path: a server upgrade reopens the log and needs the cap too.
    session.extra["log_max"] = output_log.max_bytes


def stop_log(session: Session) -> None:
    """Stop a session's output log, if it has one (the file stays)."""
    output_log = getattr(session.log_sink, "__self__", None)
    session.log_sink = None
    session.extra.pop("log", None)
    session.extra.pop("log_max", None)
    if isinstance(output_log, OutputLog):
        output_log.close()
        session.cleanup[:] = [
            f for f in session.cleanup if getattr(f, "__self__", None) is not output_log
        ]


def _abandon(server: Server, session: Session) -> None:
    """Undo a session whose request failed after its program was spawned: kill and reap the
    program, close its PTY, and forget it (no id is used up: ``new`` says so)."""
    with contextlib.suppress(TmuxishError, OSError):
        session.kill(signal.SIGKILL)
    with contextlib.suppress(Exception):
        session.close()
    if any(listed is session for listed in server.registry):
        server.registry.remove(session)
    if session.pid is not None:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(session.pid, 0)


def conn_loop(server: Server) -> asyncio.AbstractEventLoop:
    if server.loop is None:
        raise SessionNotFound("server not running")
    return server.loop


def install(server: Server) -> None:
    h = Handlers(server)
    server.handlers.update(
        {
            "new": h.new,
            "attach": h.attach,
            "ls": h.ls,
            "get": h.get,
            "kill": h.kill,
            "rm": h.rm,
            "rename": h.rename,
            "kill-server": h.kill_server,
            "send": h.send,
            "resize": h.resize,
            "wait": h.wait,
            "capture": h.capture,
            "info": h.hello,
            "upgrade": h.upgrade,
            "prune": h.prune,
            "log": h.log,
        }
    )
    from tmuxish.server import containers

    containers.install(server)  # console-socket, new-container
    from tmuxish.server import record_requests

    record_requests.install(server)  # record, record-stop
    from tmuxish.server import commandrun

    commandrun.install(server)  # run, prompt, watch; send with an output mark
    from tmuxish.server import events

    events.install(server)  # events
