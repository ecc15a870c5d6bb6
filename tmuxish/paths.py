"""Where sockets live: a private per-user directory, checked before it is trusted."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from tmuxish.errors import PermissionDenied, UsageError

DEFAULT_NAME = "default"
#: sun_path is 108 bytes on Linux including the terminating NUL.
MAX_SOCKET_PATH = 107


def socket_dir(env: dict[str, str] | None = None) -> Path:
    env = dict(os.environ) if env is None else env
    runtime = env.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isdir(runtime):
        return Path(runtime) / "tmuxish"
    return Path(f"/tmp/tmuxish-{os.getuid()}")


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
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode):
        raise PermissionDenied(f"socket directory {path} is not a directory")
    if st.st_uid != os.getuid():
        raise PermissionDenied(
            f"socket directory {path} is owned by uid {st.st_uid}, not by you (uid {os.getuid()})"
        )
    if st.st_mode & 0o077:
        raise PermissionDenied(
            f"socket directory {path} is accessible by other users "
            f"(mode {stat.S_IMODE(st.st_mode):o}); run 'chmod 700 {path}'"
        )


def resolve_socket(
    socket_path: str | None, socket_name: str | None, env: dict[str, str] | None = None
) -> Path:
    """-S PATH wins, then -L NAME in the default directory, then $TMUXISH_SOCKET, then default."""
    env = dict(os.environ) if env is None else env
    if socket_path:
        path = Path(socket_path)
    elif socket_name:
        if "/" in socket_name or socket_name in ("", ".", ".."):
            raise UsageError(f"invalid socket name {socket_name!r}")
        path = socket_dir(env) / socket_name
    elif env.get("TMUXISH_SOCKET"):
        path = Path(env["TMUXISH_SOCKET"])
    else:
        path = socket_dir(env) / DEFAULT_NAME
    path = Path(os.path.abspath(path))
    if len(os.fsencode(path)) > MAX_SOCKET_PATH:
        raise UsageError(f"socket path too long for a unix socket ({len(str(path))} bytes): {path}")
    return path


def log_path(socket_path: Path) -> Path:
    return socket_path.with_name(socket_path.name + ".log")


def is_default_dir(path: Path, env: dict[str, str] | None = None) -> bool:
    """Only the default directory is created and policed; -S paths are the user's choice."""
    return os.path.abspath(path) == os.path.abspath(socket_dir(env))
