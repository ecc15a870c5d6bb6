"""Bad input through the real CLI: one line on stderr, a non-zero exit, never a traceback, and
nothing already running is lost; the fast path (tmuxish/quick.py) and the full CLI agree."""

from __future__ import annotations

import subprocess
import sys

import pytest
from helpers import Cli

#: The full CLI alone, without the fast path in front of it.
FULL = [sys.executable, "-P", "-c", "import sys; from tmuxish.cli import main; sys.exit(main())"]


def both(cli: Cli, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``args`` through the fast path and through the full CLI; they must answer alike."""
    fast = cli.run(*args, check=False)
    full = subprocess.run(
        [*FULL, "-S", str(cli.socket_path), *args],
        capture_output=True,
        text=True,
        env=cli.env,
        timeout=30,
        stdin=subprocess.DEVNULL,
    )
    assert (fast.returncode, fast.stderr) == (full.returncode, full.stderr), (fast, full)
    return fast


def one_line_error(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode != 0, proc
    assert proc.stderr.startswith("tmuxish: ") and proc.stderr.count("\n") == 1, proc.stderr
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr, proc.stderr
    return proc.stderr


@pytest.mark.parametrize("command", ["kill", "wait", "capture", "rm", "send"])
@pytest.mark.parametrize("target", ["", "99999999999999999999", "\u00b2", "\u0661"])
def test_a_bad_target_names_no_session(cli: Cli, command: str, target: str) -> None:
    """An empty TARGET (a script's unset variable), an id too big for the wire, and digits that
    are not ASCII name no session: docker refuses them; none may mean "the most recent"."""
    sid = cli.new("sleep", "1000", name="web")
    args = (command, target, "x") if command == "send" else (command, target)
    err = one_line_error(both(cli, *args))
    assert "no session" in err, err
    assert cli.session(sid)["status"] == "running"
