"""Errors users can see, each with a stable code that travels over the wire in ERROR messages."""

from __future__ import annotations

#: Not typing.TYPE_CHECKING: importing typing (and re with it) costs `tmuxish ls` ~15 ms.
TYPE_CHECKING = False

if TYPE_CHECKING:
    from typing import ClassVar


class TmuxishError(Exception):
    """Base for every error meant for the user: one line, no traceback."""

    code: ClassVar[str] = "error"
    exit_status: ClassVar[int] = 1


class SessionNotFound(TmuxishError):
    code = "session-not-found"


class NameInUse(TmuxishError):
    code = "name-in-use"


class BadRequest(TmuxishError):
    code = "bad-request"


class ProgramNotFound(TmuxishError):
    code = "program-not-found"
    exit_status = 127


class ServerNotRunning(TmuxishError):
    code = "server-not-running"


class StaleSocket(ServerNotRunning):
    """The socket file is there but nobody listens: the server died without removing it."""

    code = "stale-socket"


class ServerGone(TmuxishError):
    code = "server-gone"


class ServerUpgrading(ServerGone):
    """The server is re-executing itself (`tmuxish server upgrade`): connect again."""

    code = "server-upgrading"


class PermissionDenied(TmuxishError):
    code = "permission-denied"


class VersionMismatch(TmuxishError):
    code = "version-mismatch"


class SessionExited(TmuxishError):
    code = "session-exited"


class SessionRunning(TmuxishError):
    code = "session-running"


class SessionBusy(TmuxishError):
    """`run` on a session whose shell is still running a command (a previous `run` included)."""

    code = "session-busy"


class ExitCodeUnknown(TmuxishError):
    """`wait` on a session that ended without a known exit code (a console-socket session:
    the process on the other end of its terminal is not the server's child)."""

    code = "exit-code-unknown"
    exit_status = 125


class ConfigError(TmuxishError):
    code = "config-error"
    exit_status = 2


class UsageError(TmuxishError):
    code = "usage"
    exit_status = 2


class RemoteError(TmuxishError):
    """ssh could not reach the remote host (like ssh itself, exit status 255)."""

    code = "remote"
    exit_status = 255


_BY_CODE: dict[str, type[TmuxishError]] = {
    cls.code: cls
    for cls in (
        TmuxishError,
        SessionNotFound,
        NameInUse,
        BadRequest,
        ProgramNotFound,
        ServerNotRunning,
        StaleSocket,
        ServerGone,
        ServerUpgrading,
        PermissionDenied,
        VersionMismatch,
        SessionExited,
        SessionRunning,
        SessionBusy,
        ExitCodeUnknown,
        ConfigError,
        UsageError,
        RemoteError,
    )
}


def from_code(code: str, text: str) -> TmuxishError:
    """Rebuild the error a server sent, so the client raises the same class."""
    return _BY_CODE.get(code, TmuxishError)(text)


# Here, not in a module of its own: the fast path's `ls` and every error message use it, and
# both import this module already (one more import is measurable in `ls`).
#: C0 controls, DEL and C1 controls: written raw they would drive the user's terminal (clear
#: it, retitle it, answer queries into its input) or break a one-line message over lines.
_CONTROLS = {c: f"\\x{c:02x}" for c in (*range(0x20), *range(0x7F, 0xA0))}


def printable(text: str) -> str:
    """``text`` with every control character shown as ``\\xNN``."""
    return text.translate(_CONTROLS)
