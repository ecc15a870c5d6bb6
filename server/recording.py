"""`new --record FILE` and `tmuxish record`: a session's output written as an asciinema recording.

The session calls ``output``/``input``/``resize`` on the event loop; those only time the event
and queue the bytes. One writer thread per recording decodes, encodes (tmuxish/asciicast.py) and
writes, so a slow or full disk never holds up the session: past ``MAX_PENDING`` queued bytes,
output is dropped and the recording gets a marker saying how much (``"m"`` event) once there is
room again. A write error (ENOSPC) ends the recording, never the session.

A recording goes on in the next server: after an upgrade from its final ``state()`` (the file is
complete), after a crash from its ``live_state()``, which the keeper holds in the session's
record; the file may then end in a line cut short, which is cut off, and a marker tells the gap.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import stat
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any, Final

from tmuxish.asciicast import DEFAULT_FORMAT, Asciicast, TextStream

log = logging.getLogger(__name__)

#: Queued bytes (output not yet written) past which output is dropped instead of queued.
MAX_PENDING: Final = 8 * 1024 * 1024
#: Bytes of output the writer encodes and writes at a time.
BATCH: Final = 256 * 1024
#: How long a server that is exiting waits for its recordings to reach their files.
FLUSH_TIMEOUT: Final = 2.0

#: Queue items: (seconds since the start, code, payload). Codes beyond asciicast's own:
_GAP: Final = "gap"  # output was dropped; payload: the number of bytes, as ASCII digits
_END: Final = "end"  # no more events; payload: the exit code as ASCII digits, or b""
_CRASH: Final = "crash"  # the server that wrote before us crashed; payload: unused

#: The marker where a crashed server's recording goes on.
CRASH_MARKER: Final = "tmuxish: the server crashed here; output it had not yet written is missing"

#: Every recording whose writer thread still runs, so an exiting server can flush them all.
_live: set[Recording] = set()
_live_lock = threading.Lock()


def open_regular(path: str, append: bool = False, readable: bool = False) -> int:
    """Open ``path`` for a recording, refusing anything but a regular file.

    O_NONBLOCK: opening a FIFO nobody reads would block the whole server (it fails with ENXIO
    instead); a FIFO with a reader, a terminal or a device could block later writes, so they are
    refused too. ``readable``: to check the end of a file a crash left. Raises OSError.
    """
    flags = os.O_RDWR if readable else os.O_WRONLY
    flags |= os.O_APPEND | os.O_CREAT | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY
    try:
        fd = os.open(path, flags, 0o600)
    except OSError as exc:
        if exc.errno == errno.ENXIO:  # else "No such device or address", as for a device
            raise OSError(exc.errno, "it is a FIFO that nobody reads") from exc
        raise
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(0, "not a regular file")
        if not append:
            os.ftruncate(fd, 0)  # only now: truncating before the check could wipe a device
    except BaseException:
        os.close(fd)
        raise
    return fd


class Recording:
    """One asciicast file being written for one session."""

    def __init__(
        self,
        path: str,
        cols: int,
        rows: int,
        *,
        fmt: str = DEFAULT_FORMAT,
        record_input: bool = False,
        term: str | None = None,
        title: str | None = None,
        command: str | None = None,
        env: Mapping[str, str] | None = None,
        first: bytes = b"",
        max_pending: int = MAX_PENDING,
        write: Callable[[int, memoryview], int] = os.write,
        clock: Callable[[], float] = time.monotonic,
        resume: Mapping[str, Any] | None = None,
    ) -> None:
        """Opens the file (OSError if it cannot be) and starts the writer thread. ``first`` is
        the first output event: the repaint of the current screen. ``resume``: go on with a
        file a previous server wrote (its ``state()`` after an upgrade, its ``live_state()``,
        without ``"last"``, after a crash)."""
        self.path = path
        self.format = fmt
        self.record_input = record_input
        self.max_pending = max_pending
        self._cast = Asciicast(
            fmt,
            cols,
            rows,
            timestamp=int(time.time()),
            term=term,
            title=title,
            command=command,
            env=env,
        )
        self._write = write
        self._clock = clock
        #: The previous server crashed: the file's end must be checked before we append.
        self._recover = resume is not None and "last" not in resume
        self._fd = open_regular(path, append=resume is not None, readable=self._recover)
        # The clock is CLOCK_MONOTONIC, which neither an exec nor a new process resets.
        self._start = clock() if resume is None else float(resume["start"])
        if resume is not None and "last" in resume:
            self._cast.last = float(resume["last"])
        self._resumed = resume is not None
        self._cond = threading.Condition()
        self._queue: deque[tuple[float, str, bytes]] = deque()
        self._pending = 0
        #: Output bytes dropped since the last queued event (reported as one marker).
        self._dropped = 0
        #: Output bytes dropped in all; written bytes; whether a write error ended the file.
        self.dropped_total = 0
        self.written = 0
        self.failed: str | None = None
        self.closed = False
        self._text = TextStream()
        if first:
            self._queue.append((0.0, "o", first))
            self._pending = len(first)
        if self._recover:
            self._queue.append((clock() - self._start, _CRASH, b""))
        self._thread = threading.Thread(
            target=self._run, name=f"tmuxish-record {os.path.basename(path)}", daemon=True
        )
        with _live_lock:
            _live.add(self)
        self._thread.start()

    # -- the session's side (event loop): never waits for the disk ------------------------------

    def output(self, data: bytes) -> None:
        self._put("o", data, droppable=True)

    def input(self, data: bytes) -> None:
        if self.record_input:
            self._put("i", data, droppable=True)

    def resize(self, cols: int, rows: int) -> None:
        self._put("r", f"{cols}x{rows}".encode())

    def close(self, exit_code: int | None = None) -> None:
        """End the recording (v3 writes the exit code); the thread finishes the file."""
        if self.closed:
            return
        self._put(_END, b"" if exit_code is None else str(exit_code).encode())
        self.closed = True

    def _put(self, code: str, data: bytes, droppable: bool = False) -> None:
        if self.closed or self.failed is not None or (not data and code != _END):
            return
        t = self._clock() - self._start
        with self._cond:
            if droppable and self._pending + len(data) > self.max_pending:
                self._dropped += len(data)
                self.dropped_total += len(data)
                return
            if self._dropped:
                gap = str(self._dropped).encode()
                self._queue.append((t, _GAP, gap))
                self._pending += len(gap)  # every item counts, as the writer subtracts them all
                self._dropped = 0
            self._queue.append((t, code, data))
            self._pending += len(data)
            self._cond.notify()

    @property
    def backlog(self) -> int:
        """Output bytes queued and not yet written."""
        return self._pending

    # -- the writer thread ------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            if self._recover:
                self._resumed = self._repair()
            if not self._resumed:
                self._emit(self._cast.header())
            while self.failed is None:
                with self._cond:
                    while not self._queue:
                        self._cond.wait()
                    batch = self._take_batch()
                if not self._write_batch(batch):
                    return
        except Exception as exc:
            log.exception("recording %s: writer failed", self.path)
            self.failed = self.failed or f"writer failed: {exc}"  # nothing more is queued
        finally:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            with _live_lock:
                _live.discard(self)

    def _take_batch(self) -> list[tuple[float, str, bytes]]:
        """Queued events up to ~BATCH bytes (with the lock held): encoding holds the GIL, so
        the session's thread never waits long for it."""
        batch, size, queue = [], 0, self._queue
        while queue and size < BATCH:
            item = queue.popleft()
            batch.append(item)
            size += len(item[2])
        return batch

    def _write_batch(self, batch: list[tuple[float, str, bytes]]) -> bool:
        """Encode and write ``batch``; False once the recording has ended."""
        cast, lines, done = self._cast, [], False
        for t, code, data in batch:
            if code == "o" or code == "i":
                text = self._text.decode(data)
                if text:
                    lines.append(cast.event(t, code, text))
            elif code == "r":
                cols, _, rows = data.decode().partition("x")
                cast.cols, cast.rows = int(cols), int(rows)
                lines.append(cast.resize(t, int(cols), int(rows)))
            elif code == _GAP:
                self._text.reset()
                lines.append(cast.marker(t, f"tmuxish: {int(data)} bytes of output dropped here"))
            elif code == _CRASH:
                lines.append(cast.marker(t, CRASH_MARKER))
            elif code == _END:
                if data:
                    lines.append(cast.exit(t, int(data)))
                done = True
                break
        if lines:
            self._emit("".join(lines))
        with self._cond:
            self._pending -= sum(len(data) for _, _, data in batch)
        return not done and self.failed is None

    def _emit(self, text: str) -> None:
        if self.failed is not None:
            return
        view = memoryview(text.encode())
        try:
            while view:
                n = self._write(self._fd, view)
                view = view[n:]
                self.written += n
        except OSError as exc:
            # A full disk must not take the session down: the recording stops here.
            log.warning("recording %s: %s; recording stopped", self.path, exc)
            self.failed = exc.strerror or str(exc)

    def _repair(self) -> bool:
        """After a crash: cut off a last line the dead writer left unfinished and (v3, whose
        times are intervals) learn the time of the last event. Whether the file has a header."""
        fd = self._fd
        size = os.fstat(fd).st_size
        if size == 0:
            return False
        tail = os.pread(fd, min(size, 1 << 16), max(0, size - (1 << 16)))
        end = tail.rfind(b"\n")
        while end < 0 and size > len(tail):
            # A line longer than the tail read: look further back.
            start = max(0, size - 2 * len(tail))
            tail = os.pread(fd, size - start, start)
            end = tail.rfind(b"\n")
        keep = size - len(tail) + end + 1
        if keep != size:
            os.ftruncate(fd, keep)  # O_APPEND: later writes go to the new end
            log.warning("recording %s: cut %d bytes a crash left", self.path, size - keep)
        if keep == 0:
            return False
        if self._cast.version == 3:
            self._cast.last = _v3_end(fd, keep)
        return True

    def live_state(self) -> dict[str, Any] | None:
        """What a server after a crash needs to go on with this file while it is being written
        (msgpack-able; the keeper holds it in the session's record); None if the file failed."""
        if self.failed is not None:
            return None
        return {
            "path": self.path,
            "format": self.format,
            "input": self.record_input,
            "start": self._start,
            "cols": self._cast.cols,
            "rows": self._cast.rows,
        }

    def state(self) -> dict[str, Any] | None:
        """What a server after an upgrade needs to go on with this file (msgpack-able), once
        the writer has finished; None if it has not or the file failed."""
        live = self.live_state()
        if self._thread.is_alive() or live is None:
            return None
        return {**live, "last": self._cast.last}

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the writer to finish (after ``close``); whether it has."""
        self._thread.join(timeout)
        return not self._thread.is_alive()


def _v3_end(fd: int, size: int) -> float:
    """The time since the start of the last event of a v3 file: the sum of its intervals (the
    number before the first comma of each event line)."""
    total, offset, rest = 0.0, 0, b""
    while offset < size:
        chunk = os.pread(fd, min(1 << 20, size - offset), offset)
        if not chunk:
            break
        offset += len(chunk)
        lines = (rest + chunk).split(b"\n")
        rest = lines.pop()
        for line in lines:
            if line.startswith(b"["):
                with contextlib.suppress(ValueError):
                    total += float(line[1 : line.find(b",")])
    return round(total, 6)


def finish_all(timeout: float = FLUSH_TIMEOUT) -> None:
    """The server is exiting (or re-executing): end every recording and let each writer reach
    its file, within ``timeout`` in all."""
    with _live_lock:
        live = list(_live)
    deadline = time.monotonic() + timeout
    for rec in live:
        rec.close()
    for rec in live:
        if not rec.join(max(0.0, deadline - time.monotonic())):
            log.warning("recording %s: not finished at exit", rec.path)
