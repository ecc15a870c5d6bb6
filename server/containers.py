"""Containers: sessions made from PTY masters that OCI runtimes hand over a console socket.

Two ways in:

- ``console-socket`` requests: the server listens on a new socket in its private socket directory
  and turns each PTY master received there into a session (the runtime is run by someone else, so
  the program's pid and exit status are unknown; the session ends when the PTY reports EIO).
- ``new-container`` requests: the server runs ``RUNTIME run -d --console-socket SOCK --pid-file F
  --bundle DIR ID`` itself. The server is a child subreaper, so when ``run -d`` exits the
  container's init is re-parented to it: the session records the init's real exit status, ``kill``
  signals it and ``wait`` returns its code. The container is deleted (``RUNTIME delete -f ID``)
  when its session exits or is removed.

The runtime is started with ``subprocess.Popen`` and watched with the server's pidfd reaper, never
with asyncio's subprocess support: uvloop's libuv child handling would reap behind the reaper.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import itertools
import logging
import os
import re
import shutil
import signal
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tmuxish.errors import BadRequest, ProgramNotFound, SessionExited, TmuxishError
from tmuxish.server import pty
from tmuxish.server.console_socket import (
    ConsoleSocketError,
    ConsoleSocketListener,
    ReceivedConsole,
    ensure_size,
)
from tmuxish.server.handlers import DEFAULT_COLS, DEFAULT_ROWS
from tmuxish.server.policy import validate_policy
from tmuxish.server.reaper import ExitCallback, Reaper
from tmuxish.server.registry import validate_name
from tmuxish.server.session import Session
from tmuxish.sockets import MAX_SOCKET_PATH

if TYPE_CHECKING:
    from tmuxish.server.connection import Connection
    from tmuxish.server.daemon import Server

log = logging.getLogger(__name__)

PR_SET_CHILD_SUBREAPER = 36

#: Seconds ``RUNTIME run -d`` may take before it is killed and the request fails.
RUN_TIMEOUT = float(os.environ.get("TMUXISH_RUNTIME_TIMEOUT", "60"))
#: Seconds to wait for the master after ``run -d`` succeeded (it is normally already here).
MASTER_TIMEOUT = 5.0
#: Seconds `server upgrade` waits for container launches in flight before it refuses (below
#: the client's 10 s wait for a reply; ``run -d`` normally takes well under a second).
UPGRADE_LAUNCH_WAIT = float(os.environ.get("TMUXISH_UPGRADE_LAUNCH_WAIT", "8"))
#: Seconds the server's shutdown waits for ``RUNTIME delete`` processes it started.
SHUTDOWN_GRACE = 10.0
#: What runc accepts as a container id.
_CONTAINER_ID_RE = re.compile(r"^[\w+.-]{1,1024}$")
#: Leave room for "-NNN" when a persistent socket numbers its sessions.
_MAX_BASE_NAME = 58
DEFAULT_CONSOLE_NAME = "console"


def set_child_subreaper() -> bool:
    """Make this process a child subreaper (orphaned descendants become our children)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
            err = ctypes.get_errno()
            log.warning("prctl(PR_SET_CHILD_SUBREAPER) failed: %s", os.strerror(err))
            return False
    except (OSError, AttributeError) as exc:
        log.warning("cannot become a child subreaper: %s", exc)
        return False
    return True


