"""The attach relay: the user's terminal <-> one session, byte for byte.

Keystrokes go through the pure DetachFilter and out as INPUT; OUTPUT payloads go straight to fd 1.
Nothing on this path decodes terminal data.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal

from tmuxish import protocol
from tmuxish.client import core
from tmuxish.client.terminal import (
    get_size,
    nonblocking_twin,
    raw_mode,
    user_size,
    write_all,
    write_patiently,
    write_within,
)
from tmuxish.errors import ServerGone, TmuxishError
from tmuxish.keys import DetachFilter

#: Not typing.TYPE_CHECKING: importing typing (and re with it) costs `tmuxish attach` ~15 ms.
TYPE_CHECKING = False

if TYPE_CHECKING:
    # asyncio (and uvloop) are imported once the attach request is answered: the first screen
    # does not wait for those ~50 ms of imports.
    import asyncio
    from collections.abc import Callable

    from tmuxish.client.connection import Connection
    from tmuxish.keyreader import KeyReader

SOCKET_READ = 262144
#: Input waiting to go to the server: above HIGH the terminal is not read until below LOW.
OUTBOX_HIGH = 256 * 1024
OUTBOX_LOW = 64 * 1024
#: Output waiting for the user's terminal (stopped with ^S, a slow link): past HIGH the server
#: socket is not read until it is below LOW, so the server's flow control holds the rest. The
#: keys are still read meanwhile, so the detach keys work.
TERMBOX_HIGH = 1024 * 1024
TERMBOX_LOW = 256 * 1024
#: At the end, how long the terminal may take none of what is left before it is given up.
TERM_PATIENCE = 5.0


class AttachResult:
    """How an attachment ended: what to tell the user and the exit status.

    A plain class: the dataclasses import would cost ~8 ms before the first screen.
    """

    __slots__ = ("message", "reconnect", "status")

    def __init__(self, message: str, status: int, reconnect: bool = False) -> None:
        self.message = message
        self.status = status
        #: The server is re-executing itself (upgrade): reconnect and attach again.
        self.reconnect = reconnect

    def __repr__(self) -> str:
        return f"AttachResult({self.message!r}, {self.status}, reconnect={self.reconnect})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, AttachResult):
            return NotImplemented
        return (self.message, self.status, self.reconnect) == (
            other.message,
            other.status,
            other.reconnect,
        )

    __hash__ = None  # type: ignore[assignment]  # mutable, like the dataclass it replaces


class Relay:
    def __init__(
        self,
        conn: Connection,
        session_id: int,
        detach_filter: DetachFilter,
        readonly: bool,
        stdin_fd: int = 0,
        stdout_fd: int = 1,
        read_stdin: bool = True,
    ) -> None:
        self.conn = conn
        self.sock = conn.sock
        self.session_id = session_id
        #: How the ending line names the session: "session 3", or "session web (3)".
        self.label = f"session {session_id}"
        self.filter = detach_filter
        self.readonly = readonly
        self.stdin_fd = stdin_fd
        self.stdout_fd = stdout_fd
        #: What undoes the program's terminal modes, b"" if unknown (the defaults do then) ...
        self.reset = b""
        #: ... unless the server has already reset the terminal itself (direct attach).
        self.reset_written = False
        self.attached_size = (0, 0)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._done: asyncio.Future[AttachResult] | None = None
        self._outbox = bytearray()
        self._writing = False
        #: Output the terminal has not taken yet, and the non-blocking descriptor it goes to
        #: (None: no event loop, or no /proc: blocking writes, as before).
        self._termbox = bytearray()
        self._term_fd: int | None = None
        self._socket_paused = False
        self._detaching = False
        #: False in direct mode: the server reads the terminal itself.
        self._read_stdin = read_stdin
        self._keys: KeyReader | None = None
        self._upgrading = False
        #: A keeper restarts this server after a crash (issue 13): reconnect when it dies.
        self.kept = False
        #: The server socket's path (local connections), to tell a crash from a stop.
        self.server_path = ""
        self.crashed = False
        #: The terminal took none of the output left at the end for TERM_PATIENCE: what is
        #: still to be written then is not waited for again.
        self.terminal_stuck = False
        #: How it ended, once it has (also without an event loop: ``watch``).
        self.result: AttachResult | None = None

    async def run(self) -> AttachResult:
        import asyncio

        from tmuxish.keyreader import KeyReader

        loop = asyncio.get_running_loop()
        self._loop = loop
        self._done = loop.create_future()
        self.sock.setblocking(False)
        # Messages that arrived together with the attach reply.
        while self.conn.pending:
            self._handle(self.conn.pending.popleft())
        if self.result is not None:
            return self.result
        self._term_fd = nonblocking_twin(self.stdout_fd)
        loop.add_reader(self.sock.fileno(), self._on_socket)
        if self._read_stdin:
            self._keys = KeyReader(
                self.stdin_fd,
                loop,
                self.filter,
                on_input=self._typed,
                on_detach=self._detach,
                on_gone=self._stdin_gone,
            )
        on_term = signal.getsignal(signal.SIGTERM)
        with contextlib.suppress(ValueError, RuntimeError):
            loop.add_signal_handler(signal.SIGWINCH, self._on_winch)
            # On the loop, SIGTERM detaches properly; outside it attach() has its own handler.
            loop.add_signal_handler(signal.SIGTERM, self._terminated)
        # A resize between measuring the terminal for the attach request and installing the
        # handler would otherwise be lost (in direct mode output is already on screen by then).
        if get_size(self.stdout_fd) != self.attached_size:
            self._on_winch()
        try:
            return await self._done
        finally:
            if not self._socket_paused:
                loop.remove_reader(self.sock.fileno())
            if self._keys is not None:
                self._keys.close()
            if self._writing:
                loop.remove_writer(self.sock.fileno())
            with contextlib.suppress(ValueError, RuntimeError):
                loop.remove_signal_handler(signal.SIGWINCH)
                loop.remove_signal_handler(signal.SIGTERM)  # which leaves it at SIG_DFL
                signal.signal(signal.SIGTERM, on_term)
            self._close_terminal(loop)

    def _close_terminal(self, loop: asyncio.AbstractEventLoop) -> None:
        """Hand the terminal what it has not taken yet (within TERM_PATIENCE), then let go."""
        fd, self._term_fd = self._term_fd, None
        if fd is None:
            return
        if self._termbox:
            loop.remove_writer(fd)
            with contextlib.suppress(OSError):
                self.terminal_stuck = not write_within(fd, self._termbox, TERM_PATIENCE)
            self._termbox.clear()
        os.close(fd)

    def closing_reset(self) -> bytes:
        """What to write to the terminal once the attachment is over."""
        if self.reset_written:
            return b""
        return self.reset or protocol.SANE_MODES

    def _end(self, result: AttachResult) -> None:
        if self.result is None:
            self.result = result
        if self._done is not None and not self._done.done():
            self._done.set_result(self.result)

    def _finish(self, message: str, status: int) -> None:
        self._end(AttachResult(message, status))

    # -- socket -> terminal ----------------------------------------------------------------------

    def _on_socket(self) -> None:
        try:
            data = self.sock.recv(SOCKET_READ)
        except BlockingIOError:
            return
        except OSError as exc:
            self._finish(f"[{core.lost_connection(exc)}]", 1)
            return
        if not data:
            # A kept server that vanished without a word crashed (one that stops on purpose
            # removes its socket first): its keeper starts another, as after an upgrade.
            self.crashed = self.kept and bool(self.server_path) and os.path.exists(self.server_path)
            if self._upgrading or self.crashed:
                self._end(AttachResult("", 0, reconnect=True))
                return
            link_lost = getattr(self.conn, "link_lost", None)  # -H: the ssh link, not the server
            reason = link_lost() if link_lost is not None else None
            self._finish(f"[{reason or 'server exited'}]", 1)
            return
        try:
            messages = list(self.conn.decoder.feed(data))
        except protocol.ProtocolError as exc:
            self._finish(f"[{core.server_garbage(exc)}]", 1)
            return
        out: list[bytes] = []
        for message in messages:
            if message[0] == protocol.OUTPUT:
                out.append(message[1])
                continue
            if out:
                self._write_out(b"".join(out))
                out = []
            self._handle(message)
        if out:
            self._write_out(b"".join(out) if len(out) > 1 else out[0])

    def _write_out(self, data: bytes) -> None:
        if self._detaching:
            return  # detached: what is still on its way is not shown, as in tmux
        fd = self._term_fd
        try:
            if fd is None:
                write_all(self.stdout_fd, data)
                return
            if self._termbox:
                self._termbox += data
            else:
                try:
                    n = os.write(fd, data)
                except BlockingIOError:
                    n = 0
                if n < len(data):
                    self._termbox += data[n:]
                    assert self._loop is not None
                    self._loop.add_writer(fd, self._on_terminal_writable)
        except OSError as exc:
            if exc.errno in (errno.EIO, errno.EPIPE, errno.EBADF):
                self._terminal_gone()
                return
            raise
        if len(self._termbox) > TERMBOX_HIGH and not self._socket_paused:
            assert self._loop is not None
            self._loop.remove_reader(self.sock.fileno())
            self._socket_paused = True

    def _on_terminal_writable(self) -> None:
        fd = self._term_fd
        assert fd is not None and self._loop is not None
        try:
            n = os.write(fd, self._termbox)
        except BlockingIOError:
            return
        except OSError as exc:
            if exc.errno in (errno.EIO, errno.EPIPE, errno.EBADF):
                self._termbox.clear()
                self._loop.remove_writer(fd)
                self._terminal_gone()
                return
            raise
        del self._termbox[:n]
        if not self._termbox:
            self._loop.remove_writer(fd)
        if self._socket_paused and len(self._termbox) < TERMBOX_LOW:
            self._resume_socket()

    def _resume_socket(self) -> None:
        assert self._loop is not None
        self._socket_paused = False
        self._loop.add_reader(self.sock.fileno(), self._on_socket)

    def _terminal_gone(self) -> None:
        self._send(protocol.detach())
        self._finish("[terminal gone]", 1)

    def _handle(self, message: protocol.Message) -> None:
        kind = message[0]
        if kind == protocol.OUTPUT:
            self._write_out(message[1])
        elif kind == protocol.EXITED:
            code = message[1]
            self._finish(f"[{self.label} exited with code {code}]", code)
        elif kind == protocol.DETACHED:
            reason = message[1]
            if reason == protocol.DETACHED_BY_USER:
                self._finish(f"[detached from {self.label}]", 0)
            else:
                self._finish(f"[detached from {self.label}: {reason}]", 1)
        elif kind == protocol.EVENT:
            if message[1] == protocol.UPGRADE_EVENT:
                self._upgrading = True
            elif message[1] == protocol.RESET_EVENT and isinstance(message[2], dict):
                data = message[2].get("data")
                if message[2].get("written"):
                    self.reset_written = True
                elif isinstance(data, bytes):
                    self.reset = data
        elif kind == protocol.ERROR:
            self._finish(f"[server error: {message[3]}]", 1)

    # -- terminal -> socket ----------------------------------------------------------------------

    def _typed(self, data: bytes) -> None:
        if not self.readonly:
            self._send(protocol.input_frame(data))

    def _stdin_gone(self) -> None:
        # The terminal went away (hangup): leave the session running.
        self._detach()

    def _detach(self) -> None:
        self._send(protocol.detach())
        assert self._loop is not None
        # The server's DETACHED must be read even while the terminal is stuck; the output
        # still on its way is dropped (see _write_out).
        self._detaching = True
        if self._socket_paused:
            self._resume_socket()
        # The server confirms with DETACHED; do not hang if it is gone.
        self._loop.call_later(2.0, self._finish, f"[detached from {self.label}]", 0)

    def _terminated(self) -> None:
        """SIGTERM: detach at once, without waiting for the server to confirm; the terminal
        is restored on the way out, and the status is a signal's, as the shell would show."""
        self._send(protocol.detach())
        self._finish(f"[detached from {self.label}: terminated]", 128 + signal.SIGTERM)

    def _on_winch(self) -> None:
        cols, rows = get_size(self.stdout_fd)
        if cols and rows:
            self._send(protocol.resize(cols, rows))

    def _send(self, frame: bytes) -> None:
        if self._loop is None:
            # No event loop (``watch``): the few small frames of direct mode go out whole.
            try:
                self.conn.send(frame)
            except TmuxishError as exc:
                self._finish(f"[{exc}]", 1)
            return
        if self._outbox:
            self._outbox += frame
        else:
            try:
                n = self.sock.send(frame)
            except BlockingIOError:
                n = 0
            except OSError as exc:
                self._finish(f"[{core.lost_connection(exc)}]", 1)
                return
            if n == len(frame):
                return
            self._outbox += frame[n:]
            assert self._loop is not None
            self._loop.add_writer(self.sock.fileno(), self._on_writable)
            self._writing = True
        if len(self._outbox) > OUTBOX_HIGH and self._keys is not None:
            # The server stopped taking input (the program does not read it): stop reading the
            # terminal too, so a paste waits in the terminal instead of in our memory.
            self._keys.pause()

    def _on_writable(self) -> None:
        try:
            n = self.sock.send(self._outbox)
        except BlockingIOError:
            return
        except OSError as exc:
            self._finish(f"[{core.lost_connection(exc)}]", 1)
            return
        del self._outbox[:n]
        if not self._outbox and self._loop is not None:
            self._loop.remove_writer(self.sock.fileno())
            self._writing = False
        if len(self._outbox) < OUTBOX_LOW and self._keys is not None and self._keys.paused:
            self._keys.resume()


