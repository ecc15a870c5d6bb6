"""What both API clients share for scripting a session: the ``run`` request and its result, the
output mark ``send`` returns, and the output text that ``expect ... since`` matches. Pure.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from tmuxish.errors import UsageError

#: Where ``run`` writes output as it arrives (None: it is collected in ``RunResult.output``).
OutputSink = Callable[[bytes], object]
#: What ``wait_for_text``/``expect`` keep of the output after a mark, to match in.
SINCE_KEEP: Final = 1024 * 1024


@dataclass(frozen=True)
class RunResult:
    """How a command run in a session ended."""

    #: The command's exit status, as the shell reports it ($?: 128+N for signal N); None if the
    #: session ended and its code is unknown.
    exit_code: int | None
    #: What the command printed (empty when it was streamed to an ``output`` callable).
    output: bytes
    #: Seconds from the command's start to its end, as the server saw them.
    duration: float
    #: The session itself ended during the command (e.g. ``exit 3``); exit_code is its code.
    session_exited: bool = False
    #: The shell found the command line incomplete (an open quote, ``if`` without ``fi``) and
    #: ran nothing; exit_code is 2, as for a syntax error.
    incomplete: bool = False

    @property
    def text(self) -> str:
        return self.output.decode("utf-8", "replace")


class CommandTimeout(TimeoutError):
    """``run`` gave up waiting; the command goes on in the session (which is kept), and the
    next ``run`` there fails with SessionBusy until it ends."""

    def __init__(self, message: str, output: bytes) -> None:
        super().__init__(message)
        #: What the command printed before the timeout (when not streamed elsewhere).
        self.output = output


def run_result(
    result: dict[str, Any], output: bytes, target: Any, timeout: float | None
) -> RunResult:
    """The server's run result as the API returns it; CommandTimeout if it timed out."""
    from tmuxish.client.runstream import timeout_text

    if result.get("timed_out"):
        raise CommandTimeout(timeout_text(result.get("session", target), timeout), output)
    return RunResult(
        exit_code=result.get("exit_code"),
        output=output,
        duration=float(result.get("duration") or 0.0),
        session_exited=bool(result.get("session_exited")),
        incomplete=bool(result.get("incomplete")),
    )


class Sent(int):
    """What ``send`` returns: the number of bytes sent, which also carries ``since``, the
    position in the session's output when they were sent (pass it to ``wait_for_text`` or
    ``expect`` as ``since=`` to match only output produced after the send)."""

    since: int | None

    def __new__(cls, written: int, since: int | None) -> Sent:
        obj = super().__new__(cls, written)
        obj.since = since
        return obj


def sent_from_reply(reply: Any) -> Sent:
    if isinstance(reply, dict):
        return Sent(int(reply["written"]), int(reply["since"]))
    return Sent(int(reply), None)  # a server without output marks


def since_position(since: int | Sent | None) -> int | None:
    """The output position of a ``since`` argument (a Sent, or a position as an int)."""
    if isinstance(since, Sent):
        if since.since is None:
            raise UsageError("this server does not report output positions; upgrade it")
        return since.since
    if since is not None and (type(since) is not int or since < 0):
        raise UsageError(f"since must be what send returned, got {since!r}")
    return since


_CONTROLS = re.compile(
    r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[P^_X][^\x1b]*\x1b\\"
    r"|[ -/]*[0-~])|[\x00-\x08\x0b-\x1f\x7f]"
)


class OutputText:
    """The output after a mark as plain text (escape sequences dropped, CR LF as LF), for
    ``expect``-style matching; the last ``SINCE_KEEP`` bytes are kept."""

    def __init__(self) -> None:
        self._raw = bytearray()

    def add(self, data: bytes) -> str:
        self._raw += data
        if len(self._raw) > 2 * SINCE_KEEP:
            del self._raw[: len(self._raw) - SINCE_KEEP]
        return self.text

    @property
    def text(self) -> str:
        text = self._raw.decode("utf-8", "replace").replace("\r\n", "\n")
        return _CONTROLS.sub("", text)