def _stderr_summary(text: str, limit: int = 300) -> str:
    """The runtime's last error line, without runc's logrus decoration."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return "no error output"
    last = lines[-1]
    match = re.search(r'msg="((?:[^"\\]|\\.)*)"', last)
    if match:
        last = match.group(1).replace('\\"', '"')
    return last if len(last) <= limit else last[: limit - 1] + "…"


def _payload_text(payload: bytes) -> str:
    return payload.decode("utf-8", "backslashreplace")


# -- console sockets -------------------------------------------------------------------------------


@dataclass(eq=False)
class ConsoleSocket:
    """A console-socket listener the server owns.

    ``kind`` is "user" for ``console-socket`` requests (these are kept in
    ``Server.console_listeners``, so a server upgrade can pass :meth:`fileno` through exec and
    rebuild them with :meth:`ContainerManager.restore_console_socket`) and "runtime" for the
    one-shot socket of a ``new-container`` launch (kept by the manager only).
    """

    listener: ConsoleSocketListener
    path: str
    name: str | None
    persist: bool
    kind: str = "user"
    cols: int = DEFAULT_COLS
    rows: int = DEFAULT_ROWS
    policy: str = "latest"

    def fileno(self) -> int:
        return self.listener.fileno()

    def state(self) -> dict[str, Any]:
        """What rebuilds this listener around its fd in another process (msgpack-able)."""
        return {
            "path": self.path,
            "name": self.name,
            "persist": self.persist,
            "cols": self.cols,
            "rows": self.rows,
            "policy": self.policy,
        }


# -- container init processes ----------------------------------------------------------------------


def _parent_of(pid: int) -> int | None:
    """The parent pid of ``pid`` (also of a zombie), or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return int(f.read().rpartition(b")")[2].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def _is_descendant(pid: int, limit: int = 16) -> bool:
    """Whether ``pid`` is a descendant of this process (within ``limit`` generations)."""
    me = os.getpid()
    for _ in range(limit):
        parent = _parent_of(pid)
        if parent is None or parent <= 1:
            return False
        if parent == me:
            return True
        pid = parent
    return False


class InitWatch:
    """Watches a container's init from the moment its pid is known, until its exit status.

    It must start watching synchronously when the runtime exits: the reaper's sweep reaps any
    unwatched child, and an init that already exited would otherwise lose its status.

    The init is not always our child yet when it exits: crun's ``run -d`` leaves an intermediate
    process as its parent for a moment, so ``waitpid`` fails (ECHILD) although the exit status will
    come to us once that parent exits and the zombie is re-parented to us (the subreaper). So on
    an unknown status, while the init is still a zombie whose parent is one of our descendants,
    watch that parent and look again when it exits. Meanwhile the init is held back from the
    reaper's sweep (``Reaper.hold``): once re-parented it is our unwatched zombie, and a sweep
    after any other child's exit reaped it, losing its status (``wait`` then said 0).
    """

    MAX_HOPS = 16

    def __init__(self, reaper: Reaper, loop: asyncio.AbstractEventLoop, pid: int) -> None:
        self.pid = pid
        self.done = False
        self.code: int | None = None
        self._reaper = reaper
        self._loop = loop
        self._hops = 0
        self._subscriber: ExitCallback | None = None
        reaper.watch(pid, self._exited)

    def _exited(self, pid: int, code: int | None) -> None:
        if code is None and self._hops < self.MAX_HOPS and self._retry():
            return
        self._reaper.release(pid)
        self.done = True
        self.code = code
        if code is None:
            log.warning(
                "container init %d was not our child; its exit status is unknown "
                "(is the server a child subreaper?)",
                pid,
            )
        if self._subscriber is not None:
            self._subscriber(pid, code)

    def _retry(self) -> bool:
        self._hops += 1
        parent = _parent_of(self.pid)
        if parent is None:
            return False  # gone: someone else reaped it
        if parent == os.getpid():
            # Re-parented to us by now: the new pidfd is readable at once and waitpid works.
            self._reaper.watch(self.pid, self._exited)
            return True
        if not _is_descendant(parent):
            return False
        log.debug("container init %d: waiting for its parent %d to exit", self.pid, parent)
        # Once that parent exits the init is our zombie, unwatched until _parent_exited runs:
        # a sweep in between (after any other child's exit) would reap it and lose its status.
        self._reaper.hold(self.pid)
        self._reaper.watch(parent, self._parent_exited)
        return True

    def _parent_exited(self, _parent: int, _code: int | None) -> None:
        self._exited(self.pid, None)

    def subscribe(self, callback: ExitCallback) -> None:
        if self.done:
            self._loop.call_soon(callback, self.pid, self.code)
        else:
            self._subscriber = callback


@dataclass
class ContainerSpec:
    runtime: str  # as the user gave it (shown in ls)
    runtime_path: str  # resolved program
    container_id: str
    bundle: str
    deleted: bool = field(default=False)

    def state(self) -> dict[str, Any]:
        return {
            "runtime": self.runtime,
            "runtime_path": self.runtime_path,
            "container_id": self.container_id,
            "bundle": self.bundle,
            "deleted": self.deleted,
        }

    @classmethod
    def from_state(cls, item: dict[str, Any]) -> ContainerSpec:
        return cls(
            str(item["runtime"]),
            str(item["runtime_path"]),
            str(item["container_id"]),
            str(item["bundle"]),
            bool(item.get("deleted", False)),
        )


class ConsoleSession(Session):
    """A session on a PTY master received on a console socket: the process on the other end
    is unknown, so the session ends when the PTY does (EIO) or when ``kill`` hangs it up."""

    kind = "console"


class ContainerSession(Session):
    """A session whose program is a container init the server launched and is the parent of.

    ``kill`` differs from a plain session, and the container is deleted by a ``cleanup`` hook
    when the PTY is released (exit, rm, server shutdown); the factory sets ``spec``.
    """

    kind = "container"
    spec: ContainerSpec | None = None

    def state(self, history_lines: int, with_screen: bool = True) -> dict[str, Any]:
        item = super().state(history_lines, with_screen)
        assert self.spec is not None
        item["container"] = self.spec.state()
        return item

    def job_in_foreground(self) -> bool:
        # The pid is the runtime's view of the init, which need not be the shell at the prompt.
        return False

    def kill(self, sig: int = signal.SIGHUP) -> None:
        if not self.running:
            raise SessionExited(f"session {self.id} has already exited")
        assert self.pid is not None
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, sig)
        if sig == signal.SIGHUP:
            # The init is pid 1 in its PID namespace: the kernel drops signals it has no handler
            # for (a plain `sh` ignores SIGHUP that way). Hanging up the terminal, which is what
            # SIGHUP stands for, still ends programs that read it.
            self._close_fd()


