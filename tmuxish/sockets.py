"""Where the server's socket is, as plain strings: what `tmuxish.paths` builds on, and all the
fast path of the everyday commands (``tmuxish.quick``) needs, without importing pathlib."""

from __future__ import annotations

import os
import stat

from tmuxish.errors import StaleSocket, TmuxishError, UsageError

DEFAULT_NAME = "default"
#: sun_path is 108 bytes on Linux including the terminating NUL.
MAX_SOCKET_PATH = 107


def socket_directory(env: dict[str, str] | None = None) -> str:
    """The per-user default directory: $XDG_RUNTIME_DIR/tmuxish, else /tmp/tmuxish-UID."""
    env = dict(os.environ) if env is None else env
    runtime = env.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isdir(runtime):
        return os.path.join(runtime, "tmuxish")
    return f"/tmp/tmuxish-{os.getuid()}"


def socket_location(
    socket_path: str | None, socket_name: str | None, env: dict[str, str] | None = None
) -> str:
    """-S PATH wins, then -L NAME in the default directory, then $TMUXISH_SOCKET, then the
    server of the session we run inside ($TMUXISH), then the default."""
    env = dict(os.environ) if env is None else env
    if socket_path == "":
        # `-S "$SOCK"` with SOCK unset must not mean the default server.
        raise UsageError("-S needs a socket path, not an empty string")
    if socket_path:
        path = socket_path
    elif socket_name is not None:
        if "/" in socket_name or socket_name in ("", ".", ".."):
            raise UsageError(f"invalid socket name {socket_name!r}")
        path = os.path.join(socket_directory(env), socket_name)
    elif env.get("TMUXISH_SOCKET"):
        path = env["TMUXISH_SOCKET"]
    elif env.get("TMUXISH", "").rpartition(",")[0]:
        # Inside a session: its own server, as tmux finds its socket through $TMUX.
        path = env["TMUXISH"].rpartition(",")[0]
    else:
        path = os.path.join(socket_directory(env), DEFAULT_NAME)
    path = os.path.abspath(path)
    if len(os.fsencode(path)) > MAX_SOCKET_PATH:
        raise UsageError(
            f"socket path too long for a unix socket ({len(os.fsencode(path))} bytes): {path}"
        )
    return path


def refused(path: str) -> TmuxishError:
    """What a connection refused on ``path`` means: a socket nobody listens on is stale (a new
    server may replace it); a file, directory or FIFO there is the user's, not a server's."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        mode = stat.S_IFSOCK  # gone meanwhile: as stale as it gets
    if not stat.S_ISSOCK(mode):
        return UsageError(f"{path} is not a socket")
    return StaleSocket(f"no server running on {path}: the server is gone, its socket is stale")


def is_default_dir(path: str | os.PathLike[str], env: dict[str, str] | None = None) -> bool:
    """Only the default directory is created and policed; -S paths are the user's choice."""
    return os.path.abspath(path) == os.path.abspath(socket_directory(env))


def private_dir_problem(path: str) -> str | None:
    """Why ``path`` cannot be trusted as a socket directory, or None if it is ours alone.
    FileNotFoundError if it does not exist."""
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode):
        return f"socket directory {path} is not a directory"
    if st.st_uid != os.getuid():
        return (
            f"socket directory {path} is owned by uid {st.st_uid}, not by you (uid {os.getuid()})"
        )
    if st.st_mode & 0o077:
        return (
            f"socket directory {path} is accessible by other users "
            f"(mode {stat.S_IMODE(st.st_mode):o}); run 'chmod 700 {path}'"
        )
    return None


def current_umask() -> int:
    """This process's umask, which `new` sends so files a session creates get the modes its
    user expects. /proc says it without the set-and-restore race of os.umask."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
