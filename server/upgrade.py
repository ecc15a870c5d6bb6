"""`tmuxish server upgrade`: carry every session over to the installed server code, in place.

The server re-executes itself (``execv`` keeps the pid), so every program stays our child and
``waitpid`` keeps working. PTY masters, the listening socket, the lock and console-socket
listeners pass through the exec as inherited file descriptors; everything else (ids, names,
statuses, sizes, the screen contents) goes in a msgpack state blob in a memfd. The new process
feeds each session's saved history and repaint into a fresh screen model, so a re-attach repaints
as before. Attached clients are told, disconnected, and reconnect by themselves.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from datetime import datetime
from typing import TYPE_CHECKING, Any

import msgpack

from tmuxish.server.session import Session

if TYPE_CHECKING:
    from tmuxish.server.daemon import Server

log = logging.getLogger(__name__)

STATE_VERSION = 1
#: Screen history carried over per session (lines above the visible screen).
HISTORY_LINES = 5000


def _session_state(session: Session, keep: list[int]) -> dict[str, Any]:
    screen = b""
    if session.screen is not None and session.fd is not None:
        try:
            screen = session.screen.history(HISTORY_LINES) + session.screen.repaint()
        except Exception as exc:
            log.warning("session %d: screen not carried over: %s", session.id, exc)
    if session.fd is not None:
        os.set_inheritable(session.fd, True)
        keep.append(session.fd)
    return {
        "id": session.id,
        "name": session.name,
        "command": session.command,
        "pid": session.pid,
        "fd": session.fd,
        "cols": session.cols,
        "rows": session.rows,
        "policy": session.policy,
        "exit_code": session.exit_code,
        "child_done": session.child_done,
        "created": session.created.isoformat(),
        "extra": session.extra,
        "screen": screen,
        "screen_was_on": session.screen is not None,
    }


def snapshot(server: Server, listen_fd: int, lock_fd: int) -> int:
    """Write the state to a memfd and mark every fd the next process needs inheritable.

    Returns the memfd, itself inheritable.
    """
    keep = [listen_fd, lock_fd]
    sessions = [_session_state(s, keep) for s in server.registry]
    listeners = []
    for listener in getattr(server, "console_listeners", []):
        try:
            fd = listener.fileno()
        except Exception:
            continue
        if fd < 0:
            continue
        os.set_inheritable(fd, True)
        keep.append(fd)
        listeners.append(
            {"fd": fd, "path": listener.path, "persist": listener.persist,
             "name": getattr(listener, "session_name", None)}
        )
    state = {
        "version": STATE_VERSION,
        "listen_fd": listen_fd,
        "lock_fd": lock_fd,
        "next_id": server.registry.next_id,
        "generation": server.generation,
        "sessions": sessions,
        "listeners": listeners,
    }
    for fd in (listen_fd, lock_fd):
        os.set_inheritable(fd, True)
    blob = msgpack.packb(state, use_bin_type=True)
    memfd = os.memfd_create("tmuxish-state", 0)
    os.write(memfd, blob)
    os.lseek(memfd, 0, os.SEEK_SET)
    os.set_inheritable(memfd, True)
    return memfd


def exec_server(socket_path: str, memfd: int) -> None:
    """Replace this process with the installed server, resuming from ``memfd``. Never returns."""
    argv = [sys.executable, "-P", "-m", "tmuxish", "-S", socket_path, "server", "--resume",
            str(memfd)]
    sys.stdout.flush()
    sys.stderr.flush()
    logging.shutdown()
    os.execv(sys.executable, argv)


def load_state(memfd: int) -> dict[str, Any]:
    chunks = []
    while True:
        chunk = os.read(memfd, 1 << 20)
        if not chunk:
            break
        chunks.append(chunk)
    os.close(memfd)
    state: dict[str, Any] = msgpack.unpackb(b"".join(chunks), raw=False)
    if state.get("version") != STATE_VERSION:
        raise RuntimeError(f"unknown upgrade state version {state.get('version')}")
    return state


def restore(server: Server, state: dict[str, Any]) -> None:
    """Rebuild sessions (inside the running loop) from ``state``."""
    from tmuxish.server.handlers import make_screen

    assert server.loop is not None
    server.registry.next_id = state["next_id"]
    for item in state["sessions"]:
        fd = item["fd"]
        if fd is not None:
            os.set_inheritable(fd, False)
            os.set_blocking(fd, False)
        screen = None
        if item["screen_was_on"] and fd is not None:
            screen = make_screen(server, item["cols"], item["rows"])
            if screen is not None and item["screen"]:
                try:
                    screen.feed(item["screen"])
                    screen.take_responses()
                except Exception as exc:
                    log.warning("session %d: screen not restored: %s", item["id"], exc)
        session = Session(
            item["id"],
            item["name"],
            item["command"],
            item["pid"],
            fd if fd is not None else -1,
            item["cols"],
            item["rows"],
            loop=server.loop,
            reaper=server.reaper,
            policy=item["policy"],
            screen=screen,
            on_exit=server.session_exited,
            extra=item["extra"],
        )
        session.created = datetime.fromisoformat(item["created"])
        session.last_used = time.monotonic()
        if fd is None:
            session.fd = None
            session.exit_code = item["exit_code"]
            server.registry.add(session)
            continue
        server.registry.add(session)
        session.schedule_compact()  # the restored history is all in uncompressed pages
        if item["child_done"]:
            # The program had exited but its PTY was still draining when we re-executed.
            session.exit_code = item["exit_code"]
            session.start(watch=False)
            session.child_exited(item["pid"] or 0, item["exit_code"])
        else:
            session.start()
        reopen_log = item["extra"].get("log")
        if reopen_log:
            from tmuxish.server.logfile import DEFAULT_MAX_BYTES, OutputLog

            try:
                output_log = OutputLog(reopen_log, item["extra"].get("log_max", DEFAULT_MAX_BYTES))
            except OSError as exc:
                log.warning("session %d: log not reopened: %s", item["id"], exc)
            else:
                session.log_sink = output_log.write
                session.cleanup.append(output_log.close)
    log.info("resumed %d sessions after upgrade", len(state["sessions"]))