def _run_relay(relay: Relay) -> AttachResult:
    """Run the attachment on the event loop, in direct mode too.

    A direct attach could wait with poll alone (it only forwards SIGWINCH), and that started
    ~50 ms sooner; but with it the bench's key echo p50 went from ~55 us to ~160 us (A/B, five
    runs each, dtach steady at ~140 us), for a reason not yet found. The repaint reaches the
    screen before this runs, so the import of asyncio delays no first screen.
    """
    from tmuxish.eventloop import new_event_loop

    loop = new_event_loop()
    try:
        return loop.run_until_complete(relay.run())
    finally:
        loop.close()


def terminal_for_server() -> int | None:
    """A fresh descriptor of our terminal for the server to drive, or None to relay.

    Opened anew (not a dup) so the server's O_NONBLOCK does not leak into our fd 0/1.
    """
    if os.environ.get("TMUXISH_ATTACH_MODE", "") == "relay":
        return None
    try:
        if not (os.isatty(0) and os.isatty(1)):
            return None
        if os.fstat(0).st_rdev != os.fstat(1).st_rdev:
            return None
        return os.open(os.ttyname(0), os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError:
        return None


def attach(
    conn: Connection,
    target: str | None,
    *,
    detach_keys: bytes,
    detach_timeout: float,
    readonly: bool = False,
    history: int = -1,
    inside: int | None = None,
    reconnect: Callable[[bool], Connection],
) -> AttachResult:
    """Attach the terminal on fds 0/1 to ``target`` until detach, exit or server loss; the
    ending line (``result.message``) is written to the terminal here.

    ``reconnect(direct)`` connects again after a server upgrade (``direct``: pass the terminal).
    """
    cols, rows = user_size()
    if history < 0:
        history = rows or 24
    detach_filter = DetachFilter(detach_keys, detach_timeout)
    # The event loop may make fd 0/1 non-blocking; that flag lives on the terminal's open file
    # description, shared with the user's shell, so put it back however the relay ends.
    blocking = {fd: os.get_blocking(fd) for fd in (0, 1)}
    # `kill CLIENT`, `timeout 60 tmuxish attach`: SIGTERM's default would end the process in
    # raw mode, leaving the user's shell without echo. Off the event loop it unwinds through
    # raw_mode's restore; on it the relay detaches (Relay._terminated).
    on_term = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        return _attach_loop(
            conn,
            target,
            detach_filter,
            cols,
            rows,
            readonly,
            history,
            inside,
            detach_keys,
            detach_timeout,
            reconnect,
        )
    except Terminated:
        with contextlib.suppress(OSError):
            # Without the relay, what the program turned on is not known: the defaults.
            write_patiently(1, protocol.SANE_MODES + b"\r\n[detached: terminated]\n", 0.0)
        return AttachResult("[detached: terminated]", 128 + signal.SIGTERM)
    finally:
        signal.signal(signal.SIGTERM, on_term)
        for fd, was in blocking.items():
            with contextlib.suppress(OSError):
                os.set_blocking(fd, was)


class Terminated(BaseException):
    """SIGTERM outside the relay's event loop (see attach)."""


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated


def _attach_loop(
    conn: Connection,
    target: str | None,
    detach_filter: DetachFilter,
    cols: int,
    rows: int,
    readonly: bool,
    history: int,
    inside: int | None,
    detach_keys: bytes,
    detach_timeout: float,
    reconnect: Callable[[bool], Connection],
) -> AttachResult:
    with raw_mode(0):
        while True:
            direct = conn.passed_terminal
            info = conn.request(
                "attach",
                target=target,
                cols=cols,
                rows=rows,
                readonly=readonly,
                history=history,
                inside=inside,
                direct={"keys": detach_keys, "timeout": detach_timeout} if direct else None,
            )
            session_id = int(info["id"])
            write_all(1, info.get("initial") or b"")
            relay = Relay(conn, session_id, detach_filter, readonly, read_stdin=not direct)
            relay.reset = info.get("reset") or b""
            relay.kept = bool(info.get("kept"))
            with contextlib.suppress(OSError):
                relay.server_path = str(conn.sock.getpeername() or "")
            if info.get("name"):  # names are checked by the server: no control characters
                relay.label = f"session {info['name']} ({session_id})"
            relay.attached_size = (cols, rows)
            try:
                result = _run_relay(relay)
            except ServerGone as exc:
                result = AttachResult(f"[{exc}]", 1)
            if not result.reconnect:
                break
            conn.close()
            try:
                conn = reconnect(direct)
            except TmuxishError as exc:
                what = "after a crash" if relay.crashed else "during its upgrade"
                result = AttachResult(f"[lost the server {what}: {exc}]", 1)
                break
            # Same session, fresh repaint; history is already in the terminal's scrollback.
            target, history = str(session_id), 0
            cols, rows = user_size()
        patience = 0.0 if relay.terminal_stuck else TERM_PATIENCE
        with contextlib.suppress(OSError):
            # Leave the user's terminal sane: undo modes the program turned on.
            if not write_patiently(1, relay.closing_reset() + b"\r\n", patience):
                patience = 0.0  # stuck: the line goes only if it fits at once
    # The ending line, after raw mode (its newline is the terminal's again), and never through
    # sys.stdout: a blocking write to a terminal stopped with ^S at that moment would keep the
    # client from exiting until someone pressed ^Q.
    with contextlib.suppress(OSError):
        write_patiently(1, f"{result.message}\n".encode(errors="replace"), patience)
    return result
