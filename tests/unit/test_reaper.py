"""The reaper's sweep of unwatched children, and children held back from it."""

from __future__ import annotations

import os
import time

import pytest

from tmuxish.server.reaper import Reaper


def _exited_child(code: int) -> int:
    pid = os.fork()
    if pid == 0:
        os._exit(code)
    deadline = time.monotonic() + 10
    while True:  # a zombie once /proc says so; waitpid would reap it
        with open(f"/proc/{pid}/stat") as f:
            if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                return pid
        assert time.monotonic() < deadline, "child did not exit"
        time.sleep(0.001)


def test_sweep_reaps_unwatched_children() -> None:
    pid = _exited_child(7)
    Reaper().sweep()
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def test_a_held_child_keeps_its_status_through_a_sweep() -> None:
    # A container init waiting to be re-parented to the server is held, not watched.
    reaper = Reaper()
    pid = _exited_child(7)
    reaper.hold(pid)
    reaper.sweep()
    wpid, status = os.waitpid(pid, os.WNOHANG)
    assert wpid == pid and os.waitstatus_to_exitcode(status) == 7


def test_a_released_child_is_swept_again() -> None:
    reaper = Reaper()
    pid = _exited_child(3)
    reaper.hold(pid)
    reaper.release(pid)
    reaper.sweep()
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
