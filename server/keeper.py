"""The keeper: a tiny parent that outlives server crashes (issue 13).

One keeper per server socket. It takes the lock, binds the socket, becomes a child subreaper and
runs the server as its child. The server hands it a duplicate of every PTY master and
console-socket listener, and its state as memfds (opaque here), so when the server dies for any
reason the programs keep their terminals (no SIGHUP) and their exit codes (orphans are
re-parented to us and reaped here), and a new server started within a second carries on from the
same fds and state. After CRASH_LIMIT crashes in CRASH_WINDOW seconds it stops restarting, keeps
everything held, and answers each client with a one-line ERROR (rather than leaving it waiting)
until SIGUSR1 (`tmuxish server restart`) asks it to try again. A server that exits 0 or dies of
SIGTERM/SIGINT/SIGHUP was asked to stop: the keeper stops too.

`tmuxish server upgrade` of a kept server is a planned restart through the same path: the server
stops reading its PTYs, hands over fresh records and a full screen snapshot (with history) of
every session, sends ``U`` and exits; the keeper then re-executes itself in place (the installed
keeper script; same pid, so programs stay its children, and every held fd, the lock and the
listening socket pass through exec) and starts the installed server, which restores exactly as
after a crash. Clients that connect meanwhile wait in the listening socket's backlog.

It never runs session logic and is not on the output path: standard library only, no event
loop, no parsing beyond one-line link messages, so there is almost nothing here that can crash.
It runs as a script (``python -I -S keeper.py``) so that it does not even import the tmuxish
package; it costs ~6 MiB of private memory, and per session one held fd and a memfd record.

Why SOCK_SEQPACKET and memfds rather than length-prefixed frames on a stream: each message keeps
its boundary and its fds together (no framing code to get wrong on either side), and state of
any size travels as one fd, so the keeper never buffers or parses it.

Link (a SOCK_SEQPACKET socketpair, one message per datagram, fds by SCM_RIGHTS):
  server -> keeper  ``H<key>`` + 1 fd: hold a duplicate of this fd under key (replaces; PTY
                    masters, and memfds with per-session records and screens)
                    ``R<key>``: release (close) it
                    ``S`` + 1 memfd: the newest global state (next id, generation)
                    ``G<n>``: the server's generation (it also counts its own upgrades)
                    ``U``: a planned upgrade: when I exit, upgrade the keeper and restart me
  keeper -> server  ``X<pid> <code>``: an orphan the keeper reaped exited with code
The new server finds its inheritance through ``TMUXISH_KEEPER_LINK=<link fd>,<resume memfd>``;
the resume memfd holds one JSON object (see ``Keeper._resume_info``).
"""

from __future__ import annotations

import array
import contextlib
import errno
import fcntl
import json
import os
import select
import signal
import socket
import stat
import sys
import time

#: The server is restarted at most this many times within CRASH_WINDOW seconds.
CRASH_LIMIT = 5
CRASH_WINDOW = 30.0
#: Exit codes of reaped orphans kept for the next server (oldest dropped first).
MAX_EXITS = 4096
#: A client of a stopped keeper gets this long to send its HELLO before it is dropped.
CLIENT_TIMEOUT = 2.0
PR_SET_CHILD_SUBREAPER = 36
#: Deaths by these signals are someone asking the server to stop, not crashes.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
ENV_LINK = "TMUXISH_KEEPER_LINK"
#: ``<memfd>``: set by a keeper that re-executes itself; the memfd holds its JSON state.
ENV_SELF = "TMUXISH_KEEPER_SELF"
SCRIPT = os.path.abspath(__file__)


def log(message: str) -> None:
    """One line to stderr, which autostart points at the log beside the socket."""
    now = time.time()
    millis = int(now * 1000) % 1000
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now)) + f",{millis:03d}"
    with contextlib.suppress(OSError):
        os.write(2, f"{stamp} INFO keeper {os.getpid()}: {message}\n".encode(errors="replace"))


def describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = f"signal {sig}"
        return f"killed by {name} ({sig})"
    return f"exited with status {os.waitstatus_to_exitcode(status)}"


def exit_code(status: int) -> int:
    """As a shell reports it (the server's pty.exit_code_of, repeated: no tmuxish imports)."""
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 1


