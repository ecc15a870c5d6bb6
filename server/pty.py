"""Spawning programs on new pseudo-terminals, and the few ioctls a session needs."""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import struct
import termios

from tmuxish.errors import BadRequest, ProgramNotFound, TmuxishError


def set_size(fd: int, cols: int, rows: int) -> None:
    """Set the window size; the kernel sends SIGWINCH to the foreground process group."""
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def get_size(fd: int) -> tuple[int, int]:
    rows, cols, _, _ = struct.unpack("HHHH", fcntl.ioctl(fd, termios.TIOCGWINSZ, b"\0" * 8))
    return cols, rows


#: Python ignores these; a program started by us must get the defaults back.
_DEFAULT_SIGNALS = (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def spawn(
    argv: list[str],
    cwd: str | None,
    env: dict[str, str],
    cols: int,
    rows: int,
    umask: int | None = None,
) -> tuple[int, int]:
    """Start ``argv`` on a new PTY of ``cols`` x ``rows``; return (pid, non-blocking master fd).

    ``umask`` is the program's (the client's, so files it creates get the modes the user
    expects); None leaves the server's. The caller owns the master and must reap the pid.
    Errors a user can fix (missing program, bad directory, too many open files) raise
    TmuxishError subclasses with one-line messages.
    """
    if not argv:
        raise BadRequest("no command given")
    if cwd is not None and not os.path.isdir(cwd):
        if os.path.exists(cwd):
            raise BadRequest(f"not a directory: {cwd}")
        raise BadRequest(f"directory not found: {cwd}")
    program = argv[0]
    path = program if "/" in program else shutil.which(program, path=env.get("PATH", os.defpath))
    if path is None:
        raise ProgramNotFound(f"program not found: {program}")
    try:
        master, slave = os.openpty()
    except OSError as exc:
        raise TmuxishError(f"cannot open a terminal: {exc.strerror or exc}") from exc
    try:
        set_size(master, cols, rows)
        pid = _spawn_on(path, argv, env, cwd, os.ttyname(slave), program, umask)
    except OSError as exc:
        os.close(master)
        raise TmuxishError(f"cannot set up a terminal: {exc.strerror or exc}") from exc
    except BaseException:
        os.close(master)
        raise
    finally:
        os.close(slave)
    os.set_blocking(master, False)
    return pid, master


def _spawn_on(
    path: str,
    argv: list[str],
    env: dict[str, str],
    cwd: str | None,
    tty: str,
    program: str,
    umask: int | None,
) -> int:
    """posix_spawn (vfork + exec) rather than fork: forking the whole server for every session
    cost ~11 ms, this ~4 ms. setsid happens before the file actions, so opening the slave by
    name makes it the child's controlling terminal."""
    actions = [
        (os.POSIX_SPAWN_OPEN, 0, tty, os.O_RDWR, 0),
        (os.POSIX_SPAWN_DUP2, 0, 1),
        (os.POSIX_SPAWN_DUP2, 0, 2),
    ]
    # posix_spawn has no cwd argument in 3.11; the server's own cwd does not matter to it and
    # nothing else in the process depends on it, so switch around the call.
    # The umask likewise: the server creates no files between the two calls.
    previous = os.getcwd() if cwd else None
    old_umask = os.umask(umask) if umask is not None else None
    try:
        if cwd:
            try:
                os.chdir(cwd)
            except OSError as exc:
                # Not the program's fault: "cannot execute" would send the user the wrong way.
                raise BadRequest(f"cannot enter directory {cwd}: {exc.strerror or exc}") from exc
        return os.posix_spawn(
            path,
            argv,
            env,
            file_actions=actions,
            setsid=True,
            setsigmask=(),
            setsigdef=_DEFAULT_SIGNALS,
        )
    except FileNotFoundError as exc:
        if os.path.exists(path):  # a script whose #! names a program that is not there
            raise ProgramNotFound(
                f"cannot start {program}: the interpreter its #! line names was not found"
            ) from exc
        raise ProgramNotFound(f"program not found: {program}") from exc
    except PermissionError as exc:
        raise ProgramNotFound(f"cannot execute {program}: permission denied") from exc
    except OSError as exc:
        raise BadRequest(f"cannot start {program}: {exc.strerror or exc}") from exc
    finally:
        if old_umask is not None:
            os.umask(old_umask)
        if previous is not None:
            with contextlib.suppress(OSError):
                os.chdir(previous)


def exit_code_of(status: int) -> int:
    """A waitpid status as a shell would report it: the code, or 128+N for signal N."""
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 1
