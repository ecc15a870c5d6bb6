"""The upgrade state: a server from before session kinds (state version 1) hands over to this
one, so its state is read into the current form."""

from __future__ import annotations

import os

import msgpack

from tmuxish.server import upgrade


def _memfd(state: dict[str, object]) -> int:
    fd = os.memfd_create("test-state", 0)
    os.write(fd, msgpack.packb(state, use_bin_type=True))
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def _session(sid: int, pid: int | None, fd: int | None, **extra: object) -> dict[str, object]:
    return {
        "id": sid,
        "name": None,
        "command": ["sh"],
        "pid": pid,
        "fd": fd,
        "cols": 80,
        "rows": 24,
        "policy": "latest",
        "exit_code": None,
        "child_done": pid is None,
        "created": "2026-01-01T00:00:00+00:00",
        "extra": extra,
        "screen": b"",
        "screen_was_on": True,
    }


def test_version_1_state_is_converted() -> None:
    old = {
        "version": 1,
        "listen_fd": 3,
        "lock_fd": 4,
        "next_id": 5,
        "generation": 2,
        "sessions": [
            _session(1, 100, 10),
            _session(2, None, 11, console_socket="/x.sock"),
            _session(
                3,
                300,
                12,
                runtime="runc",
                runtime_path="/usr/sbin/runc",
                container_id="web",
                bundle="/b",
            ),
            _session(4, 400, None),
        ],
        "listeners": [{"fd": 13, "path": "/p.sock", "persist": True, "name": "c"}],
    }
    state = upgrade.load_state(_memfd(old))
    assert state["version"] == upgrade.STATE_VERSION
    assert state["fds"] == [10, 11, 12, 13]
    kinds = [(s["kind"], s["fd"]) for s in state["sessions"]]
    assert kinds == [("program", 0), ("console", 1), ("container", 2), ("program", None)]
    assert state["sessions"][2]["container"] == {
        "runtime": "runc",
        "runtime_path": "/usr/sbin/runc",
        "container_id": "web",
        "bundle": "/b",
    }
    assert state["listeners"][0]["fd"] == 3
    assert (state["listen_fd"], state["lock_fd"], state["next_id"]) == (3, 4, 5)
