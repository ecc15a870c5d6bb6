"""Child exit notification: one pidfd per child, plus a sweep for adopted orphans.

pidfds rather than a SIGCHLD handler: uvloop reserves SIGCHLD for itself, and a pidfd tells us
about exactly one process, so an exit status is never stolen from its owner. The server may be a
child subreaper for container runtimes, so processes we never started can be re-parented to us;
the sweep reaps those so they do not linger as zombies.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable

from tmuxish.server.pty import exit_code_of

log = logging.getLogger(__name__)

ExitCallback = Callable[[int, int | None], None]
SWEEP_INTERVAL = 10.0


class Reaper:
    def __init__(self) -> None:
        self._watched: dict[int, tuple[int, ExitCallback]] = {}
        #: Exited children whose status someone will collect later: the sweep leaves them.
        self._held: set[int] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sweeper: asyncio.TimerHandle | None = None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._sweeper = loop.call_later(SWEEP_INTERVAL, self._periodic_sweep)

    def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
        for pid in list(self._watched):
            self.unwatch(pid)
        self._loop = None

    def watch(self, pid: int, callback: ExitCallback) -> None:
        """Call ``callback(pid, exit_code)`` once ``pid`` exits (code None if it was not ours)."""
        assert self._loop is not None, "Reaper.start() first"
        try:
            pidfd = os.pidfd_open(pid)
        except ProcessLookupError:
            # Already reaped by someone else; nothing more to learn.
            self._loop.call_soon(callback, pid, None)
            return
        self._watched[pid] = (pidfd, callback)
        self._loop.add_reader(pidfd, self._on_exit, pid)

    def hold(self, pid: int) -> None:
        """Keep the sweep from reaping ``pid`` while it is not watched (until ``release``)."""
        self._held.add(pid)

    def release(self, pid: int) -> None:
        self._held.discard(pid)

    def unwatch(self, pid: int) -> None:
        entry = self._watched.pop(pid, None)
        if entry is None:
            return
        if self._loop is not None:
            self._loop.remove_reader(entry[0])
        os.close(entry[0])

    def _on_exit(self, pid: int) -> None:
        entry = self._watched.get(pid)
        if entry is None:
            return
        try:
            wpid, status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            # Not our child (e.g. a container init whose parent is still the runtime).
            code: int | None = None
        else:
            if wpid == 0:
                return
            code = exit_code_of(status)
        self.unwatch(pid)
        try:
            entry[1](pid, code)
        except Exception:
            log.exception("exit callback for pid %d failed", pid)
        self.sweep()

    def _periodic_sweep(self) -> None:
        self.sweep()
        if self._loop is not None:
            self._sweeper = self._loop.call_later(SWEEP_INTERVAL, self._periodic_sweep)

    def sweep(self) -> None:
        """Reap exited children nobody watches (orphans adopted as a subreaper)."""
        for pid in _children():
            if pid in self._watched or pid in self._held:
                continue
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)


def _children() -> list[int]:
    pids: list[int] = []
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:
        return pids
    for tid in tasks:
        try:
            with open(f"/proc/self/task/{tid}/children") as f:
                pids.extend(int(p) for p in f.read().split())
        except OSError:
            continue
    return pids
