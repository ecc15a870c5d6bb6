"""The ``run`` request over a blocking connection: the line the shell reads, what the command
prints as it arrives (terminal CR LF as LF), then how it ended.

One conversation for the API's ``SyncClient.run`` and the CLI's fast path (tmuxish.quick), so
the two cannot drift; ``AsyncClient.run`` shares the pieces. Light on purpose: the fast path
imports it, so no re, dataclasses or typing at run time (issue 15: `run` starts as fast as
`ls`).
"""

from __future__ import annotations

import time

from tmuxish import protocol
from tmuxish.client import core

#: Not typing.TYPE_CHECKING: importing typing (and re with it) costs `tmuxish ls` ~15 ms.
TYPE_CHECKING = False

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import Any

    from tmuxish.client.connection import Connection


def command_line(command: str | Sequence[str]) -> str:
    """The line the shell reads: words joined with spaces, as ``ssh host COMMAND...`` does."""
    line = command if isinstance(command, str) else " ".join(command)
    if not line.strip():
        from tmuxish.errors import UsageError

        raise UsageError("run needs a command")
    return line


def run_args(
    target: Any, command: str | Sequence[str], timeout: float | None, input: bytes | str | None
) -> dict[str, Any]:
    if isinstance(input, str):
        input = input.encode("utf-8", "surrogateescape")
    args: dict[str, Any] = {"target": target, "command": command_line(command)}
    if timeout is not None:
        args["timeout"] = float(timeout)
    if input:
        args["input"] = bytes(input)
    return args


def timeout_text(target: Any, timeout: float | None) -> str:
    return (
        f"the command in session {target} is still running after {timeout:g}s "
        "(the session is kept; the command goes on)"
    )


class Newlines:
    """A terminal's CR LF line ends to LF, across chunk boundaries (``raw`` keeps them)."""

    def __init__(self, raw: bool = False) -> None:
        self.raw = raw
        self._cr = False

    def feed(self, data: bytes) -> bytes:
        if self.raw:
            return data
        if self._cr:
            data = b"\r" + data
            self._cr = False
        if data.endswith(b"\r"):
            data = data[:-1]
            self._cr = True
        return data.replace(b"\r\n", b"\n")

    def flush(self) -> bytes:
        if self._cr:
            self._cr = False
            return b"\r"
        return b""


class RunReader:
    """One run conversation's messages: the output to ``sink`` as it comes (CR LF as LF unless
    ``raw``), then the server's result map for request ``req_id``. The sync and async clients
    only feed it what they read."""

    def __init__(self, req_id: int, sink: Callable[[bytes], object], raw: bool = False) -> None:
        self.req_id = req_id
        self.sink = sink
        self.newlines = Newlines(raw)
        #: The run's id and session, from the server's "run" event: what ``run-follow`` asks
        #: for if the server goes away before the answer.
        self.run_id: str | None = None
        self.session: int | None = None

    def take(self, message: protocol.Message) -> dict[str, Any] | None:
        """The result once ``message`` is the answer; None until then. Raises the error the
        request got, or a connection-wide one."""
        if message[0] == protocol.OUTPUT:
            data = self.newlines.feed(message[1])
            if data:
                self.sink(data)
            return None
        if message[0] == protocol.EVENT and message[1] == protocol.RUN_EVENT:
            data = message[2]
            if isinstance(data, dict):
                self.run_id = data.get("id")
                self.session = data.get("session")
            return None
        answer = core.Requests.answer(message)
        if answer is None or answer[0] != self.req_id:
            return None
        if answer[2] is not None:
            raise answer[2]
        tail = self.newlines.flush()
        if tail:
            self.sink(tail)
        result: dict[str, Any] = answer[1]
        return result


#: How long a run waits for the next server after an upgrade or a crash (as attach does).
RESUME_WAIT = 15.0


class RunStream:
    """One run's conversation, which outlives its connection: when the server goes away for an
    upgrade or a crash its keeper recovers from, the same command is followed on the next
    server (``run-follow``), with the output it printed meanwhile. ``conn`` is the connection
    in use (the caller closes it); ``reopen`` makes a new one."""

    def __init__(
        self,
        conn: Connection,
        reader: RunReader,
        timeout: float | None,
        reopen: Callable[[], Connection],
    ) -> None:
        self.conn = conn
        self.reader = reader
        self.reopen = reopen
        self._deadline = None if timeout is None else time.monotonic() + timeout

    def result(self) -> dict[str, Any]:
        from tmuxish.errors import ServerGone, ServerNotRunning

        while True:
            try:
                return follow(self.conn, self.reader)
            except ServerGone as exc:
                if self.reader.run_id is None:
                    raise  # gone before it said which run: nothing to follow
                try:
                    self._resume()
                except ServerNotRunning:
                    raise exc from None  # stopped on purpose (no socket), or the keeper died

    def _resume(self) -> None:
        from tmuxish.errors import ServerGone, ServerNotRunning

        self.conn.close()
        until = time.monotonic() + RESUME_WAIT
        while True:
            try:
                self.conn = self.reopen()
                break
            except ServerNotRunning:
                raise
            except ServerGone:  # an upgrade still in progress, or another crash
                if time.monotonic() > until:
                    raise
                time.sleep(0.05)
        left = None if self._deadline is None else max(0.0, self._deadline - time.monotonic())
        self.conn.sock.settimeout(None)  # the server keeps the deadline
        args = {"target": self.reader.session, "id": self.reader.run_id, "timeout": left}
        self.reader.req_id = self.conn.send_request("run-follow", args)


def converse(
    conn: Connection,
    args: dict[str, Any],
    sink: Callable[[bytes], object],
    raw: bool = False,
    req_id: int | None = None,
    reopen: Callable[[], Connection] | None = None,
) -> dict[str, Any]:
    """Send ``run`` with ``args`` (unless ``req_id``: it went with the greeting), pass the
    output to ``sink`` as it comes, and return the server's result map
    (``{exit_code, duration, session, timed_out?, session_exited?}``). With ``reopen``, across
    a server upgrade or crash too (see RunStream)."""
    conn.sock.settimeout(None)  # the server keeps the deadline
    if req_id is None:
        req_id = conn.send_request("run", args)
    reader = RunReader(req_id, sink, raw)
    if reopen is None:
        return follow(conn, reader)
    stream = RunStream(conn, reader, args.get("timeout"), reopen)
    try:
        return stream.result()
    finally:
        if stream.conn is not conn:
            stream.conn.close()


def follow(conn: Connection, reader: RunReader, within: float | None = None) -> dict[str, Any]:
    """Read ``reader``'s conversation on ``conn`` to its result; TimeoutError if it has not
    come ``within`` seconds (None: the server keeps the deadline)."""
    deadline = None if within is None else time.monotonic() + within
    while True:
        if not conn.pending:
            if deadline is not None:
                conn.sock.settimeout(max(0.001, deadline - time.monotonic()))
            conn.read_more()
        result = reader.take(conn.pending.popleft())
        if result is not None:
            return result
        if deadline is not None and time.monotonic() >= deadline:
            raise TimeoutError("no result in time")
