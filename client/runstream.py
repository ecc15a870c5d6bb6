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

    def take(self, message: protocol.Message) -> dict[str, Any] | None:
        """The result once ``message`` is the answer; None until then. Raises the error the
        request got, or a connection-wide one."""
        if message[0] == protocol.OUTPUT:
            data = self.newlines.feed(message[1])
            if data:
                self.sink(data)
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


def converse(
    conn: Connection,
    args: dict[str, Any],
    sink: Callable[[bytes], object],
    raw: bool = False,
    req_id: int | None = None,
) -> dict[str, Any]:
    """Send ``run`` with ``args`` (unless ``req_id``: it went with the greeting), pass the
    output to ``sink`` as it comes, and return the server's result map
    (``{exit_code, duration, session, timed_out?, session_exited?}``)."""
    conn.sock.settimeout(None)  # the server keeps the deadline
    if req_id is None:
        req_id = conn.send_request("run", args)
    return follow(conn, RunReader(req_id, sink, raw))


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
