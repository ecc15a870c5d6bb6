"""`tmuxish server info` and `tmuxish server restart`: the server's generation, its keeper and
its restarts (issue 13), and starting it again after its keeper gave up on a crash loop."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tmuxish.client.autostart import keeper_pid
from tmuxish.client.connection import Connection
from tmuxish.errors import ServerNotRunning, TmuxishError

RESTART_TIMEOUT = 10.0


def describe(info: dict[str, Any]) -> str:
    lines = [
        f"server pid {info['pid']}, tmuxish {info['version']}, generation "
        f"{info.get('generation', 0)}, {info['sessions']} sessions"
    ]
    if "keeper" not in info:
        lines.append("no keeper: a crash of the server ends every session")
        return "\n".join(lines) + "\n"
    if info["keeper"] is None:
        lines.append("its keeper was lost: a crash of the server now ends every session")
        return "\n".join(lines) + "\n"
    restarts = info.get("restarts") or []
    if restarts:
        last = restarts[-1]
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(last["time"])))
        lines.append(f"keeper pid {info['keeper']}; last restart {when}: {last['reason']}")
    else:
        lines.append(f"keeper pid {info['keeper']}; never restarted")
    return "\n".join(lines) + "\n"


def server_info(connect: Callable[[], Connection]) -> int:
    with connect() as conn:
        info = conn.request("info")
    os.write(1, describe(info).encode())
    return 0


def _info(connect: Callable[[], Connection]) -> dict[str, Any] | None:
    """The server's `info`, or None when none answers (or its keeper refuses for it)."""
    try:
        with connect() as conn:
            info: dict[str, Any] = conn.request("info")
            return info
    except TmuxishError:
        return None


def server_restart(socket_path: Path, connect: Callable[[], Connection]) -> int:
    """Ask the keeper to start the server again (it stops after a crash loop)."""
    keeper = keeper_pid(socket_path)
    if keeper is None:
        raise ServerNotRunning(f"no keeper runs on {socket_path}; any command starts a server")
    running = _info(connect)
    if running is not None:
        raise TmuxishError(f"the server is running (pid {running['pid']}); nothing to restart")
    os.kill(keeper, signal.SIGUSR1)
    deadline = time.monotonic() + RESTART_TIMEOUT
    delay = 0.01
    while (info := _info(connect)) is None:
        if time.monotonic() > deadline:
            raise TmuxishError(f"the server did not come back; see {socket_path}.log")
        time.sleep(delay)
        delay = min(delay * 2, 0.2)
    os.write(1, f"server restarted: {describe(info)}".encode())
    return 0
