"""What both API clients share: the session record, the arguments of the requests they build,
and how waiting for text reports failure. Pure: no sockets here.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from tmuxish.errors import SessionExited, UsageError
from tmuxish.paths import current_umask, resolve_socket

#: What ``send`` accepts: text (sent literally), key names (tmux ``send-keys`` style) or raw bytes.
Keys = str | Sequence[str] | bytes | bytearray | memoryview
Pattern = str | re.Pattern[str]
SocketPath = str | os.PathLike[str]


_KNOWN_FIELDS: Final = (
    "id",
    "name",
    "command",
    "pid",
    "status",
    "exit_code",
    "clients",
    "cols",
    "rows",
    "created",
    "screen",
    "policy",
)


@dataclass(frozen=True)
class SessionInfo:
    """One session as the server reports it; the fields of ``tmuxish ls --json``."""

    id: int
    name: str | None
    command: tuple[str, ...]
    #: None for a console-socket session whose process the server does not know.
    pid: int | None
    #: "running" or "exited".
    status: str
    #: The program's exit code (128+N for signal N) once it has exited.
    exit_code: int | None
    #: Number of attached clients.
    clients: int
    cols: int
    rows: int
    created: datetime
    #: Whether the session has a screen model (``capture`` and repaint work).
    screen: bool
    #: Window-size policy: latest, smallest or largest.
    policy: str
    #: Fields this version does not know (e.g. ``log`` for a logged session).
    extra: Mapping[str, Any] = field(default_factory=dict, hash=False)

    @property
    def running(self) -> bool:
        return self.status == "running"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SessionInfo:
        created = data.get("created")
        try:
            when = datetime.fromisoformat(created) if isinstance(created, str) else None
        except ValueError:
            when = None
        return cls(
            id=int(data["id"]),
            name=data.get("name"),
            command=tuple(data.get("command") or ()),
            pid=data.get("pid"),
            status=str(data.get("status", "running")),
            exit_code=data.get("exit_code"),
            clients=int(data.get("clients", 0)),
            cols=int(data.get("cols", 0)),
            rows=int(data.get("rows", 0)),
            created=when or datetime.fromtimestamp(0).astimezone(),
            screen=bool(data.get("screen", False)),
            policy=str(data.get("policy", "latest")),
            extra={k: v for k, v in data.items() if k not in _KNOWN_FIELDS},
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON object ``tmuxish ls --json`` prints for this session."""
        return {
            "id": self.id,
            "name": self.name,
            "command": list(self.command),
            "pid": self.pid,
            "status": self.status,
            "exit_code": self.exit_code,
            "clients": self.clients,
            "cols": self.cols,
            "rows": self.rows,
            "created": self.created.isoformat(timespec="seconds"),
            "screen": self.screen,
            "policy": self.policy,
            **self.extra,
        }


#: A session id or name (strings of digits are ids), or a ``SessionInfo``/handle for its id.
Target = int | str | SessionInfo


def target_id(target: Any) -> Any:
    """What goes on the wire for a target: a SessionInfo (or handle) is its id."""
    return target.id if isinstance(target, SessionInfo) else target


def socket_path_of(socket_path: SocketPath | None, socket_name: str | None) -> Path:
    return resolve_socket(os.fspath(socket_path) if socket_path is not None else None, socket_name)


def _default_command() -> list[str]:
    from tmuxish import config

    configured = config.load()["default_command"]
    if configured:
        return list(configured)
    return [os.environ.get("SHELL") or "/bin/sh"]


def new_args(
    command: str | Sequence[str] | None,
    *,
    name: str | None = None,
    cwd: SocketPath | None = None,
    cols: int = 80,
    rows: int = 24,
    env: Mapping[str, str] | None = None,
    inherit_env: bool = True,
    window_size: str | None = None,
) -> dict[str, Any]:
    """The arguments of a ``new`` request, exactly as the CLI sends them.

    A string command is split like a shell would split it (``shlex.split``, no shell features:
    pass ``["sh", "-c", "a | b"]`` for those); None means the configured default command, else
    ``$SHELL``. The session gets this process's environment (unless ``inherit_env`` is false)
    updated with ``env``, and this process's working directory unless ``cwd`` is given.
    """
    if command is None:
        argv = _default_command()
    elif isinstance(command, str):
        import shlex

        argv = shlex.split(command)
    else:
        argv = list(command)
    if not argv or not all(isinstance(a, str) for a in argv):
        raise UsageError("the command must be a non-empty list of strings")
    if type(cols) is not int or type(rows) is not int or cols <= 0 or rows <= 0:
        raise UsageError(f"the size must be positive integers, got {cols!r}x{rows!r}")
    full_env: dict[str, str] = dict(os.environ) if inherit_env else {}
    full_env.pop("TMUXISH", None)
    if env:
        full_env.update(env)
    args: dict[str, Any] = {
        "command": argv,
        "name": name,
        "cwd": os.path.abspath(os.fspath(cwd)) if cwd is not None else os.getcwd(),
        "cols": cols,
        "rows": rows,
        "env": full_env,
        "replace_env": True,
        # The session's files are created as this client would create them, not as the server.
        "umask": current_umask(),
    }
    if window_size is not None:
        args["window_size"] = window_size
    return args


def compile_pattern(pattern: Pattern) -> re.Pattern[str]:
    return re.compile(pattern, re.MULTILINE) if isinstance(pattern, str) else pattern


def _tail(text: str, limit: int = 300) -> str:
    lines = [line.rstrip() for line in text.rstrip().splitlines()]
    tail = "\n".join(lines[-5:])
    return tail[-limit:]


def timeout_error(
    regex: re.Pattern[str], target: Target, timeout: float, text: str
) -> TimeoutError:
    return TimeoutError(
        f"timed out after {timeout:g}s waiting for {regex.pattern!r} in session "
        f"{target_id(target)}; "
        f"the screen ends with:\n{_tail(text)}"
    )


def exited_error(regex: re.Pattern[str], target: Target) -> SessionExited:
    return SessionExited(f"session {target_id(target)} exited before {regex.pattern!r} appeared")


def attach_args(
    target: Target | None, cols: int, rows: int, readonly: bool, history: int
) -> dict[str, Any]:
    return {
        "target": target_id(target),
        "cols": cols,
        "rows": rows,
        "readonly": readonly,
        "history": history,
    }


def split_attach_reply(info: dict[str, Any]) -> tuple[SessionInfo, bytes, bytes]:
    initial = info.pop("initial", b"") or b""
    reset = info.pop("reset", b"") or b""
    return SessionInfo.from_dict(info), bytes(initial), bytes(reset)
