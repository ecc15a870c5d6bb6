"""The everyday commands' fast path: which command lines it takes, and that it asks the server
exactly what the full CLI would."""

from __future__ import annotations

import pytest

from tmuxish import quick
from tmuxish.cli import build_parser


@pytest.mark.parametrize(
    "argv",
    [
        ["ls"],
        ["-S", "/tmp/x/s", "ls"],
        ["-L", "work", "kill", "3"],
        ["send", "web", "make", "Enter"],
        ["send", "1", "Up", "C-c"],
        ["capture"],
        ["capture", "web"],
        ["capture", "7"],
    ],
)
def test_plain_command_lines_take_the_fast_path(argv: list[str]) -> None:
    parsed = quick.parse(argv)
    assert parsed is not None
    socket_path, socket_name, command, rest = parsed
    args = build_parser().parse_args(argv)
    assert (socket_path, socket_name, command) == (args.socket_path, args.socket_name, args.command)
    # The request is the one the full CLI sends through the API for the same line.
    name, request = quick.request(command, rest)
    assert name == command
    if command == "kill":
        assert request == {"target": args.target, "signal": args.signal}
    elif command == "send":
        from tmuxish.keynames import send_args

        assert request == {"target": args.target, **send_args(list(args.keys), args.literal)}
    elif command == "capture":
        target = int(args.target) if args.target and args.target.isdigit() else args.target
        assert request == {"target": target, "history": args.history, "escapes": args.escapes}


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["ls", "--json"],
        ["ls", "extra"],
        ["kill", "-s", "TERM", "3"],
        ["kill"],
        ["send", "-l", "1", "text"],
        ["send", "1"],
        ["capture", "-e", "1"],
        ["capture", "1", "2"],
        ["ls", "--help"],
        ["-H", "ssh://box", "ls"],
        ["-S"],
        ["attach", "1"],
        ["new", "--", "sh"],
    ],
)
def test_anything_else_goes_to_the_full_cli(argv: list[str]) -> None:
    assert quick.parse(argv) is None


def test_a_remote_host_in_the_environment_goes_to_the_full_cli(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TMUXISH_HOST", "ssh://box")
    assert quick.run(["ls"]) is None


def test_no_server_goes_to_the_full_cli(tmp_path: object) -> None:
    assert quick.run(["-S", f"{tmp_path}/none", "ls"]) is None
