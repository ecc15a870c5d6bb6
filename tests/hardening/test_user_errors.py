"""Mistakes a user can make get one line that says what is wrong, never a traceback."""

from __future__ import annotations

import pytest
from helpers import Cli


def one_line_error(proc: object) -> str:
    stderr: str = proc.stderr  # type: ignore[attr-defined]
    assert proc.returncode != 0  # type: ignore[attr-defined]
    assert "Traceback" not in stderr and "internal server error" not in stderr, stderr
    assert len(stderr.strip().splitlines()) == 1, stderr
    return stderr


@pytest.mark.parametrize("sig", ["65", "99", "9999", "4294967296", "0", "-1", "NOPE", "SIG"])
def test_kill_with_a_bad_signal_is_one_line(cli: Cli, sig: str) -> None:
    sid = cli.new("sleep", "100")
    stderr = one_line_error(cli.run("kill", "-s", sig, str(sid), check=False))
    assert "signal" in stderr
    assert cli.session(sid)["status"] == "running"
