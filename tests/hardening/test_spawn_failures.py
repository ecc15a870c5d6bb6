"""A session that cannot be fully set up is undone completely: no entry, no used-up id, no
program left running, and the client gets one line."""

from __future__ import annotations

import errno
from pathlib import Path
from typing import Any

import pytest
from helpers import pid_alive, proto_connect, serving, wait_for


async def test_a_session_whose_watcher_cannot_start_is_undone(
    sock_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with serving(sock_dir / "s") as srv:
        started: list[int] = []
        real_watch = srv.reaper.watch

        def out_of_fds(pid: int, callback: Any) -> None:
            started.append(pid)
            raise OSError(errno.EMFILE, "Too many open files")

        monkeypatch.setattr(srv.reaper, "watch", out_of_fds)
        c = await proto_connect(srv.socket_path)
        try:
            with pytest.raises(RuntimeError, match=r"^error: .*Too many open files$"):
                await c.request("new", command=["sleep", "100"], cols=80, rows=24)
            assert len(srv.registry) == 0
            assert started and not pid_alive(started[0])
            monkeypatch.setattr(srv.reaper, "watch", real_watch)
            info = await c.request("new", command=["sleep", "100"], cols=80, rows=24)
            assert info["id"] == 1
            await c.request("kill", target=1, signal="KILL")
            wait_for(lambda: not pid_alive(info["pid"]), 10, "the program to end")
        finally:
            c.close()
