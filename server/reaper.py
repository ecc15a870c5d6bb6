"""Child exit notification: one pidfd per child, plus a sweep for adopted orphans.

pidfds rather than a SIGCHLD handler: uvloop reserves SIGCHLD for itself, and a pidfd tells us
about exactly one process, so an exit status is never stolen from its owner. The server may be a
child subreaper for container runtimes, so processes we never started can be re-parented to us;
the sweep reaps those so they do not linger as zombies.

Under a keeper (server/keeper.py), programs started by an earlier server are the keeper's
children, not ours: only the keeper can collect their exit status, and it reports it over the
link (``foreign_exit``). Such a pid's pidfd still tells us when it ends; its code then comes from
the keeper, before or after.
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
#: Exit codes the keeper reported for pids nobody watches (yet), oldest dropped first.
MAX_FOREIGN = 4096


class Reaper:
    def __init__(self) -> None:
        self._watched: dict[int, tuple[int, ExitCallback]] = {}
        #: Exited children whose status someone will collect later: the sweep leaves them.
        self._held: set[int] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sweeper: asyncio.TimerHandle | None = None
        #: Programs an earlier server started (restored after its crash): the keeper's
        #: children, whose exit codes only the keeper can collect.
        self.adopted: set[int] = set()
        #: Exit codes the keeper reported, by pid, not yet claimed by a watcher.
        self._foreign: dict[int, int] = {}
        #: Watched pids that ended while not our children: their code will come from the keeper.
        self._awaiting: dict[int, ExitCallback] = {}

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
        if pid in self._foreign:
            self._loop.call_soon(callback, pid, self._foreign.pop(pid))
            return
        try:
            pidfd = os.pidfd_open(pid)
        except ProcessLookupError:
            if pid in self.adopted:
                self._awaiting[pid] = callback
                return
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
            # Not our child: a container init whose parent is still the runtime, or a program
            # an earlier server started, whose status the keeper collects.
            code: int | None = self._foreign.pop(pid, None)
            if code is None and pid in self.adopted:
                self.unwatch(pid)
                self._awaiting[pid] = entry[1]
                return
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

    def foreign_exit(self, pid: int, code: int) -> None:
        """The keeper reaped ``pid`` (not our child) with exit ``code``."""
        self.adopted.discard(pid)
        callback = self._awaiting.pop(pid, None)
        if callback is None:
            self._foreign[pid] = code
            if len(self._foreign) > MAX_FOREIGN:
                del self._foreign[next(iter(self._foreign))]
            return
        try:
            callback(pid, code)
        except Exception:
            log.exception("exit callback for pid %d failed", pid)

    def keeper_lost(self) -> None:
        """No keeper will report exit codes any more: those waited for are unknown."""
        self.adopted.clear()
        waiting, self._awaiting = self._awaiting, {}
        for pid, callback in waiting.items():
            try:
                callback(pid, None)
            except Exception:
                log.exception("exit callback for pid %d failed", pid)

    def foreign_codes(self) -> dict[int, int]:
        """Exit codes the keeper reported that nobody claimed yet (for an upgrade's next
        process)."""
        return dict(self._foreign)

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
