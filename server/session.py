"""A session: one program on one PTY master, its screen model, and the clients attached to it."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import signal
import termios
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from tmuxish import protocol
from tmuxish.errors import SessionExited, SessionNotFound
from tmuxish.server import pty
from tmuxish.server.feed import ScreenFeed
from tmuxish.server.policy import ClientSize, choose_size
from tmuxish.server.reaper import Reaper
from tmuxish.server.shellhook import ShellTracker

if TYPE_CHECKING:
    from tmuxish.server.recording import Recording
    from tmuxish.server.screen import Screen

log = logging.getLogger(__name__)

READ_SIZE = 65536
#: Input typed or pasted faster than the program reads waits here. Above HIGH the session's input
#: sources pause (a direct terminal is not read, a relaying client's socket is not read, `send` is
#: not answered) until the queue is below LOW: input is never dropped, as in a terminal.
INPUT_HIGH = 1024 * 1024
INPUT_LOW = 256 * 1024
#: After the program exits, how long to wait for the PTY to report EOF (output still in flight).
EXIT_GRACE = 0.5
#: The largest window a client can give a session, in cells. The screen model costs ~8 bytes a
#: cell once rows are touched (a repaint at 10000x10000 took 800 MiB and 2.5 s); 1M cells is
#: far beyond any real terminal (an 8K monitor with a tiny font is under 500k).
MAX_CELLS = 1_000_000
#: Output quiet for this long (seconds) lets the screen model compress its cold history
#: (Screen.compact: 5000 lines at 80 columns go from 3.2 MB to ~0.3 MB resident).
COMPACT_IDLE = 0.5
#: Longest a compaction step holds the event loop (seconds); it continues on the next turn.
COMPACT_SLICE = 0.002


def clamp_size(cols: int, rows: int) -> tuple[int, int]:
    """The window a session really takes for a requested size: at least 1x1, at most 10000 a
    side and MAX_CELLS in all (the width is kept, rows are dropped)."""
    cols, rows = max(1, min(cols, 10000)), max(1, min(rows, 10000))
    if cols * rows > MAX_CELLS:
        rows = max(1, MAX_CELLS // cols)
    return cols, rows


class Attachment(Protocol):
    """What a session needs from an attached client (a server connection)."""

    readonly: bool
    behind: bool
    size: ClientSize
    attached_in_alt: bool
    #: A user's terminal (or API stream), counted in ``clients``; a `run` or an `expect`
    #: watcher reads the output too but is not one.
    counted: bool

    def send_output(self, header: bytes, data: bytes) -> None: ...
    def send_frame(self, frame: bytes) -> None: ...
    def session_exited(self, code: int | None) -> None: ...
    def pause_input(self) -> None: ...
    def resume_input(self) -> None: ...


class Session:
    """A program we spawned on a new PTY (the "program" kind; see server/factory.py)."""

    #: Names the class in saved state (server upgrade); subclasses are the other kinds.
    kind = "program"

    def __init__(
        self,
        sid: int,
        name: str | None,
        command: list[str],
        pid: int | None,
        fd: int,
        cols: int,
        rows: int,
        *,
        loop: asyncio.AbstractEventLoop,
        reaper: Reaper,
        policy: str = "latest",
        screen: Screen | None = None,
        on_exit: Callable[[Session], None] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        self.id = sid
        self.name = name
        self.command = command
        self.pid = pid
        self.fd: int | None = fd
        self.cols = cols
        self.rows = rows
        self.policy = policy
        #: The screen model and the output it has yet to parse; None when there is no model.
        self.screen: ScreenFeed | None = None
        if screen is not None:
            self.screen = ScreenFeed(
                screen,
                loop,
                answer=self._answer_query,
                left_alt=self._left_alt,
                failed=lambda error: self._drop_screen(f"feed failed: {error}"),
                reading=lambda: self._reading,
            )
        #: Reasons not to read the PTY besides slow clients: quiesce holds.
        self._holds = 0
        self.screen_error: str | None = None if screen is not None else "unavailable"
        self.extra = extra or {}
        self.created = datetime.now(UTC)
        self.last_used = time.monotonic()
        #: The program's exit code; None while running, and also after the end when it is not
        #: known (a console session's process is not ours).
        self.exit_code: int | None = None
        self.ended = False
        self.clients: list[Attachment] = []
        self.log_sink: Callable[[bytes], None] | None = None
        #: `new --record` / `tmuxish record`: gets output, input and resizes (server/recording.py).
        self.recording: Recording | None = None
        #: Called once when the PTY is released (log files, container clean-up).
        self.cleanup: list[Callable[[], None]] = []
        self._loop = loop
        self._reaper = reaper
        self._on_exit = on_exit
        self._reading = False
        self._pty_eof = False
        self.child_done = pid is None
        self._exit_timer: asyncio.TimerHandle | None = None
        self._input = bytearray()
        self._writing = False
        #: The input queue went over INPUT_HIGH: sources are paused, `send` replies wait.
        self._input_full = False
        self._room_waiters: list[asyncio.Future[None]] = []
        self._waiters: list[asyncio.Future[int | None]] = []
        #: Chunks relayed so far, and the timer that compacts the screen model once they stop.
        self._relays = 0
        self._compact_timer: asyncio.TimerHandle | None = None
        #: Output position, recent output and shell state (OSC 133 marks): server/shellhook.py.
        self.shell = ShellTracker()

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self, watch: bool = True) -> None:
        self._resume_reading()
        if self.pid is not None and watch:
            self._reaper.watch(self.pid, self.child_exited)

    @property
    def running(self) -> bool:
        return not self.ended

    @property
    def status(self) -> str:
        return "running" if self.running else "exited"

    @property
    def exit_text(self) -> str:
        """How the end is told to users: "code 3", or "exit code unknown"."""
        return "exit code unknown" if self.exit_code is None else f"code {self.exit_code}"

    def job_in_foreground(self) -> bool:
        """A process group other than the program's own holds the terminal: an interactive
        shell is running a command, whoever typed it (a shell at its prompt takes the terminal
        back). Known without any shell integration; False when it cannot be told."""
        if self.pid is None or self.fd is None or not self.running:
            return False
        try:
            return os.tcgetpgrp(self.fd) not in (self.pid, -1, 0)
        except OSError:
            return False

    def line_mode(self) -> bool:
        """The terminal is in canonical mode: its program reads whole lines, and of a line
        longer than 4095 bytes the kernel keeps only the start (a shell's line editor turns
        this off while it reads)."""
        if self.fd is None:
            return False
        try:
            return bool(termios.tcgetattr(self.fd)[3] & termios.ICANON)
        except termios.error:
            return False

    @property
    def terminals(self) -> int:
        """How many attached clients are terminals (what ``ls`` shows as CLIENTS)."""
        return sum(1 for c in self.clients if c.counted)

    def info(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "command": self.command,
            "pid": self.pid,
            "status": self.status,
            "exit_code": self.exit_code,
            "clients": self.terminals,
            "cols": self.cols,
            "rows": self.rows,
            "created": self.created.isoformat(timespec="seconds"),
            "screen": self.screen is not None,
            "screen_behind": self.screen is not None and self.screen.behind,
            "policy": self.policy,
            **self.extra,
        }

    def child_exited(self, pid: int, code: int | None) -> None:
        self.child_done = True
        self.ended = True
        self.exit_code = code
        if self._pty_eof or self.fd is None:
            self._finish()
        else:
            # Output written just before exit may still be in flight inside the PTY layer; give it
            # a moment to arrive (EOF ends the wait early).
            self._exit_timer = self._loop.call_later(EXIT_GRACE, self._finish)

    def _finish(self) -> None:
        if self._exit_timer is not None:
            self._exit_timer.cancel()
            self._exit_timer = None
        if self.fd is not None:
            self._drain_now()
            self._close_fd()
        self.ended = True
        code = self.exit_code
        for client in list(self.clients):
            client.session_exited(code)
        self.clients.clear()
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(code)
        self._waiters.clear()
        if self._on_exit is not None:
            self._on_exit(self)

    def _close_fd(self) -> None:
        if self.fd is None:
            return
        self._pause_reading()
        if self._writing:
            self._loop.remove_writer(self.fd)
            self._writing = False
        os.close(self.fd)
        self.fd = None
        self._input.clear()
        if self._input_full:
            self._input_room()  # no program left to wait for
        for func in self.cleanup:
            try:
                func()
            except Exception:
                log.exception("session %d: clean-up failed", self.id)
        self.cleanup.clear()

    def close(self) -> None:
        """Release the PTY (shutdown or rm); a program still running gets SIGHUP from the tty."""
        if self._exit_timer is not None:
            self._exit_timer.cancel()
        if self._compact_timer is not None:
            self._compact_timer.cancel()
            self._compact_timer = None
        if self.screen is not None:
            self.screen.discard()
        self._close_fd()
        if self.pid is not None and not self.child_done:
            self._reaper.unwatch(self.pid)
        # Removed (rm -f, shutdown) before it finished: nobody will learn its code now.
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_exception(
                    SessionNotFound(f"session {self.id} was removed before it exited")
                )
        self._waiters.clear()

    def wait(self) -> asyncio.Future[int | None]:
        """The exit code once the session has ended (None if it is not known)."""
        fut: asyncio.Future[int | None] = self._loop.create_future()
        if self.ended and self.fd is None:
            fut.set_result(self.exit_code)
        else:
            self._waiters.append(fut)
        return fut

    def kill(self, sig: int = signal.SIGHUP) -> None:
        if not self.running:
            raise SessionExited(f"session {self.id} has already exited")
        if self.pid is None:
            # A console-socket session without a known pid: hang up the terminal instead, and
            # end the session now (nothing else will: the PTY we read is gone).
            self.child_done = True
            self._finish()
            return
        try:
            os.killpg(os.getpgid(self.pid), sig)
        except ProcessLookupError:
            pass
        except PermissionError:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)

    def state(self, history_lines: int, with_screen: bool = True) -> dict[str, Any]:
        """What rebuilds this session in another process (msgpack-able). The PTY master is not
        in it: whoever restores passes the fd to use (server/factory.py). Without
        ``with_screen`` the screen is left empty (the keeper's records carry it apart)."""
        screen = b""
        if with_screen and self.screen is not None and self.fd is not None:
            try:
                screen = self.screen.history(history_lines) + self.screen.repaint()
            except Exception as exc:
                log.warning("session %d: screen not carried over: %s", self.id, exc)
        return {
            "kind": self.kind,
            "id": self.id,
            "name": self.name,
            "command": self.command,
            "pid": self.pid,
            "cols": self.cols,
            "rows": self.rows,
            "policy": self.policy,
            "exit_code": self.exit_code,
            "ended": self.ended,
            "child_done": self.child_done,
            "created": self.created.isoformat(),
            "extra": self.extra,
            "screen": screen,
            "screen_was_on": self.screen is not None,
            # Finished by then (recording.finish_all); the next server appends to the file.
            "recording": self.recording.state() if self.recording is not None else None,
            # Input queued for a program that reads slowly: the next server writes it.
            "input": bytes(self._input),
        }

    # -- output ----------------------------------------------------------------------------------

    def _resume_reading(self) -> None:
        if not self._reading and self.fd is not None and not self._pty_eof:
            self._loop.add_reader(self.fd, self._on_readable)
            self._reading = True

    def _pause_reading(self) -> None:
        if self._reading and self.fd is not None:
            self._loop.remove_reader(self.fd)
            self._reading = False

    def _on_readable(self) -> None:
        assert self.fd is not None
        try:
            data = os.read(self.fd, READ_SIZE)
        except BlockingIOError:
            return
        except OSError as exc:
            if exc.errno != errno.EIO:
                log.warning("session %d: read error: %s", self.id, exc)
            data = b""
        if not data:
            self._on_pty_eof()
            return
        self._relay(data)

    def _drain_now(self) -> None:
        while self.fd is not None and not self._pty_eof:
            try:
                data = os.read(self.fd, READ_SIZE)
            except OSError:
                return
            if not data:
                return
            self._relay(data)

    def _on_pty_eof(self) -> None:
        self._pty_eof = True
        self._pause_reading()
        if self.child_done:
            self._finish()

    def _relay(self, data: bytes) -> None:
        self.shell.feed(data)
        if self.clients:
            header = protocol.output_header(len(data))
            for client in self.clients:
                client.send_output(header, data)
        if self.log_sink is not None:
            self.log_sink(data)
        if self.recording is not None:
            self.recording.output(data)
        screen = self.screen
        if screen is None:
            return
        self._relays += 1
        if self._compact_timer is None:
            self._compact_timer = self._loop.call_later(
                COMPACT_IDLE, self._compact_when_quiet, self._relays
            )
        screen.push(data)

    def _answer_query(self, responses: bytes) -> None:
        """The model's replies to a terminal query in the output it parsed."""
        if self.running and not self._terminal_answers():
            # Nobody's terminal will answer the program's query; the emulator does.
            self.write_input(responses)

    def _left_alt(self) -> None:
        """The model saw the program leave the alternate screen."""
        if any(c.attached_in_alt for c in self.clients):
            task = self._loop.create_task(self._repaint_after_alt_async())
            task.add_done_callback(lambda t: t.exception() if not t.cancelled() else None)

    def _terminal_answers(self) -> bool:
        """Whether an attached terminal's replies reach the program: a read-only client's
        terminal answers too, but its input is dropped."""
        return any(not c.readonly for c in self.clients)

    def _repaint_after_alt(self) -> None:
        """Clients that attached during the alternate screen never saw the primary one."""
        stale = [c for c in self.clients if c.attached_in_alt]
        if not stale or self.screen is None:
            return
        data = self.screen.repaint()
        header = protocol.output_header(len(data))
        for client in stale:
            client.attached_in_alt = False
            client.send_output(header, data)

    def application_cursor_keys(self) -> bool:
        """Whether the program asked for application cursor keys (DECCKM); False if unknown."""
        if self.screen is None:
            return False
        try:
            return bool(self.screen.mode(1))
        except Exception:
            return False

    def reset_modes(self) -> bytes:
        """Bytes that undo the terminal modes the program turned on; b"" if unknown."""
        if self.screen is None:
            return b""
        try:
            return self.screen.reset_modes()
        except Exception:
            return b""

    def _drop_screen(self, reason: str) -> None:
        log.warning("session %d: screen model off: %s", self.id, reason)
        self.screen = None
        self.screen_error = reason

    def suspend(self) -> None:
        """Stop all I/O on the PTY without closing it (the server is about to re-execute)."""
        self._holds += 1  # nothing may resume reading before the exec
        if self._exit_timer is not None:
            self._exit_timer.cancel()
            self._exit_timer = None
        self._pause_reading()
        if self._writing and self.fd is not None:
            self._loop.remove_writer(self.fd)
            self._writing = False

    def client_behind_changed(self) -> None:
        self._update_reading()

    def _update_reading(self) -> None:
        """Flow control: stop reading the PTY while every attached client is behind or while
        a consistent snapshot is being taken."""
        if self._holds or (self.clients and all(c.behind for c in self.clients)):
            self._pause_reading()
        else:
            self._resume_reading()

    # -- screen model memory ---------------------------------------------------------------------

    def schedule_compact(self) -> None:
        """Compact the screen model once output is quiet: after reads that brought compressed
        history back (capture, attach, resize), or a restore."""
        if self._compact_timer is None and self.screen is not None:
            self._compact_timer = self._loop.call_later(
                COMPACT_IDLE, self._compact_when_quiet, self._relays
            )

    def _compact_when_quiet(self, relays: int) -> None:
        """Timer: compress the screen model's cold history, unless output is still flowing."""
        self._compact_timer = None
        screen = self.screen
        if screen is None:
            return
        if relays != self._relays or not screen.idle:
            # Still printing, or parsing what it printed: compressing now would slow the feed.
            if relays == self._relays:
                screen.start_catch_up()  # output paused: resync if behind, parse the rest
            self._compact_timer = self._loop.call_later(
                COMPACT_IDLE, self._compact_when_quiet, self._relays
            )
            return
        try:
            more = screen.compact(COMPACT_SLICE)
        except Exception as exc:
            log.warning("session %d: screen compaction failed: %s", self.id, exc)
            return
        if more:
            self._compact_timer = self._loop.call_later(0, self._compact_when_quiet, relays)

    # -- a screen model that has seen every byte -------------------------------------------------

    @property
    def screen_settled(self) -> bool:
        """The screen model has seen every byte relayed so far (or there is none)."""
        return self.screen is None or self.screen.idle

    def settle_screen(self) -> None:
        """Start bringing the screen model level (resync it if behind); returns at once."""
        if self.screen is not None:
            self.screen.start_catch_up()

    async def quiesce(self) -> None:
        """Stop reading the PTY and wait until the screen model has caught up.

        Pair with ``release()``. Until then, the screen matches exactly what clients were sent.
        The catch-up goes in bounded steps, so the server answers others meanwhile.
        """
        self._holds += 1
        self._update_reading()
        try:
            if self.screen is not None:
                await asyncio.wait_for(self.screen.catch_up(), 10.0)
        except BaseException:
            self.release()
            raise

    def release(self) -> None:
        self._holds -= 1
        self._update_reading()

    async def _repaint_after_alt_async(self) -> None:
        await self.quiesce()
        try:
            if self.screen is not None and not self.screen.is_alt:
                self._repaint_after_alt()
        finally:
            self.release()

    # -- input -----------------------------------------------------------------------------------

    def write_input(self, data: bytes) -> None:
        """Queue ``data`` for the program; never drops it. Callers that can wait ask
        ``input_room()`` afterwards; attached clients are paused and resumed by the session."""
        if self.fd is None or not data:
            return
        if self.recording is not None:
            self.recording.input(data)
        if self._input:
            self._input += data
        else:
            try:
                n = os.write(self.fd, data)
            except BlockingIOError:
                n = 0
            except OSError as exc:
                log.info("session %d: write failed: %s", self.id, exc)
                return
            if n == len(data):
                return
            self._input += memoryview(data)[n:]
            self._loop.add_writer(self.fd, self._on_writable)
            self._writing = True
        if not self._input_full and len(self._input) > INPUT_HIGH:
            self._input_full = True
            for client in self.clients:
                client.pause_input()

    def input_room(self) -> asyncio.Future[None] | None:
        """None if more input may come now, else a future done once the queue has drained below
        INPUT_LOW (or the session has ended)."""
        if not self._input_full:
            return None
        waiter: asyncio.Future[None] = self._loop.create_future()
        self._room_waiters.append(waiter)
        return waiter

    def _on_writable(self) -> None:
        assert self.fd is not None
        try:
            n = os.write(self.fd, self._input)
        except BlockingIOError:
            return
        except OSError:
            n = len(self._input)
        del self._input[:n]
        if not self._input:
            self._loop.remove_writer(self.fd)
            self._writing = False
        if self._input_full and len(self._input) < INPUT_LOW:
            self._input_room()

    def _input_room(self) -> None:
        """The queue drained (or the session ended): resume the paused input sources."""
        self._input_full = False
        for client in self.clients:
            client.resume_input()
        waiters, self._room_waiters = self._room_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    # -- clients and size ------------------------------------------------------------------------

    def attach(self, client: Attachment, history_lines: int) -> bytes:
        """Register ``client`` and return what it must see first.

        Called with no await between taking the repaint and registering the client, so live output
        continues exactly where the repaint ends.
        """
        if self.fd is None:
            raise SessionExited(f"session {self.id} has exited ({self.exit_text})")
        self.last_used = time.monotonic()
        self.clients.append(client)
        if self._input_full:
            client.pause_input()
        self.apply_size()
        initial = b""
        if self.screen is not None:
            try:
                client.attached_in_alt = self.screen.is_alt
                history = self.screen.history(history_lines) if history_lines > 0 else b""
                initial = history + self.screen.repaint()
                if history:
                    self.schedule_compact()  # reading history restored compressed pages
            except Exception as exc:
                self._drop_screen(f"repaint failed: {exc}")
                initial = b""
        if self.screen is None:
            # No repaint to give: the new client's terminal would stay blank (or show whatever
            # was there) until the program happened to write, so every attach makes it redraw.
            self._force_redraw()
        elif self.screen.resynced:
            # The model skipped output it fell behind on: a full-screen program's state may be
            # in what it skipped, so it redraws once into the model and this client.
            self.screen.resynced = False
            self._force_redraw()
        self.client_behind_changed()
        if client.counted:
            self.shell.notify("client-attached", {"clients": self.terminals})
        return initial

    def detach(self, client: Attachment) -> None:
        if client in self.clients:
            self.clients.remove(client)
            if self._input_full:
                client.resume_input()
            self.last_used = time.monotonic()
            self.apply_size()
            self.client_behind_changed()
            if client.counted:
                self.shell.notify("client-detached", {"clients": self.terminals})

    def apply_size(self) -> None:
        size = choose_size([c.size for c in self.clients], self.policy)
        if size is not None:
            self.resize(*size)

    def resize(self, cols: int, rows: int) -> None:
        cols, rows = clamp_size(cols, rows)
        if (cols, rows) == (self.cols, self.rows) or self.fd is None:
            return
        self.cols, self.rows = cols, rows
        if self.recording is not None:
            self.recording.resize(cols, rows)
        if self.screen is not None:
            try:
                self.screen.resize(cols, rows)
            except Exception as exc:
                self._drop_screen(f"resize failed: {exc}")
            else:
                self.schedule_compact()  # reflowing the history restored compressed pages
        with contextlib.suppress(OSError):
            pty.set_size(self.fd, cols, rows)

    def _force_redraw(self) -> None:
        """Make a full-screen program repaint itself by changing the size one row and back."""
        if self.fd is None or self.rows < 2:
            return
        fd, cols, rows = self.fd, self.cols, self.rows
        with contextlib.suppress(OSError):
            pty.set_size(fd, cols, rows - 1)

        def restore() -> None:
            if self.fd == fd:
                with contextlib.suppress(OSError):
                    pty.set_size(fd, self.cols, self.rows)

        self._loop.call_later(0.05, restore)
