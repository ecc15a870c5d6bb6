"""The server process: socket, event loop, signals, shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import logging
import os
import signal
import socket
import stat
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tmuxish import __version__, config
from tmuxish.errors import ConfigError, PermissionDenied, TmuxishError
from tmuxish.eventloop import new_event_loop
from tmuxish.paths import check_private_dir, is_default_dir, log_path, open_server_log
from tmuxish.server import limits, listener
from tmuxish.server.connection import RUN_DRAIN, Connection
from tmuxish.server.containers import ConsoleSocket, ContainerManager, set_child_subreaper
from tmuxish.server.events import EventHub
from tmuxish.server.factory import SessionFactory
from tmuxish.server.keeper_link import KeeperLink, set_own_oom_score_adj
from tmuxish.server.limits import ConnectionLimits
from tmuxish.server.listener import Listener
from tmuxish.server.reaper import Reaper
from tmuxish.server.registry import Registry
from tmuxish.server.session import Session

log = logging.getLogger(__name__)

Handler = Callable[[Connection, dict[str, Any]], Any]


#: Signals that end the server cleanly: sessions get SIGHUP, the socket is removed.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT, signal.SIGQUIT)
#: Signals whose default action would kill the server without any clean-up, and that mean
#: nothing to it: noted in the log and otherwise ignored. A handler, not SIG_IGN, because an
#: ignored signal would stay ignored in every program the server starts.
IGNORED_SIGNALS = tuple(
    getattr(signal, name)
    for name in (
        *("SIGUSR1", "SIGUSR2", "SIGALRM", "SIGVTALRM", "SIGPROF", "SIGPWR", "SIGSTKFLT", "SIGIO"),
    )
    if hasattr(signal, name)
) + tuple(range(signal.SIGRTMIN, signal.SIGRTMAX + 1))


def _env_float(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        return default


def _history_limit() -> int:
    """history_limit from the environment the server started with, or its config file."""
    try:
        return int(config.load()["history_limit"])
    except ConfigError as exc:
        log.warning("%s; history_limit is %d", exc, config.DEFAULT_HISTORY_LIMIT)
        return config.DEFAULT_HISTORY_LIMIT


class Server:
    def __init__(self, socket_path: Path) -> None:
        self.socket_path = socket_path
        self.version = __version__
        self.registry = Registry()
        self.reaper = Reaper()
        self.connections: set[Connection] = set()
        self.limits = ConnectionLimits(
            handshake_timeout=_env_float("TMUXISH_HANDSHAKE_TIMEOUT", limits.HANDSHAKE_TIMEOUT),
            frame_timeout=_env_float("TMUXISH_FRAME_TIMEOUT", limits.FRAME_TIMEOUT),
            max_buffered=int(_env_float("TMUXISH_MAX_BUFFERED", limits.MAX_BUFFERED)),
        )
        self.max_connections = int(_env_float("TMUXISH_MAX_CLIENTS", listener.MAX_CONNECTIONS))
        self.handlers: dict[str, Handler] = {}
        self.loop: asyncio.AbstractEventLoop | None = None
        self.stopped: asyncio.Event | None = None
        self.listen_sock: socket.socket | None = None
        self._listener: Listener | None = None
        # A client that stops reading is dropped after this long (seconds) or this much backlog.
        self.stall_timeout = _env_float("TMUXISH_STALL_TIMEOUT", 10.0)
        self.max_behind_bytes = int(_env_float("TMUXISH_MAX_BACKLOG", 32 * 1024 * 1024))
        self.drop_grace = 30.0
        #: Lines of history each session's screen model keeps (config history_limit).
        self.history_limit = _history_limit()
        #: Set by the `upgrade` request: leave the loop without ending sessions, then re-exec.
        self.upgrading = False
        #: An upgrade was handed over to the keeper: exit, it starts the installed server.
        self.handed_over = False
        #: `kill-server`: the user ended it, so its .lock and .log go with it (issue 14).
        self.remove_files = False
        #: How many times this server has re-executed itself (shown by `info`).
        self.generation = 0
        #: Console sockets made by `console-socket` requests (their fds can pass through exec).
        self.console_listeners: list[ConsoleSocket] = []
        self.containers = ContainerManager(self)
        #: The link to the keeper that restarts us after a crash (None: no keeper runs us).
        self.keeper: KeeperLink | None = None
        self.factory = SessionFactory(self)
        #: Subscribers of `tmuxish events` (server/events.py).
        self.events = EventHub()
        self.registry.on_change = self.events.emit
        from tmuxish.server import handlers

        handlers.install(self)

    # -- sessions --------------------------------------------------------------------------------

    def session_exited(self, session: Session) -> None:
        log.info("session %d exited with code %s", session.id, session.exit_code)
        if self.keeper is not None:
            self.keeper.changed()
        self.events.emit("session-exited", session, {"exit_code": session.exit_code})
        if session.extra.get("auto_remove"):
            # `new --rm`: its waiters and clients have had the code by now.
            self.registry.remove(session)

    # -- lifecycle -------------------------------------------------------------------------------

    def bind(self) -> socket.socket:
        """Bind the listening socket, replacing a stale one left by a crashed server."""
        path = self.socket_path
        if is_default_dir(path.parent):
            check_private_dir(path.parent)
        # Only a socket is stale: -S may name a file the user cares about. (We hold the lock,
        # so a socket found here belongs to no live server.)
        with contextlib.suppress(FileNotFoundError):
            if stat.S_ISSOCK(os.lstat(path).st_mode):
                os.unlink(path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0o177)
        try:
            sock.bind(str(path))
        finally:
            os.umask(old_umask)
        # A deep backlog: a client's connect() with a timeout is non-blocking, and on a unix socket
        # a full backlog fails it at once with EAGAIN ("cannot connect") instead of waiting.
        sock.listen(socket.SOMAXCONN)
        sock.setblocking(False)
        self.listen_sock = sock
        return sock

    async def serve(self, sock: socket.socket, resume: dict[str, Any] | None = None) -> None:
        loop = asyncio.get_running_loop()
        self.loop = loop
        self.stopped = asyncio.Event()
        self.reaper.start(loop)
        for sig in STOP_SIGNALS:
            loop.add_signal_handler(sig, self.request_stop)
        for number in IGNORED_SIGNALS:
            with contextlib.suppress(ValueError, RuntimeError, OSError):
                loop.add_signal_handler(number, self._ignored_signal, number)
        self._warm_up()
        if self.keeper is not None:
            self.keeper.start(self)
        if resume is not None:
            from tmuxish.server import upgrade

            upgrade.restore(self, resume)
        self._listener = Listener(
            sock,
            lambda fds, data: Connection(self, fds, data),
            lambda: len(self.connections),
            self.max_connections,
        )
        self._listener.start(loop)
        log.info("server %d listening on %s (%s)", os.getpid(), self.socket_path, type(loop))
        await self.stopped.wait()
        if self.upgrading:
            await self._prepare_upgrade()
        else:
            await self._shutdown()

    def _warm_up(self) -> None:
        try:
            from tmuxish.server import screen
        except Exception as exc:
            log.warning("screen model unavailable: %s", exc)
            return
        try:
            screen.warm_up()
        except Exception as exc:
            log.warning("screen model warm-up failed: %s", exc)

    def _ignored_signal(self, number: int) -> None:
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = f"signal {number}"
        log.info("%s received and ignored (TERM, HUP, INT or QUIT stop the server)", name)

    def request_stop(self) -> None:
        if self.stopped is not None:
            self.stopped.set()

    async def _prepare_upgrade(self) -> None:
        """Quiesce everything but keep sessions, the socket and the lock for the next process."""
        log.info("server re-executing for upgrade")
        assert self.loop is not None and self.listen_sock is not None
        # Stop accepting first; the socket (and its backlog) stays open for the next process, so
        # clients that connect meanwhile simply wait for it.
        if self._listener is not None:
            self._listener.pause()
        for sig in STOP_SIGNALS:
            self.loop.remove_signal_handler(sig)
        for session in list(self.registry):
            session.suspend()
        draining = any(conn.streaming_run for conn in self.connections)
        for conn in list(self.connections):
            conn.upgrade_notice()
        deadline = self.loop.time() + (RUN_DRAIN if draining else 2.0)
        while self.connections and self.loop.time() < deadline:
            await asyncio.sleep(0.01)
        # Let every screen model catch up so the carried-over state is complete.
        for session in self.registry:
            session.settle_screen()
        while not all(x.screen_settled for x in self.registry) and self.loop.time() < deadline:
            await asyncio.sleep(0.01)
        self.limits.close()
        if self.keeper is not None:
            # Kept: the keeper restarts the installed server (one path for upgrade and crash).
            self.handed_over = self.keeper.hand_over(self)
        self.reaper.stop()
        if self.keeper is not None:
            self.keeper.stop()

    async def _shutdown(self) -> None:
        log.info("server shutting down")
        if self.loop is not None:
            for sig in STOP_SIGNALS:
                self.loop.remove_signal_handler(sig)
        if self._listener is not None:
            self._listener.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.socket_path)
        for session in list(self.registry):
            if session.running:
                with contextlib.suppress(TmuxishError, OSError):
                    session.kill(signal.SIGHUP)
        for conn in list(self.connections):
            if conn.transport is not None:
                conn.transport.close()
        for session in list(self.registry):
            session.close()
        # Close console sockets; let `RUNTIME delete` of container sessions finish (bounded).
        await self.containers.shutdown()
        self.limits.close()
        self.reaper.stop()
        self.reaper.sweep()
        await asyncio.sleep(0)


def _lock(socket_path: Path) -> int:
    """One server per socket: a second one started by a racing client exits quietly.

    O_NOFOLLOW: with -S in a shared directory, someone else could plant a symlink at the path.
    """
    fd = os.open(
        str(socket_path) + ".lock",
        os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY,
        0o600,
    )
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, f"{socket_path}.lock is not a regular file")
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _setup_logging(socket_path: Path, foreground: bool) -> None:
    handler: logging.Handler
    if foreground:
        handler = logging.StreamHandler(sys.stderr)
    else:
        fd = open_server_log(log_path(socket_path))
        stream = os.fdopen(fd, "a", encoding="utf-8", errors="replace")
        handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(os.environ.get("TMUXISH_LOG_LEVEL", "INFO").upper())


def _reason(exc: OSError) -> str:
    if exc.errno == errno.ELOOP:
        return "it is a symbolic link"
    return exc.strerror or str(exc)


def run(socket_path: Path, foreground: bool = False, resume_fd: int | None = None) -> int:
    """Run a server on ``socket_path`` until told to stop. Returns the process exit status."""
    if resume_fd is not None:
        return _resume(socket_path, foreground, resume_fd)
    keeper = KeeperLink.from_env()
    if keeper is not None:
        return _kept(socket_path, foreground, keeper)
    try:
        if is_default_dir(socket_path.parent):
            check_private_dir(socket_path.parent)
    except PermissionDenied as exc:
        sys.stderr.write(f"tmuxish: {exc}\n")
        return 1
    try:
        lock_fd = _lock(socket_path)
    except BlockingIOError:
        sys.stderr.write(f"tmuxish: a server is already running on {socket_path}\n")
        return 1
    except OSError as exc:
        sys.stderr.write(f"tmuxish: cannot lock {socket_path}.lock: {_reason(exc)}\n")
        return 1
    try:
        _setup_logging(socket_path, foreground)
    except OSError as exc:
        sys.stderr.write(f"tmuxish: cannot open {log_path(socket_path)}: {_reason(exc)}\n")
        os.close(lock_fd)
        return 1
    server = Server(socket_path)
    try:
        sock = server.bind()
    except OSError as exc:
        log.error("cannot listen on %s: %s", socket_path, exc)
        return 1
    return _serve(server, sock, lock_fd, None)


def raise_fd_limit() -> None:
    """Each session holds two descriptors (PTY master, pidfd): lift the soft limit (often 1024,
    i.e. ~500 sessions) to the hard one, as far as the kernel allows."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else 1 << 20
    if soft == resource.RLIM_INFINITY or soft >= target:
        return
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError) as exc:
        log.warning("cannot raise the descriptor limit from %d: %s", soft, exc)


