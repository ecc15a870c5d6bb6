"""The keeper's pieces on their own: its hand-made refusal, its fd bookkeeping, and the Reaper's
exit codes for programs that are the keeper's children (issue 13)."""

from __future__ import annotations

import asyncio
import os
import subprocess

import msgpack
import pytest

from tmuxish import protocol
from tmuxish.server import keeper
from tmuxish.server.reaper import Reaper


@pytest.mark.parametrize("length", [0, 10, 255, 256, 5000])
def test_refusal_is_a_protocol_error_message(length: int) -> None:
    text = "x" * length
    decoded = msgpack.unpackb(keeper.refusal(text), raw=False)
    assert decoded == [protocol.ERROR, None, "error", text]


def test_exit_codes_as_a_shell_reports_them() -> None:
    for argv, code, how in [
        (["sh", "-c", "exit 7"], 7, "exited with status 7"),
        (["sh", "-c", "kill -9 $$"], 137, "killed by SIGKILL (9)"),
    ]:
        pid = os.posix_spawnp(argv[0], argv, os.environ)
        _, status = os.waitpid(pid, 0)
        assert (keeper.exit_code(status), keeper.describe(status)) == (code, how)


def test_held_fds_are_replaced_and_released() -> None:
    k = keeper.Keeper("/nonexistent/s", ["true"])
    r, w = os.pipe()
    try:
        k.on_message(b"Hpty:1", [r])
        assert k.held == {"pty:1": r} and os.get_inheritable(r)
        again = os.dup(w)
        k.on_message(b"Hpty:1", [again])
        assert k.held == {"pty:1": again}
        with pytest.raises(OSError):
            os.fstat(r)  # the replaced duplicate was closed
        k.on_message(b"Rpty:1", [])
        assert k.held == {}
        with pytest.raises(OSError):
            os.fstat(again)
        stray = os.dup(w)
        k.on_message(b"Q", [stray])  # unknown: its fds are closed, nothing else happens
        with pytest.raises(OSError):
            os.fstat(stray)
    finally:
        os.close(w)
        for fd in (k.wake_r, k.wake_w):
            os.close(fd)


def test_what_the_keeper_carries_across_its_own_exec() -> None:
    """``saved`` (JSON, into the next keeper program) and ``resumed`` are a round trip, and a
    ``U`` makes the server's next exit an upgrade, not a stop."""
    import json
    import socket

    k = keeper.Keeper("/nonexistent/s", ["python3", "-m", "tmuxish", "server"])
    listen = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    r, w = os.pipe()
    resumed = None
    try:
        k.listen, k.lock_fd = listen, w
        k.held, k.state_fd, k.exits, k.generation = {"pty:3": r}, None, {42: 7}, 4
        k.restarts = [{"time": 1.5, "reason": "killed by SIGKILL (9)"}]
        k.on_message(b"U", [])
        assert k.upgrade_pending
        resumed = keeper.Keeper.resumed(json.loads(json.dumps(k.saved())))
        assert resumed.listen is not None and resumed.listen.fileno() == listen.fileno()
        assert (resumed.socket_path, resumed.server_argv, resumed.lock_fd) == (
            k.socket_path,
            k.server_argv,
            w,
        )
        assert (resumed.held, resumed.state_fd, resumed.exits, resumed.generation) == (
            {"pty:3": r},
            None,
            {42: 7},
            4,
        )
        assert resumed.restarts == k.restarts and resumed.upgrading
        assert not resumed.upgrade_pending
    finally:
        if resumed is not None:
            assert resumed.listen is not None
            resumed.listen.detach()  # the same fd as listen
            for fd in (resumed.wake_r, resumed.wake_w):
                os.close(fd)
        listen.close()
        for fd in (r, w, k.wake_r, k.wake_w):
            os.close(fd)


def _grandchild(script: str) -> int:
    """A process that is not our child (its parent exits at once)."""
    out = subprocess.run(
        ["sh", "-c", f"sh -c '{script}' >/dev/null 2>&1 & echo $!"],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(out.stdout)


async def test_an_adopted_program_exit_code_comes_from_the_keeper() -> None:
    loop = asyncio.get_running_loop()
    reaper = Reaper()
    reaper.start(loop)
    got: asyncio.Future[tuple[int, int | None]] = loop.create_future()
    pid = _grandchild("read x < /dev/null; sleep 0.2")
    reaper.adopted.add(pid)
    reaper.watch(pid, lambda p, c: got.set_result((p, c)))
    # It ends; only its parent (the keeper, here nobody) knows the code: the Reaper waits.
    deadline = loop.time() + 5
    while pid not in reaper._awaiting:
        assert loop.time() < deadline, "the Reaper never noticed the exit"
        await asyncio.sleep(0.01)
    assert not got.done()
    reaper.foreign_exit(pid, 5)
    assert await asyncio.wait_for(got, 5) == (pid, 5)
    # Reported before anyone watches: the code is kept for the watcher.
    reaper.foreign_exit(424242, 9)
    early: asyncio.Future[tuple[int, int | None]] = loop.create_future()
    reaper.watch(424242, lambda p, c: early.set_result((p, c)))
    assert await asyncio.wait_for(early, 5) == (424242, 9)
    reaper.stop()


async def test_a_foreign_pid_not_adopted_reports_at_once() -> None:
    loop = asyncio.get_running_loop()
    reaper = Reaper()
    reaper.start(loop)
    got: asyncio.Future[tuple[int, int | None]] = loop.create_future()
    pid = _grandchild("sleep 0.2")
    reaper.watch(pid, lambda p, c: got.set_result((p, c)))
    assert await asyncio.wait_for(got, 5) == (pid, None)
    reaper.stop()