def refusal(text: str) -> bytes:
    """``[ERROR, None, "error", text]`` in msgpack, by hand (protocol.py's ERROR is 3)."""
    raw = text.encode()[:65535]
    head = bytes([0x94, 0x03, 0xC0, 0xA5]) + b"error"
    size = bytes([0xD9, len(raw)]) if len(raw) < 256 else b"\xda" + len(raw).to_bytes(2, "big")
    return head + size + raw


def raise_fd_limit() -> None:
    """One held fd per session (and per screen snapshot): lift the soft limit to the hard one,
    as the server does (its children inherit the limit from us)."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else 1 << 20
    if soft != resource.RLIM_INFINITY and soft < target:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def set_child_subreaper() -> None:
    import ctypes  # only here: ~1 MiB, and the keeper needs it once

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        log(f"cannot become a child subreaper: {os.strerror(ctypes.get_errno())}")


class Keeper:
    def __init__(self, socket_path: str, server_argv: list[str]) -> None:
        self.socket_path = socket_path
        self.server_argv = server_argv
        self.lock_fd = -1
        self.listen: socket.socket | None = None
        #: Duplicates of the server's fds, by the server's key (e.g. "pty:3").
        self.held: dict[str, int] = {}
        self.state_fd: int | None = None
        self.exits: dict[int, int] = {}
        self.server_pid: int | None = None
        self.link: socket.socket | None = None
        self.generation = -1
        self.crashes: list[float] = []
        self.restarts: list[dict[str, object]] = []
        self.restart_at: float | None = None
        self.stopped_reason: str | None = None
        self.stopping = False
        #: The server announced a planned upgrade (``U``): its exit is not a crash.
        self.upgrade_pending = False
        #: The next server is started for an upgrade (told to it in its inheritance).
        self.upgrading = False
        self.clients: dict[int, tuple[socket.socket, float]] = {}
        self.poll = select.poll()
        self.wake_r, self.wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        with open("/proc/self/oom_score_adj") as f:
            self.oom_score_adj = int(f.read())

    # -- start -----------------------------------------------------------------------------------

    def take_lock(self) -> bool:
        # O_NOFOLLOW: with -S in a shared directory, someone could plant a symlink there.
        fd = os.open(
            self.socket_path + ".lock",
            os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY,
            0o600,
        )
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise OSError(errno.EINVAL, f"{self.socket_path}.lock is not a regular file")
        # A server (and its keeper) that is just stopping still holds the lock for a moment.
        deadline = time.monotonic() + 0.5
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    os.close(fd)
                    return False
                time.sleep(0.02)
        # `tmuxish server restart` finds us here.
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        os.set_inheritable(fd, True)
        self.lock_fd = fd
        return True

    def bind(self) -> None:
        # Only a socket is stale (we hold the lock): -S may name a file the user cares about.
        with contextlib.suppress(FileNotFoundError):
            if stat.S_ISSOCK(os.lstat(self.socket_path).st_mode):
                os.unlink(self.socket_path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)
        try:
            sock.bind(self.socket_path)
        finally:
            os.umask(old)
        sock.listen(socket.SOMAXCONN)
        sock.setblocking(False)
        sock.set_inheritable(True)
        self.listen = sock

    def install_signals(self) -> None:
        signal.set_wakeup_fd(self.wake_w, warn_on_full_buffer=False)
        for sig in (signal.SIGCHLD, signal.SIGUSR1, *STOP_SIGNALS):
            signal.signal(sig, lambda *_: None)
        self.poll.register(self.wake_r, select.POLLIN)

    # -- the server ------------------------------------------------------------------------------

    def _resume_info(self, link_fd: int) -> dict[str, object]:
        assert self.listen is not None
        return {
            "keeper": os.getpid(),
            "generation": self.generation,
            "listen_fd": self.listen.fileno(),
            "lock_fd": self.lock_fd,
            "fds": self.held,
            "state_fd": self.state_fd,
            "exits": {str(pid): code for pid, code in self.exits.items()},
            "restarts": self.restarts[-CRASH_LIMIT:],
            "oom_score_adj": self.oom_score_adj,
            "link_fd": link_fd,
            "upgrade": self.upgrading,
        }

    def spawn(self) -> None:
        self.restart_at = None
        self.generation += 1
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        resume = os.memfd_create("tmuxish-resume", 0)
        try:
            os.write(resume, json.dumps(self._resume_info(theirs.fileno())).encode())
            self.upgrading = False
            theirs.set_inheritable(True)
            os.set_inheritable(resume, True)
            env = dict(os.environ)
            env[ENV_LINK] = f"{theirs.fileno()},{resume}"
            pid = os.posix_spawn(self.server_argv[0], self.server_argv, env)
        except OSError as exc:
            ours.close()
            log(f"cannot start the server: {exc}")
            self.crashed(f"could not be started: {exc}")
            return
        finally:
            theirs.close()
            os.close(resume)
        ours.setblocking(False)
        self.link = ours
        self.server_pid = pid
        self.poll.register(ours.fileno(), select.POLLIN)
        log(f"started server {pid} (generation {self.generation})")

    def crashed(self, reason: str) -> None:
        now = time.monotonic()
        self.crashes = [t for t in self.crashes if now - t < CRASH_WINDOW] + [now]
        self.restarts.append({"time": time.time(), "reason": reason})
        del self.restarts[:-CRASH_LIMIT]
        if len(self.crashes) >= CRASH_LIMIT:
            self.stop_restarting(
                f"the server crashed {len(self.crashes)} times in {CRASH_WINDOW:.0f} s "
                f"(last: {reason})"
            )
            return
        # Restart at once the first time, then back off a little (always within a second).
        delay = min(0.05 * (2 ** (len(self.crashes) - 1)) - 0.05, 0.8)
        self.restart_at = now + delay

    def stop_restarting(self, reason: str) -> None:
        self.stopped_reason = reason
        log(
            f"{reason}; not restarting it; every program keeps running; "
            "`tmuxish server restart` tries again"
        )
        assert self.listen is not None
        self.poll.register(self.listen.fileno(), select.POLLIN)

    def restart_requested(self) -> None:
        if self.server_pid is not None or self.stopped_reason is None:
            return
        log("restart requested")
        assert self.listen is not None
        self.poll.unregister(self.listen.fileno())
        for fd in list(self.clients):
            self.drop_client(fd)
        self.stopped_reason = None
        self.crashes.clear()
        self.restarts.append({"time": time.time(), "reason": "restart requested"})
        self.spawn()

    # -- the link --------------------------------------------------------------------------------

    def read_link(self) -> None:
        """Handle every message waiting on the link; at EOF, forget the link."""
        link = self.link
        while link is not None:
            fds = array.array("i")
            try:
                data, anc, _flags, _ = link.recvmsg(
                    4096, socket.CMSG_SPACE(4 * fds.itemsize), socket.MSG_CMSG_CLOEXEC
                )
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                data, anc = b"", []
            for level, kind, payload in anc:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    fds.frombytes(payload[: len(payload) - len(payload) % fds.itemsize])
            if not data:
                for fd in fds:
                    os.close(fd)
                self.poll.unregister(link.fileno())
                link.close()
                self.link = None
                return
            self.on_message(data, list(fds))

    def on_message(self, data: bytes, fds: list[int]) -> None:
        kind, rest = data[:1], data[1:].decode(errors="replace")
        if kind == b"H" and fds:
            old = self.held.pop(rest, None)
            if old is not None:
                os.close(old)
            self.held[rest] = fds.pop(0)
            os.set_inheritable(self.held[rest], True)
        elif kind == b"R":
            old = self.held.pop(rest, None)
            if old is not None:
                os.close(old)
        elif kind == b"S" and fds:
            if self.state_fd is not None:
                os.close(self.state_fd)
            self.state_fd = fds.pop(0)
            os.set_inheritable(self.state_fd, True)
        elif kind == b"G" and rest.isdigit():
            self.generation = int(rest)
        elif kind == b"U":
            self.upgrade_pending = True
        for fd in fds:  # anything unexpected
            os.close(fd)

    def tell_server(self, message: bytes) -> None:
        if self.link is not None:
            with contextlib.suppress(OSError):
                self.link.send(message)

    # -- children --------------------------------------------------------------------------------

    def reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid == self.server_pid:
                self.server_exited(status)
                continue
            # A program (or container init) whose server died: keep its code for the next one.
            code = exit_code(status)
            self.exits[pid] = code
            if len(self.exits) > MAX_EXITS:
                del self.exits[next(iter(self.exits))]
            self.tell_server(f"X{pid} {code}".encode())

    def server_exited(self, status: int) -> None:
        pid, self.server_pid = self.server_pid, None
        # Whatever it sent before dying (a last hold, a state) is still queued: take it.
        self.read_link()
        if self.link is not None:
            self.poll.unregister(self.link.fileno())
            self.link.close()
            self.link = None
        how = describe(status)
        if self.upgrade_pending and not self.stopping:
            self.upgrade_pending = False
            log(f"server {pid} {how} for an upgrade; upgrading the keeper in place")
            self.exec_self()  # returns only if it failed: carry on with this keeper's code
            self.upgrading = True
            self.restart_at = time.monotonic()
            return
        clean = (os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0) or (
            os.WIFSIGNALED(status) and os.WTERMSIG(status) in STOP_SIGNALS
        )
        if clean or self.stopping:
            log(f"server {pid} {how}; stopping")
            self.stopping = True
            return
        log(f"server {pid} crashed: {how}; restarting it")
        self.crashed(how)

    # -- upgrading ourselves -----------------------------------------------------------------------

    def saved(self) -> dict[str, object]:
        """What the next keeper program needs to carry on (every fd named stays open)."""
        assert self.listen is not None
        return {
            "socket_path": self.socket_path,
            "server_argv": self.server_argv,
            "lock_fd": self.lock_fd,
            "listen_fd": self.listen.fileno(),
            "held": self.held,
            "state_fd": self.state_fd,
            "exits": {str(pid): code for pid, code in self.exits.items()},
            "generation": self.generation,
            "restarts": self.restarts[-CRASH_LIMIT:],
            "oom_score_adj": self.oom_score_adj,
        }

    def exec_self(self) -> None:
        """Become the installed keeper script, in this process; returns only if exec failed."""
        try:
            # A keeper that cannot even be compiled would die after exec, and every program
            # with it: keep this one instead.
            with open(SCRIPT, "rb") as f:
                compile(f.read(), SCRIPT, "exec")
        except (OSError, SyntaxError, ValueError) as exc:
            log(f"the installed keeper is unusable ({exc}); the server is upgraded, the keeper not")
            return
        memfd = os.memfd_create("tmuxish-keeper", 0)
        try:
            os.write(memfd, json.dumps(self.saved()).encode())
            env = dict(os.environ)
            env[ENV_SELF] = str(memfd)
            argv = [sys.executable, "-I", "-S", SCRIPT, self.socket_path, "--", *self.server_argv]
            signal.set_wakeup_fd(-1)
            os.execve(sys.executable, argv, env)
        except OSError as exc:
            signal.set_wakeup_fd(self.wake_w, warn_on_full_buffer=False)
            log(f"cannot re-execute the keeper: {exc}; the server is upgraded, the keeper not")
        finally:
            os.close(memfd)

    @classmethod
    def resumed(cls, saved: dict[str, object]) -> Keeper:
        """The keeper after ``exec_self``, from what the previous program ``saved``."""
        argv = saved["server_argv"]
        assert isinstance(argv, list)
        keeper = cls(str(saved["socket_path"]), [str(x) for x in argv])
        keeper.lock_fd = int(str(saved["lock_fd"]))
        listen = socket.socket(fileno=int(str(saved["listen_fd"])))
        listen.setblocking(False)
        keeper.listen = listen
        held = saved["held"]
        assert isinstance(held, dict)
        keeper.held = {str(k): int(v) for k, v in held.items()}
        state_fd = saved["state_fd"]
        keeper.state_fd = None if state_fd is None else int(str(state_fd))
        exits = saved["exits"]
        assert isinstance(exits, dict)
        keeper.exits = {int(pid): int(code) for pid, code in exits.items()}
        keeper.generation = int(str(saved["generation"]))
        restarts = saved["restarts"]
        assert isinstance(restarts, list)
        keeper.restarts = restarts
        keeper.oom_score_adj = int(str(saved["oom_score_adj"]))
        keeper.upgrading = True
        return keeper

    # -- clients while stopped -------------------------------------------------------------------

    def accept(self) -> None:
        assert self.listen is not None
        while True:
            try:
                conn, _ = self.listen.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            conn.setblocking(False)
            self.clients[conn.fileno()] = (conn, time.monotonic() + CLIENT_TIMEOUT)
            self.poll.register(conn.fileno(), select.POLLIN)

    def answer_client(self, fd: int) -> None:
        """Read the client's HELLO (so it never writes into a closed socket), then refuse."""
        conn = self.clients[fd][0]
        with contextlib.suppress(OSError):
            conn.recv(65536)
            conn.send(
                refusal(
                    f"{self.stopped_reason}; the server is not restarted, every program keeps "
                    f"running; try `tmuxish -S {self.socket_path} server restart` (log: "
                    f"{self.socket_path}.log)"
                )
            )
        self.drop_client(fd)

    def drop_client(self, fd: int) -> None:
        conn, _ = self.clients.pop(fd)
        self.poll.unregister(fd)
        conn.close()

    # -- main loop -------------------------------------------------------------------------------

    def run(self) -> int:
        self.spawn()
        while not (self.stopping and self.server_pid is None):
            now = time.monotonic()
            deadlines = [d for _, d in self.clients.values()]
            if self.restart_at is not None:
                deadlines.append(self.restart_at)
            timeout = None if not deadlines else max(0, int((min(deadlines) - now) * 1000) + 1)
            try:
                events = self.poll.poll(timeout)
            except InterruptedError:
                events = []
            for fd, _ in events:
                if fd == self.wake_r:
                    self.on_signals()
                elif self.link is not None and fd == self.link.fileno():
                    self.read_link()
                elif self.listen is not None and fd == self.listen.fileno():
                    self.accept()
                elif fd in self.clients:
                    self.answer_client(fd)
            now = time.monotonic()
            for fd, (_, deadline) in list(self.clients.items()):
                if now >= deadline:
                    self.drop_client(fd)
            if self.restart_at is not None and now >= self.restart_at and not self.stopping:
                self.spawn()
        # We still hold the lock, so the socket at our path is ours: no stale socket is left.
        with contextlib.suppress(OSError):
            os.unlink(self.socket_path)
        log("exiting")
        return 0

    def on_signals(self) -> None:
        try:
            signals = os.read(self.wake_r, 512)
        except BlockingIOError:
            return
        for sig in signals:
            if sig == signal.SIGCHLD:
                self.reap()
            elif sig == signal.SIGUSR1:
                self.restart_requested()
            elif sig in STOP_SIGNALS:
                log(f"{signal.Signals(sig).name} received; stopping")
                self.stopping = True
                self.restart_at = None
                if self.server_pid is not None:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(self.server_pid, signal.SIGTERM)
        self.reap()  # a SIGCHLD can be lost to a full wake-up pipe; reaping is idempotent