# -- the manager -----------------------------------------------------------------------------------


class ContainerManager:
    """Console sockets and container launches of one server."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self._counter = itertools.count(1)
        self._launches: set[asyncio.Task[Session]] = set()
        self._helpers: dict[int, asyncio.Future[int | None]] = {}
        self._runtime_sockets: set[ConsoleSocket] = set()
        self._subreaper = False
        #: An upgrade waits for the launches in flight: no new one starts meanwhile.
        self.upgrade_waiting = False

    # -- paths -----------------------------------------------------------------------------------

    def _private_path(self, tag: str, suffix: str) -> str:
        """A fresh path next to the server socket, e.g. ``<dir>/<sock>.cs-3.sock``."""
        sock = self.server.socket_path
        for _ in range(1000):
            path = str(sock.parent / f"{sock.name}.{tag}-{next(self._counter)}{suffix}")
            if not os.path.lexists(path):
                break
        else:
            raise TmuxishError(f"no free file name for a {tag} file in {sock.parent}")
        if len(os.fsencode(path)) > MAX_SOCKET_PATH:
            raise BadRequest(
                f"console socket path would be too long for a unix socket "
                f"({len(os.fsencode(path))} > {MAX_SOCKET_PATH} bytes): {path}; "
                "use a shorter server socket path (-S)"
            )
        return path

    # -- console sockets -------------------------------------------------------------------------

    def _listen(
        self, on_console: Callable[[ReceivedConsole], None], spec: dict[str, Any]
    ) -> ConsoleSocket:
        path = self._private_path("cs", ".sock")
        try:
            listener = ConsoleSocketListener(path, on_console, persist=spec["persist"])
        except (ConsoleSocketError, OSError) as exc:
            raise TmuxishError(f"cannot listen on {path}: {exc}") from exc
        cs = ConsoleSocket(listener=listener, path=path, **spec)
        return self._start(cs)

    def _start(self, cs: ConsoleSocket) -> ConsoleSocket:
        loop = self.server.loop
        if loop is None:
            cs.listener.close()
            raise TmuxishError("server not running")
        cs.listener.start(loop)
        if cs.kind == "user":
            self.server.console_listeners.append(cs)
        else:
            self._runtime_sockets.add(cs)
        return cs

    def _forget_socket(self, cs: ConsoleSocket) -> None:
        cs.listener.close()
        self._runtime_sockets.discard(cs)
        with contextlib.suppress(ValueError):
            self.server.console_listeners.remove(cs)

    def open_console_socket(
        self, name: str | None, persist: bool, cols: int, rows: int, policy: str
    ) -> ConsoleSocket:
        if name is not None:
            validate_name(name)
            if persist and len(name) > _MAX_BASE_NAME:
                raise BadRequest(f"a --persist name may have at most {_MAX_BASE_NAME} characters")
            if not persist:
                # One-shot: the user will `attach NAME`, so the name must be free now.
                self.server.registry.check_name(name)
        holder: list[ConsoleSocket] = []

        def on_console(console: ReceivedConsole) -> None:
            self._console_received(holder[0], console)

        spec = {
            "name": name,
            "persist": persist,
            "kind": "user",
            "cols": cols,
            "rows": rows,
            "policy": policy,
        }
        cs = self._listen(on_console, spec)
        holder.append(cs)
        log.info("console socket %s: listening (name=%s, persist=%s)", cs.path, name, persist)
        return cs

    def restore_console_socket(self, item: dict[str, Any], fd: int) -> ConsoleSocket:
        """Take over a listening console socket from its ``ConsoleSocket.state()`` and its fd
        (kept across exec by a server upgrade)."""
        holder: list[ConsoleSocket] = []

        def on_console(console: ReceivedConsole) -> None:
            self._console_received(holder[0], console)

        persist = bool(item["persist"])
        listener = ConsoleSocketListener.from_fd(fd, item["path"], on_console, persist=persist)
        cs = ConsoleSocket(
            listener,
            item["path"],
            item["name"],
            persist,
            "user",
            item.get("cols", DEFAULT_COLS),
            item.get("rows", DEFAULT_ROWS),
            item.get("policy", "latest"),
        )
        holder.append(cs)
        return self._start(cs)

    def _console_received(self, cs: ConsoleSocket, console: ReceivedConsole) -> None:
        if not cs.persist or cs.listener.closed:
            self._forget_socket(cs)
        try:
            registry = self.server.registry
            base = cs.name or DEFAULT_CONSOLE_NAME
            name = registry.unique_name(base)
            if cs.name is not None and name != cs.name and not cs.persist:
                log.warning("console socket %s: name %r was taken; using %r", cs.path, base, name)
            extra = {
                "console_socket": cs.path,
                "payload": _payload_text(console.payload),
                "peer_uid": console.peer_uid,
                "peer_pid": console.peer_pid,
            }
            cols, rows = self._prepare_master(console.fd, cs.cols, cs.rows)
            session = self.server.factory.console(
                console.fd, name, ["console-socket", cs.path], cols, rows, cs.policy, extra
            )
        except BaseException:
            with contextlib.suppress(OSError):
                os.close(console.fd)
            raise
        log.info(
            "session %d from console socket %s (payload %r)",
            session.id,
            cs.path,
            console.payload[:64],
        )

    def _prepare_master(self, fd: int, cols: int, rows: int) -> tuple[int, int]:
        """Non-blocking (the session drains it on the loop) and never 0x0; returns its size."""
        os.set_blocking(fd, False)
        ensure_size(fd, cols, rows)
        return pty.get_size(fd)

    # -- helper processes ------------------------------------------------------------------------

    def _ensure_subreaper(self) -> None:
        if not self._subreaper:
            self._subreaper = set_child_subreaper()

    def _spawn(
        self, argv: list[str], callback: ExitCallback | None = None, stderr: int | None = None
    ) -> int:
        """Start a helper (runtime) process and watch it with the reaper; returns its pid."""
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=stderr if stderr is not None else subprocess.DEVNULL,
            stderr=stderr if stderr is not None else subprocess.DEVNULL,
            close_fds=True,
            start_new_session=True,
            cwd="/",
        )
        # The reaper owns the exit status; keep Popen from reaping it behind our back later.
        proc.returncode = 0
        loop = self.server.loop
        assert loop is not None
        done: asyncio.Future[int | None] = loop.create_future()
        self._helpers[proc.pid] = done

        def exited(pid: int, code: int | None) -> None:
            self._helpers.pop(pid, None)
            try:
                if callback is not None:
                    callback(pid, code)
            finally:
                if not done.done():
                    done.set_result(code)

        self.server.reaper.watch(proc.pid, exited)
        return proc.pid

    def delete_container(self, spec: ContainerSpec) -> None:
        """``RUNTIME delete -f ID``, best effort and without blocking the loop."""
        if spec.deleted or self.server.loop is None:
            return
        spec.deleted = True
        argv = [spec.runtime_path, "delete", "-f", spec.container_id]

        def done(_pid: int, code: int | None) -> None:
            if code:
                log.warning("%s exited with code %s", " ".join(argv), code)
            else:
                log.info("container %s deleted", spec.container_id)

        try:
            self._spawn(argv, done)
        except Exception as exc:
            log.warning("cannot run %s: %s", " ".join(argv), exc)

    # -- launching containers --------------------------------------------------------------------

    def launch(
        self,
        *,
        runtime: str,
        bundle: str,
        container_id: str | None,
        name: str | None,
        cols: int,
        rows: int,
        policy: str,
    ) -> asyncio.Future[Session]:
        """Validate, then run the container in a task of its own: a client that goes away
        mid-launch must not leave a running container without a session."""
        if self.upgrade_waiting:
            raise TmuxishError(
                "the server is upgrading; run this again once 'server upgrade' is done"
            )
        registry = self.server.registry
        registry.check_name(name)
        if "/" in runtime:
            if not (os.path.isfile(runtime) and os.access(runtime, os.X_OK)):
                raise ProgramNotFound(f"runtime not found or not executable: {runtime}")
            runtime_path = runtime
        else:
            found = shutil.which(runtime)
            if found is None:
                raise ProgramNotFound(f"runtime not found: {runtime}")
            runtime_path = found
        if not os.path.isabs(bundle):
            raise BadRequest(f"bundle must be an absolute path: {bundle}")
        if not os.path.isfile(os.path.join(bundle, "config.json")):
            raise BadRequest(f"not an OCI bundle (no config.json): {bundle}")
        if container_id is not None and not _CONTAINER_ID_RE.match(container_id):
            raise BadRequest(
                f"invalid container id {container_id!r}: use letters, digits, '_', '+', '-', '.'"
            )
        if name is None and container_id is not None:
            # The container id names the session too, when it is a free session name.
            with contextlib.suppress(TmuxishError):
                registry.check_name(container_id)
                name = container_id
        loop = self.server.loop
        assert loop is not None
        # The session id is taken now, so the default container id is the session's own and
        # two launches at once never pick the same one.
        sid = registry.allocate_id()
        cid = container_id or name or f"tmuxish-{sid}"
        spec = ContainerSpec(runtime, runtime_path, cid, bundle)
        task = loop.create_task(self._launch(sid, spec, name, cols, rows, policy))
        self._launches.add(task)
        task.add_done_callback(self._launch_done)
        return task

    def _launch_done(self, task: asyncio.Task[Session]) -> None:
        self._launches.discard(task)
        if task.cancelled():
            return
        exc = task.exception()  # retrieved here even if the client that asked has gone
        if exc is not None:
            log.warning("container launch failed: %s", exc)

    async def _launch(
        self, sid: int, spec: ContainerSpec, name: str | None, cols: int, rows: int, policy: str
    ) -> Session:
        server = self.server
        loop = server.loop
        assert loop is not None
        self._ensure_subreaper()
        master: asyncio.Future[ReceivedConsole] = loop.create_future()

        def on_console(console: ReceivedConsole) -> None:
            if master.done():
                os.close(console.fd)
                return
            try:
                # Size it before the container's program looks.
                ensure_size(console.fd, cols, rows)
            except OSError as exc:
                log.warning("cannot size the console of %s: %s", spec.container_id, exc)
            master.set_result(console)

        cs = self._listen(on_console, {"name": name, "persist": False, "kind": "runtime"})
        pid_file = err_file = ""
        runtime_done: asyncio.Future[int | None] = loop.create_future()
        init: InitWatch | None = None
        runtime_pid: int | None = None
        started = False

        def runtime_exited(_pid: int, code: int | None) -> None:
            nonlocal init
            if code == 0:
                try:
                    with open(pid_file) as f:
                        init_pid = int(f.read().strip())
                except (OSError, ValueError) as exc:
                    log.warning("cannot read pid file %s: %s", pid_file, exc)
                else:
                    # Synchronously, before the reaper's next sweep could reap it.
                    init = InitWatch(server.reaper, loop, init_pid)
            if not runtime_done.done():
                runtime_done.set_result(code)

        argv = [
            spec.runtime_path,
            "run",
            "-d",
            "--console-socket",
            cs.path,
            "--pid-file",
            "",
            "--bundle",
            spec.bundle,
            spec.container_id,
        ]
        label = f"{spec.runtime} run"
        try:
            pid_file = self._private_path("rt", ".pid")
            err_file = self._private_path("rt", ".err")
            argv[argv.index("--pid-file") + 1] = pid_file
            err_fd = os.open(err_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            try:
                runtime_pid = self._spawn(argv, runtime_exited, stderr=err_fd)
            except OSError as exc:
                raise ProgramNotFound(
                    f"cannot start {spec.runtime}: {exc.strerror or exc}"
                ) from exc
            finally:
                os.close(err_fd)
            log.info("container %s: %s (pid %d)", spec.container_id, " ".join(argv), runtime_pid)
            try:
                code = await asyncio.wait_for(asyncio.shield(runtime_done), RUN_TIMEOUT)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(runtime_pid, signal.SIGKILL)
                raise TmuxishError(
                    f"{label} did not finish within {RUN_TIMEOUT:g}s; killed it"
                ) from None
            if code != 0:
                raise TmuxishError(
                    f"{label} failed (exit {code}): {_stderr_summary(self._read(err_file))}"
                )
            if init is None:
                raise TmuxishError(f"{label} succeeded but wrote no usable pid file")
            try:
                console = await asyncio.wait_for(asyncio.shield(master), MASTER_TIMEOUT)
            except TimeoutError:
                raise TmuxishError(
                    f"{label} sent no console (does config.json set process.terminal to true?)"
                ) from None
            extra = {
                "runtime": spec.runtime,
                "runtime_path": spec.runtime_path,
                "container_id": spec.container_id,
                "bundle": spec.bundle,
                "payload": _payload_text(console.payload),
            }
            # On failure the finally clause below closes the master.
            cols, rows = self._prepare_master(console.fd, cols, rows)
            session = server.factory.container(
                sid, console.fd, name, init, spec, cols, rows, policy, extra
            )
            started = True
            log.info(
                "session %d: container %s, init pid %d", session.id, spec.container_id, init.pid
            )
            return session
        finally:
            self._forget_socket(cs)
            for path in (pid_file, err_file):
                if path:
                    with contextlib.suppress(OSError):
                        os.unlink(path)
            if not started:
                if runtime_pid is not None and not runtime_done.done():
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(runtime_pid, signal.SIGKILL)
                if master.done() and not master.cancelled():
                    with contextlib.suppress(OSError):
                        os.close(master.result().fd)
                elif not master.done():
                    master.cancel()
                if runtime_pid is not None:
                    # Whatever the runtime left behind (a created or running container).
                    # (an InitWatch, if any, still reaps the init when delete -f ends it).
                    self.delete_container(spec)

    @staticmethod
    def _read(path: str) -> str:
        try:
            with open(path, "rb") as f:
                return f.read(65536).decode("utf-8", "replace")
        except OSError:
            return ""

    @property
    def launching(self) -> int:
        """Container launches in flight."""
        return len(self._launches)

    async def finish_launches(self, timeout: float = UPGRADE_LAUNCH_WAIT) -> None:
        """Before an upgrade: let every launch in flight end (a session, or its error to its
        client), refusing new ones meanwhile. A launch lives in this process only (its runtime
        is our child, its console comes to a socket of ours): an upgrade would drop it. Raises
        TmuxishError, a one-line refusal, if some are still running after ``timeout``."""
        if not self._launches:
            return
        log.info("server upgrade: waiting for %d container launch(es)", len(self._launches))
        self.upgrade_waiting = True
        try:
            _done, pending = await asyncio.wait(set(self._launches), timeout=timeout)
        finally:
            self.upgrade_waiting = False
        if pending:
            raise TmuxishError(
                f"server upgrade refused: {len(pending)} container launch(es) ('new --runtime') "
                f"still running after {timeout:g}s; try again once they are done"
            )

    # -- shutdown --------------------------------------------------------------------------------

    async def shutdown(self, grace: float = SHUTDOWN_GRACE) -> None:
        """Close every console socket, abandon launches, and give runtime helpers (deletes) a
        bounded time to finish so containers are not left behind."""
        for cs in [*self.server.console_listeners, *self._runtime_sockets]:
            self._forget_socket(cs)
        for task in list(self._launches):
            task.cancel()
        if self._launches:
            await asyncio.gather(*self._launches, return_exceptions=True)
        pending = [f for f in self._helpers.values() if not f.done()]
        if pending:
            await asyncio.wait(pending, timeout=grace)


# -- requests --------------------------------------------------------------------------------------


def _opt_str(args: dict[str, Any], key: str) -> str | None:
    value = args.get(key)
    if value is not None and not isinstance(value, str):
        raise BadRequest(f"{key} must be a string")
    return value or None


def _size(args: dict[str, Any]) -> tuple[int, int]:
    sizes = []
    for key, default in (("cols", DEFAULT_COLS), ("rows", DEFAULT_ROWS)):
        value = args.get(key)
        if value is None or value == 0:
            sizes.append(default)
        elif type(value) is int and 1 <= value <= 10000:
            sizes.append(value)
        else:
            raise BadRequest(f"{key} must be an integer from 1 to 10000")
    return sizes[0], sizes[1]


def _policy(args: dict[str, Any]) -> str:
    try:
        return validate_policy(_opt_str(args, "window_size") or "latest")
    except ValueError as exc:
        raise BadRequest(str(exc)) from None


def install(server: Server) -> None:
    """Register the container requests on ``server`` (called by handlers.install)."""
    manager = server.containers

    def console_socket(conn: Connection, args: dict[str, Any]) -> dict[str, Any]:
        cols, rows = _size(args)
        cs = manager.open_console_socket(
            _opt_str(args, "name"), bool(args.get("persist")), cols, rows, _policy(args)
        )
        return {"path": cs.path, "name": cs.name, "persist": cs.persist}

    async def new_container(conn: Connection, args: dict[str, Any]) -> dict[str, Any]:
        runtime = _opt_str(args, "runtime")
        bundle = _opt_str(args, "bundle")
        if runtime is None or bundle is None:
            raise BadRequest("runtime and bundle are required")
        cols, rows = _size(args)
        launch = manager.launch(
            runtime=runtime,
            bundle=bundle,
            container_id=_opt_str(args, "container_id"),
            name=_opt_str(args, "name"),
            cols=cols,
            rows=rows,
            policy=_policy(args),
        )
        # shield: the launch goes on (and becomes a detached session) if this client leaves.
        session = await asyncio.shield(launch)
        return session.info()

    upgrade = server.handlers["upgrade"]

    def upgrade_after_launches(conn: Connection, args: dict[str, Any]) -> Any:
        """`server upgrade` waits for `new --runtime` launches in flight (bounded)."""
        if not manager.launching:
            return upgrade(conn, args)

        async def later() -> Any:
            await manager.finish_launches()
            return upgrade(conn, args)

        return later()

    server.handlers.update(
        {
            "console-socket": console_socket,
            "new-container": new_container,
            "upgrade": upgrade_after_launches,
        }
    )
