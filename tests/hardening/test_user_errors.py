"""Mistakes a user can make get one line that says what is wrong, never a traceback."""

from __future__ import annotations

import os
from pathlib import Path

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


def test_ls_shows_control_characters_from_command_lines_escaped(cli: Cli) -> None:
    # $0 of `sh -c` is free text: it shows in the command column.
    cli.new("sh", "-c", "sleep 100", "x\x1b]0;owned\x07\x1b[2J\x9b6n")
    out = cli.run("ls").stdout
    assert not any((ord(c) < 0x20 and c != "\n") or 0x7F <= ord(c) < 0xA0 for c in out), repr(out)
    assert "x\\x1b]0;owned\\x07" in out


@pytest.mark.parametrize(
    "content",
    [b"\xff\xfe\x00\x01binary", b"a = " + b"[" * 100_000 + b"]" * 100_000, b"x = 1\x00"],
    ids=["binary", "nested", "nul"],
)
def test_a_broken_config_file_is_one_line(cli: Cli, tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "config.toml"
    path.write_bytes(content)
    cli.env["TMUXISH_CONFIG"] = str(path)
    assert str(path) in one_line_error(cli.run("config", "--show", check=False, timeout=20))


def test_a_fifo_config_file_is_one_line_not_a_hang(cli: Cli, tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    os.mkfifo(path)
    cli.env["TMUXISH_CONFIG"] = str(path)
    stderr = one_line_error(cli.run("config", "--show", check=False, timeout=20))
    assert "not a regular file" in stderr