def _serve(server: Server, sock: socket.socket, lock_fd: int, resume: dict[str, Any] | None) -> int:
    # Container inits started by `new --runtime` are re-parented to us: exit codes, no zombies.
    set_child_subreaper()
    raise_fd_limit()
    loop = new_event_loop()
    try:
        loop.run_until_complete(server.serve(sock, resume))
    finally:
        loop.close()
        from tmuxish.server.recording import finish_all

        finish_all()  # recordings reach their files before the exit (or the upgrade's exec)
    if server.upgrading and server.handed_over:
        assert server.keeper is not None
        # Recordings have finished writing only now: their state goes in the records.
        server.keeper.send_records(server)
        log.info("server exiting for an upgrade; the keeper starts the installed version")
        logging.shutdown()
        # No clean-up: console sockets, PTYs and containers now belong to the next server.
        os._exit(0)
    if server.upgrading:
        from tmuxish.server import upgrade

        memfd = upgrade.snapshot(server, sock.fileno(), lock_fd)
        if server.keeper is not None:
            server.keeper.handover_env(server.reaper)
        upgrade.exec_server(str(server.socket_path), memfd)
    log.info("server exited")
    if server.remove_files:
        _remove_files(server.socket_path)
    os.close(lock_fd)
    return 0


def _remove_files(socket_path: Path) -> None:
    """After `kill-server`: nothing of the server is left beside its socket. The lock goes
    while still held, so a server starting meanwhile either gets the old (unlinked) file and
    finds it locked, or creates a fresh one. A server ended by a signal keeps its log."""
    for handler in list(logging.getLogger().handlers):
        if isinstance(handler, logging.FileHandler):
            handler.close()
            logging.getLogger().removeHandler(handler)
    for path in (log_path(socket_path), Path(str(socket_path) + ".lock")):
        with contextlib.suppress(OSError):
            os.unlink(path)


