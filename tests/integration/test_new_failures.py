"""A `new` that fails after its program was spawned leaves nothing behind: not the program, not
a listed session, not an id used up."""

from __future__ import annotations

import os
from typing import Any

import pytest
from helpers import DEADLINE, pid_alive, proto_connect, wait_for

from tmuxish.server.daemon import Server
from tmuxish.server.session import Session


class Boom(ValueError):
    pass


@pytest.mark.parametrize("where", ["registry", "start"])
async def test_a_failure_after_the_spawn_kills_and_forgets_the_program(
    server: Server, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    """Failed before the fix: with a failure in the registry's add (the keeper's record of a
    command that could not be encoded, for one), the session stayed listed, never started,
    and its program ran on; with a failure other than OSError in start, the same."""
    spawned: list[int] = []
    registry = server.registry
    real_add = type(registry).add
    real_start = Session.start

    def add(self: Any, session: Session) -> None:
        real_add(self, session)
        if session.pid is not None:
            spawned.append(session.pid)
        if where == "registry":
            raise Boom("the keeper refused the record")

    def start(self: Session) -> None:
        if where == "start":
            raise Boom("no watcher")
        real_start(self)

    monkeypatch.setattr(type(registry), "add", add)
    monkeypatch.setattr(Session, "start", start)
    client = await proto_connect(server.socket_path)
    try:
        with pytest.raises(RuntimeError, match="bad arguments for new"):
            await client.request("new", command=["sleep", "1000"], name="doomed")
        assert spawned, "the program was never spawned: the test tests nothing"
        assert [s.id for s in server.registry] == []
        wait_for(lambda: not pid_alive(spawned[0]), timeout=DEADLINE, what="the program to end")
        with pytest.raises(ChildProcessError):
            os.waitpid(spawned[0], os.WNOHANG)  # reaped, not a zombie
        monkeypatch.undo()
        reply = await client.request("new", command=["sleep", "1000"], name="doomed")
        assert reply["id"] == 1  # the failed request used no id
    finally:
        client.close()
