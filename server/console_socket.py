"""Receiving PTY masters from OCI runtimes over a console socket (``--console-socket``).

The runtime (runc, crun, youki, conmon's helper) connects to a listening AF_UNIX stream socket,
sends ONE message carrying the container's PTY master as an SCM_RIGHTS fd plus an informational
payload, and closes. Payloads seen in the wild: ``b"/dev/ptmx"`` (runc <= 1.2.7, youki),
``b"/dev/pts/ptmx"`` (newer runc), ``b" "`` (crun), a name followed by NUL (conmon). The payload
is treated as opaque bytes and capped at :data:`MAX_PAYLOAD`; anything a peer sends beyond that is
never read (the connection is closed), so an oversized payload is truncated, not refused.

The message carries no exit status and no container id; the peer credentials are the runtime's.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import fcntl
import logging
import os
import platform
import socket
import stat
import struct
import termios
from collections.abc import Callable, Collection
from dataclasses import dataclass

from tmuxish.server.acceptor import Acceptor, recv_with_fds

log = logging.getLogger(__name__)

MAX_PAYLOAD = 4096
"""Bytes of payload read from one console message; the rest, if any, is discarded."""

MAX_FDS = 4
"""Ancillary room, in fds. Runtimes send one; a little slack lets us close extras cleanly
instead of reporting every slightly odd sender as truncated."""

RECV_TIMEOUT = 5.0
"""Seconds an accepted connection may take to deliver its message."""

MAX_PENDING = 64
"""Accepted connections waiting for their message; more are closed at once so a flood of idle
peers costs bounded fds."""

ACCEPT_RETRY_DELAY = 1.0
"""Seconds accepting pauses when the process is out of fds or memory."""


# termios lacks TIOCGPTN (_IOR('T', 0x30, unsigned int)); the direction bits of _IOR differ on
# the architectures with a 3-bit ioctl direction field.
_TIOCGPTN = (
    0x40045430 if platform.machine().startswith(("ppc", "mips", "sparc", "alpha")) else 0x80045430
)
_UCRED = struct.Struct("iII")  # struct ucred: pid_t pid; uid_t uid; gid_t gid
_WINSIZE = struct.Struct("HHHH")  # struct winsize: rows, cols, xpixel, ypixel
_INT_SIZE = array.array("i").itemsize


class ConsoleSocketError(Exception):
    """A console message was unusable; any fd it carried has already been closed."""


@dataclass
class ReceivedConsole:
    """A verified PTY master (owned by whoever holds this) and what came with it."""

    fd: int
    payload: bytes
    peer_uid: int | None
    peer_pid: int | None


def peer_credentials(conn: socket.socket) -> tuple[int | None, int | None]:
    """(uid, pid) of the process that connected ``conn``, or (None, None) if unknown."""
    try:
        raw = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
    except OSError:
        return None, None
    pid, uid, _gid = _UCRED.unpack(raw)
    return uid, (pid if pid > 0 else None)


def _close_all(fds: Collection[int]) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)


def is_pty_master(fd: int) -> bool:
    """True if ``fd`` is the master side of a Unix98 PTY (any devpts instance)."""
    try:
        if not stat.S_ISCHR(os.fstat(fd).st_mode):
            return False
        # Only the master side answers TIOCGPTN; slaves and other ttys give EINVAL/ENOTTY.
        fcntl.ioctl(fd, _TIOCGPTN, b"\0" * 4)
    except OSError:
        return False
    return True


def _check_pty_master(fd: int) -> None:
    try:
        mode = os.fstat(fd).st_mode
    except OSError as exc:
        raise ConsoleSocketError(f"cannot stat received fd: {exc}") from exc
    if not stat.S_ISCHR(mode):
        raise ConsoleSocketError("received fd is not a character device")
    if not is_pty_master(fd):
        raise ConsoleSocketError("received fd is not a PTY master")


def recv_console(conn: socket.socket) -> ReceivedConsole:
    """Read one console message from ``conn`` and return its verified PTY master.

    The fd arrives close-on-exec (MSG_CMSG_CLOEXEC; ``socket.recv_fds`` would drop that flag,
    CPython gh-107898) so it never leaks into programs the server starts. The first fd is kept,
    extras are closed. Raises ConsoleSocketError, with every received fd closed, if the
    ancillary data was truncated, no fd came, or the fd is not a PTY master. On a non-blocking
    socket with nothing to read yet, BlockingIOError propagates and nothing was consumed.
    """
    uid, pid = peer_credentials(conn)
    try:
        received = recv_with_fds(conn, MAX_PAYLOAD, MAX_FDS)
    except BlockingIOError:
        raise
    except OSError as exc:
        raise ConsoleSocketError(f"receiving console message failed: {exc}") from exc
    payload, fds = received.data, received.fds
    if received.truncated:
        _close_all(fds)
        raise ConsoleSocketError(
            f"console message carried more than {MAX_FDS} fds (ancillary data truncated)"
        )
    if not fds:
        if not payload:
            raise ConsoleSocketError("peer closed without sending a console")
        raise ConsoleSocketError("console message carried no fd")
    master, extras = fds[0], fds[1:]
    if extras:
        log.warning("console message carried %d extra fds; closed them", len(extras))
        _close_all(extras)
    try:
        _check_pty_master(master)
    except ConsoleSocketError:
        _close_all([master])
        raise
    return ReceivedConsole(fd=master, payload=payload, peer_uid=uid, peer_pid=pid)


def ensure_size(fd: int, cols: int, rows: int) -> None:
    """Give the PTY ``cols`` x ``rows`` if it has no usable size.

    Runtimes hand over 0x0 PTYs, on which ``stty size`` fails and curses programs refuse to
    start. A PTY with a zero in either dimension is just as unusable, so it is fixed too; a real
    size is left alone because the program may already have drawn for it.
    """
    if not (0 < cols <= 0xFFFF and 0 < rows <= 0xFFFF):
        raise ValueError(f"invalid window size {cols}x{rows}")
    cur_rows, cur_cols, _, _ = _WINSIZE.unpack(
        fcntl.ioctl(fd, termios.TIOCGWINSZ, b"\0" * _WINSIZE.size)
    )
    if cur_rows and cur_cols:
        return
    fcntl.ioctl(fd, termios.TIOCSWINSZ, _WINSIZE.pack(rows, cols, 0, 0))


def _default_uids() -> frozenset[int]:
    return frozenset({os.geteuid(), 0})


class ConsoleSocketListener:
    """A console socket on the event loop: each PTY master received goes to ``on_console``.

    ``on_console`` owns the ReceivedConsole's fd from the moment it is called, even if it raises
    (the listener then logs and never touches the fd: a double close could hit an fd reused by
    someone else, which is worse than a leak). With ``persist=False`` the socket is closed and
    unlinked after the first master. Peers whose uid is not in ``allowed_uids`` (default: ours
    and root's, since runtimes often run as root) are dropped unread. Nothing here raises into
    the loop: every failure is logged and the listener keeps accepting.
    """

    path: str
    persist: bool
    received: int

    def __init__(
        self,
        path: str,
        on_console: Callable[[ReceivedConsole], None],
        *,
        persist: bool = False,
        allowed_uids: Collection[int] | None = None,
        recv_timeout: float = RECV_TIMEOUT,
    ) -> None:
        self._setup(path, on_console, persist, allowed_uids, recv_timeout)
        self._sock = self._bind(path)
        self._identity = self._path_identity()
        self._acceptor = self._make_acceptor()

    @classmethod
    def from_fd(
        cls,
        fd: int,
        path: str,
        on_console: Callable[[ReceivedConsole], None],
        *,
        persist: bool = False,
        allowed_uids: Collection[int] | None = None,
        recv_timeout: float = RECV_TIMEOUT,
    ) -> ConsoleSocketListener:
        """Adopt an already listening socket ``fd`` bound at ``path`` (e.g. kept across exec)."""
        sock = socket.socket(fileno=fd)
        try:
            if sock.family != socket.AF_UNIX or sock.type != socket.SOCK_STREAM:
                raise ConsoleSocketError(f"fd {fd} is not an AF_UNIX stream socket")
            if not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
                raise ConsoleSocketError(f"fd {fd} is not listening")
        except BaseException:
            sock.detach()  # the caller still owns fd when we refuse it
            raise
        # It was made inheritable to survive exec; from here on no child may inherit it.
        sock.set_inheritable(False)
        self = cls.__new__(cls)
        self._setup(path, on_console, persist, allowed_uids, recv_timeout)
        self._sock = sock
        self._identity = self._path_identity()
        self._acceptor = self._make_acceptor()
        return self

    def _make_acceptor(self) -> Acceptor[ReceivedConsole]:
        return Acceptor(
            self._sock,
            recv_console,
            self._received,
            name=f"console socket {self.path}",
            max_pending=MAX_PENDING,
            timeout=self._recv_timeout,
            admit=self._admit,
            retry_delay=ACCEPT_RETRY_DELAY,
        )

    def _setup(
        self,
        path: str,
        on_console: Callable[[ReceivedConsole], None],
        persist: bool,
        allowed_uids: Collection[int] | None,
        recv_timeout: float,
    ) -> None:
        self.path = path
        self.persist = persist
        self.received = 0
        self._on_console = on_console
        self._allowed_uids = (
            frozenset(allowed_uids) if allowed_uids is not None else _default_uids()
        )
        self._recv_timeout = recv_timeout
        self._closed = False
        self._started = False

    @staticmethod
    def _bind(path: str) -> socket.socket:
        parent = os.path.dirname(os.path.abspath(path))
        st = os.stat(parent)
        # The socket is briefly bound with the umask's mode before chmod; a directory nobody
        # else can write to (or enter) is what makes that window and the path itself safe.
        if st.st_uid not in (os.geteuid(), 0) or st.st_mode & 0o022:
            raise ConsoleSocketError(
                f"{parent} must be owned by us and not writable by others to hold a console socket"
            )
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(path)
            os.chmod(path, 0o600)
            sock.listen(16)
        except BaseException:
            sock.close()
            raise
        return sock

    def _path_identity(self) -> tuple[int, int] | None:
        try:
            st = os.lstat(self.path)
        except OSError:
            return None
        return (st.st_dev, st.st_ino) if stat.S_ISSOCK(st.st_mode) else None

    def fileno(self) -> int:
        """The listening socket's fd, or -1 once closed."""
        return self._sock.fileno()

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def pending(self) -> int:
        """Accepted connections still waiting for their message."""
        return self._acceptor.pending

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._closed:
            raise ConsoleSocketError("listener is closed")
        if self._started:
            raise ConsoleSocketError("listener already started")
        self._started = True
        self._sock.setblocking(False)
        self._acceptor.start(loop)

    def close(self) -> None:
        """Stop listening, drop waiting connections and unlink the socket (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self._acceptor.close()
        self._sock.close()
        # Unlink only the socket we bound: someone may have replaced the path since.
        if self._identity is not None and self._path_identity() == self._identity:
            with contextlib.suppress(OSError):
                os.unlink(self.path)

    def _admit(self, conn: socket.socket) -> bool:
        uid, pid = peer_credentials(conn)
        if uid is None or uid not in self._allowed_uids:
            log.warning("console socket %s: refused peer uid=%s pid=%s", self.path, uid, pid)
            return False
        return True

    def _received(self, conn: socket.socket, console: ReceivedConsole) -> None:
        conn.close()
        try:
            self._deliver(console)
        except Exception:
            log.exception("console socket %s: delivering console failed", self.path)

    def _deliver(self, console: ReceivedConsole) -> None:
        self.received += 1
        log.info(
            "console socket %s: received PTY master (payload=%r, peer uid=%s pid=%s)",
            self.path,
            console.payload[:64],
            console.peer_uid,
            console.peer_pid,
        )
        if not self.persist:
            # Close before the callback so a one-shot path is gone by the time anyone
            # reacts to the new console, and later connections cannot queue up behind it.
            self.close()
        try:
            self._on_console(console)
        except Exception:
            log.exception("console socket %s: on_console failed", self.path)
