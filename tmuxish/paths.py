"""Where sockets live: a private per-user directory, checked before it is trusted."""

from __future__ import annotations

from pathlib import Path

from tmuxish.errors import PermissionDenied
from tmuxish.sockets import is_default_dir as is_default_dir
from tmuxish.sockets import private_dir_problem, socket_directory, socket_location


def socket_dir(env: dict[str, str] | None = None) -> Path:
    return Path(socket_directory(env))


def ensure_private_dir(path: Path) -> Path:
    """Create ``path`` mode 0700 if missing; refuse it if it is not ours or others can enter it."""
    try:
        path.mkdir(mode=0o700, parents=False, exist_ok=True)
    except FileNotFoundError:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        path.mkdir(mode=0o700, exist_ok=True)
    check_private_dir(path)
    return path


def check_private_dir(path: Path) -> None:
    problem = private_dir_problem(str(path))
    if problem is not None:
        raise PermissionDenied(problem)


def resolve_socket(
    socket_path: str | None, socket_name: str | None, env: dict[str, str] | None = None
) -> Path:
    """-S PATH, -L NAME, $TMUXISH_SOCKET, the server of $TMUXISH, the default (socket_location)."""
    return Path(socket_location(socket_path, socket_name, env))


def log_path(socket_path: Path) -> Path:
    return socket_path.with_name(socket_path.name + ".log")
