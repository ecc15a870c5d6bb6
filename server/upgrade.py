"""`tmuxish server upgrade`: carry every session over to the installed server code, in place.

A server run by a keeper hands over to it instead (server/keeper.py: records and screens as
after a crash, then the keeper starts the installed server); what follows is the upgrade of a
server without a keeper (TMUXISH_KEEPER=0, or one whose keeper died).

The server re-executes itself (``execv`` keeps the pid), so every program stays our child and
``waitpid`` keeps working. PTY masters, the listening socket, the lock and console-socket
listeners pass through the exec as inherited file descriptors; everything else (ids, names,
statuses, sizes, the screen contents) goes in a msgpack state blob in a memfd. The new process
feeds each session's saved history and repaint into a fresh screen model, so a re-attach repaints
as before. Attached clients are told, disconnected, and reconnect by themselves.

:func:`capture` and :func:`restore` are the round trip itself, apart from exec: the state is a
plain msgpack-able dict (each session's ``state()``, each console-socket listener's) that refers
to fds by their index in a list, so a restorer in a fresh process (a crash-recovery keeper that
kept the fds) passes the fds as it holds them.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import TYPE_CHECKING, Any

import msgpack

if TYPE_CHECKING:
    from tmuxish.server.daemon import Server

log = logging.getLogger(__name__)

STATE_VERSION = 2


def capture(server: Server) -> tuple[dict[str, Any], list[int]]:
    """The server's state (msgpack-able) and the fds it refers to by index: each session's PTY
    master and each console-socket listener. Call it with every session suspended."""
    fds: list[int] = []
    sessions = [server.factory.state(s, fds) for s in server.registry]
    listeners = []
    for cs in server.console_listeners:
        fd = cs.fileno()
        if fd < 0:
            continue
        listeners.append({**cs.state(), "fd": len(fds)})
        fds.append(fd)
    state = {
        "version": STATE_VERSION,
        "next_id": server.registry.next_id,
        "generation": server.generation,
        "sessions": sessions,
        "listeners": listeners,
    }
    return state, fds


def pack(state: dict[str, Any]) -> bytes:
    """A state (or one piece of it, such as a session's record for the keeper) as bytes."""
    # surrogateescape: a command or environment that is not UTF-8 is kept as its bytes.
    blob: bytes = msgpack.packb(state, use_bin_type=True, unicode_errors="surrogateescape")
    return blob


def unpack(blob: bytes) -> dict[str, Any]:
    state: dict[str, Any] = msgpack.unpackb(blob, raw=False, unicode_errors="surrogateescape")
    return state


def snapshot(server: Server, listen_fd: int, lock_fd: int) -> int:
    """Write the state to a memfd and mark every fd the next process needs inheritable.

    Returns the memfd, itself inheritable.
    """
    state, fds = capture(server)
    # Across exec the numbers stay the same: the next process restores with these.
    state.update({"listen_fd": listen_fd, "lock_fd": lock_fd, "fds": fds})
    for fd in (listen_fd, lock_fd, *fds):
        os.set_inheritable(fd, True)
    blob = pack(state)
    memfd = os.memfd_create("tmuxish-state", 0)
    os.write(memfd, blob)
    os.lseek(memfd, 0, os.SEEK_SET)
    os.set_inheritable(memfd, True)
    return memfd


def exec_server(socket_path: str, memfd: int) -> None:
    """Replace this process with the installed server, resuming from ``memfd``. Never returns."""
    argv = [
        sys.executable,
        "-P",
        "-m",
        "tmuxish",
        "-S",
        socket_path,
        "server",
        "--resume",
        str(memfd),
    ]
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
    state = unpack(b"".join(chunks))
    if state.get("version") == 1:
        return _from_version_1(state)
    if state.get("version") != STATE_VERSION:
        raise RuntimeError(f"unknown upgrade state version {state.get('version')}")
    return state


def _from_version_1(state: dict[str, Any]) -> dict[str, Any]:
    """The state a server from before session kinds wrote: fd numbers in place of fd indexes,
    and the kind to be told from ``pid`` and ``extra``."""
    fds: list[int] = []
    for item in state["sessions"]:
        extra = item.get("extra") or {}
        if item.get("fd") is not None:
            fds.append(item["fd"])
            item["fd"] = len(fds) - 1
        if item.get("pid") is None:
            item["kind"] = "console"
        elif "container_id" in extra and "runtime" in extra:
            item["kind"] = "container"
            item["container"] = {
                "runtime": extra["runtime"],
                "runtime_path": extra.get("runtime_path") or extra["runtime"],
                "container_id": extra["container_id"],
                "bundle": extra.get("bundle", ""),
            }
        else:
            item["kind"] = "program"
    for listener in state.get("listeners", []):
        fds.append(listener["fd"])
        listener["fd"] = len(fds) - 1
    return {**state, "version": STATE_VERSION, "fds": fds}


def restore(server: Server, state: dict[str, Any], fds: list[int] | None = None) -> None:
    """Rebuild sessions and console-socket listeners (inside the running loop) from ``state``,
    using ``fds[i]`` wherever the state refers to fd ``i`` (default: the numbers the previous
    process saved, as after exec)."""
    assert server.loop is not None
    if fds is None:
        fds = list(state["fds"])
    server.registry.next_id = state["next_id"]
    for item in state["sessions"]:
        slot = item["fd"]
        try:
            server.factory.restore(item, fds[slot] if slot is not None else None)
        except Exception:
            log.exception("session %s not restored", item.get("id"))
    for item in state["listeners"]:
        try:
            server.containers.restore_console_socket(item, fds[item["fd"]])
        except Exception:
            log.exception("console socket %s not restored", item.get("path"))
    log.info(
        "resumed %d sessions and %d console sockets after upgrade",
        len(state["sessions"]),
        len(state["listeners"]),
    )
