"""Spawning programs on new pseudo-terminals, and the few ioctls a session needs."""

from __future__ import annotations

import fcntl
import os
import shutil
import struct
import subprocess
import termios

from tmuxish.errors import BadRequest, ProgramNotFound


def set_size(fd: int, cols: int, rows: int) -> None:
    """Set the window size; the kernel sends SIGWINCH to the foreground process group."""
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def get_size(fd: int) -> tuple[int, int]:
    rows, cols, _, _ = struct.unpack("HHHH", fcntl.ioctl(fd, termios.TIOCGWINSZ, b"\0" * 8))
    return cols, rows


#: Linux's "get pty number" ioctl; it succeeds only on a PTY master. Missing from termios' stubs.
TIOCGPTN: int = getattr(termios, "TIOCGPTN", 0x80045430)


def is_pty_master(fd: int) -> bool:
    try:
        fcntl.ioctl(fd, TIOCGPTN, b"\0" * 4)
    except OSError:
        return False
    return True


def _make_controlling_tty() -> None:
    # Runs in the child after setsid (start_new_session) and after stdin became the slave.
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def spawn(
    argv: list[str], cwd: str | None, env: dict[str, str], cols: int, rows: int
) -> tuple[int, int]:
    """Start ``argv`` on a new PTY of ``cols`` x ``rows``; return (pid, non-blocking master fd).

    The caller owns the master and must reap the pid. Errors a user can fix (missing program,
    bad directory) raise TmuxishError subclasses with one-line messages.
    """
    if not argv:
        raise BadRequest("no command given")
    if cwd is not None and not os.path.isdir(cwd):
        raise BadRequest(f"directory not found: {cwd}")
    program = argv[0]
    if "/" not in program and shutil.which(program, path=env.get("PATH", os.defpath)) is None:
        raise ProgramNotFound(f"program not found: {program}")
    master, slave = os.openpty()
    try:
        set_size(master, cols, rows)
        try:
            proc = subprocess.Popen(
                argv,
                stdin=slave,
                stdout=slave,
                stderr=slave,
                cwd=cwd,
                env=env,
                start_new_session=True,
                preexec_fn=_make_controlling_tty,
                close_fds=True,
            )
        except FileNotFoundError as exc:
            raise ProgramNotFound(f"program not found: {program}") from exc
        except PermissionError as exc:
            raise ProgramNotFound(f"cannot execute {program}: permission denied") from exc
        except OSError as exc:
            raise BadRequest(f"cannot start {program}: {exc.strerror or exc}") from exc
        # The reaper owns the exit status; stop Popen from warning or reaping behind our back.
        proc.returncode = 0
    except BaseException:
        os.close(master)
        raise
    finally:
        os.close(slave)
    os.set_blocking(master, False)
    return proc.pid, master


def exit_code_of(status: int) -> int:
    """A waitpid status as a shell would report it: the code, or 128+N for signal N."""
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 1