def main(argv: list[str]) -> int:
    """``keeper.py SOCKET -- SERVER-ARGV...``"""
    if len(argv) < 3 or argv[1] != "--":
        sys.stderr.write("usage: keeper.py SOCKET -- SERVER-ARGV...\n")
        return 2
    saved = os.environ.pop(ENV_SELF, "")
    if saved:
        return resume(int(saved))
    keeper = Keeper(argv[0], argv[2:])
    try:
        locked = keeper.take_lock()
    except OSError as exc:
        reason = "it is a symbolic link" if exc.errno == errno.ELOOP else exc.strerror or exc
        log(f"cannot lock {argv[0]}.lock: {reason}")
        return 1
    if not locked:
        sys.stderr.write(f"tmuxish: a server is already running on {argv[0]}\n")
        return 1
    try:
        keeper.bind()
    except OSError as exc:
        log(f"cannot listen on {argv[0]}: {exc}")
        return 1
    set_child_subreaper()
    raise_fd_limit()
    keeper.install_signals()
    log(f"keeping the server on {argv[0]}")
    return keeper.run()


def resume(memfd: int) -> int:
    """Carry on after ``Keeper.exec_self``: the lock, the socket and every held fd are open."""
    with os.fdopen(memfd, "rb") as f:
        f.seek(0)
        keeper = Keeper.resumed(json.loads(f.read()))
    set_child_subreaper()  # kept across exec; harmless to say again
    raise_fd_limit()
    keeper.install_signals()
    log(f"keeper re-executed in place (upgrade); keeping the server on {keeper.socket_path}")
    keeper.reap()  # programs that ended during the exec
    return keeper.run()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