def _resume(socket_path: Path, foreground: bool, resume_fd: int) -> int:
    """The second half of an upgrade: this process was exec'd by the previous server."""
    from tmuxish.server import upgrade

    try:
        _setup_logging(socket_path, foreground)
    except OSError:
        _setup_logging(socket_path, True)  # the sessions matter more than the log file
    state = upgrade.load_state(resume_fd)
    lock_fd = state["lock_fd"]
    os.set_inheritable(lock_fd, False)
    sock = socket.socket(fileno=state["listen_fd"])
    sock.set_inheritable(False)
    sock.setblocking(False)
    server = Server(socket_path)
    server.listen_sock = sock
    server.generation = int(state.get("generation", 0)) + 1
    server.keeper = KeeperLink.from_env()
    log.info("server %d resuming after upgrade", os.getpid())
    return _serve(server, sock, lock_fd, state)


def _kept(socket_path: Path, foreground: bool, keeper: KeeperLink) -> int:
    """A server started by its keeper (server/keeper.py): after a crash or a planned upgrade,
    carry on from the keeper's fds and the last records and screen snapshots."""
    _setup_logging(socket_path, foreground)
    set_own_oom_score_adj()
    sock, lock_fd = keeper.listen_and_lock()
    server = Server(socket_path)
    server.listen_sock = sock
    server.keeper = keeper
    server.generation = keeper.generation
    state = keeper.resume_state()
    if state is not None and keeper.inheritance.upgrade:
        log.info(
            "server %d (generation %d) upgraded: %d sessions",
            os.getpid(),
            server.generation,
            len(state["sessions"]),
        )
    elif state is not None:
        last = keeper.restarts[-1]["reason"] if keeper.restarts else "unknown"
        log.info(
            "server %d (generation %d) restarting after a crash (%s): %d sessions",
            os.getpid(),
            server.generation,
            last,
            len(state["sessions"]),
        )
    if state is not None:
        state["next_id"] = max([state["next_id"], *(int(s["id"]) + 1 for s in state["sessions"])])
    return _serve(server, sock, lock_fd, state)
