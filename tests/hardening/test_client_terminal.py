"""The user's terminal after an attach: left exactly as it was found (blocking mode included)."""

from __future__ import annotations

import sys

import pexpect
import pytest
from hardkit import Kit
from helpers import TMUXISH, wait_for

CHECK = (
    "import os, fcntl; fl = fcntl.fcntl(0, fcntl.F_GETFL); "
    "print('FLAGS', 'NONBLOCK' if fl & os.O_NONBLOCK else 'BLOCKING')"
)


@pytest.mark.parametrize(
    "mode",
    [
        "relay",
        "direct",
    ],
)
def test_attach_leaves_the_terminal_blocking(kit: Kit, mode: str) -> None:
    """After detach, the next program on the same terminal finds it blocking, as before."""
    sid = kit.cli.new("sh")
    env = dict(kit.cli.env)
    env["TMUXISH_ATTACH_MODE"] = mode
    script = f'{" ".join(TMUXISH)} -S {kit.path} attach {sid}; {sys.executable} -c "{CHECK}"'
    child = pexpect.spawn("sh", ["-c", script], env=env, timeout=15)
    kit.cli.children.append(child)
    wait_for(lambda: kit.cli.session(sid)["clients"] == 1, 10, "attached")
    child.send(b"\x10\x11")
    child.expect(r"FLAGS (\w+)")
    assert child.match.group(1) == b"BLOCKING"
