"""Where sockets live: a private per-user directory, checked before it is trusted."""

from __future__ import annotations

from pathlib import Path

from tmuxish.errors import PermissionDenied
from tmuxish.sockets import current_umask as current_umask
from tmuxish.sockets import is_default_dir as is_default_dir
from tmuxish.sockets import private_dir_problem, socket_directory, socket_location


def socket_dir(env: dict[str, str] | None = None) -> Path:
    return Path(socket_directory(env))


def ensure_private_dir(path: Path) -> Path:
    """Create ``path`` mode 0700 if missing; refuse it if it is not ours or others can enter it."""
    try:
        try:
            path.mkdir(mode=0o700, parents=False, exist_ok=True)
        except FileNotFoundError:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            path.mkdir(mode=0o700, exist_ok=True)
    except FileExistsError:
        pass  # something else than a directory: check_private_dir says what
    except OSError as exc:
        raise PermissionDenied(
            f"cannot create socket directory {path}: {exc.strerror or exc}"
        ) from exc
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


def open_server_log(path: Path) -> int:
    """``<socket>.log`` opened for appending: a regular file, never through a symlink (with -S
    in a shared directory someone else could plant one), never blocking (nor a FIFO)."""
    import errno
    import os
    import stat

    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK
    try:
        fd = os.open(path, flags | os.O_NOCTTY, 0o600)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise OSError(exc.errno, "it is a symbolic link", str(path)) from exc
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(errno.EINVAL, "not a regular file", str(path))
    return fd
