"""The fast path of the everyday scripting commands: `ls`, `kill`, `send`, `capture`.

Issue 6 asks these to cost at most 2.5x `python3 -c pass`. Through argparse, pathlib, typing and
the Python API they cost ~4.7x in a clean venv (111 ms against 23.5, measured): the imports alone
were ~85 ms. Here a plain command line is run with os, socket and msgpack only, through the same
``Connection`` the API uses. Anything out of the ordinary (an option, ``--help``, a remote host,
no server, a socket directory to create or refuse, any error before the request is written) is
left to the full CLI, which then does the whole job. Errors after that are reported through the
full CLI's own ``tmuxish.cli.report``, so the two paths have one wording.
"""

from __future__ import annotations

import os
import sys

#: Not typing.TYPE_CHECKING: importing typing (and re with it) costs `tmuxish ls` ~15 ms.
TYPE_CHECKING = False

if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any

#: Command -> (fewest, most) positional arguments; None: no upper bound.
ARITY: dict[str, tuple[int, int | None]] = {
    "ls": (0, 0),
    "kill": (1, 1),
    "send": (2, None),
    "capture": (0, 1),
}


def parse(argv: Sequence[str]) -> tuple[str | None, str | None, str, list[str]] | None:
    """(-S path, -L name, command, arguments) for a plain command line, else None."""
    socket_path = socket_name = None
    i = 0
    while i + 1 < len(argv) and argv[i] in ("-S", "-L"):
        if argv[i] == "-S":
            socket_path = argv[i + 1]
        else:
            socket_name = argv[i + 1]
        i += 2
    if i >= len(argv) or argv[i] not in ARITY:
        return None
    command, rest = argv[i], list(argv[i + 1 :])
    if any(arg.startswith("-") for arg in rest):
        return None  # options, --help, `--`: argparse's job
    fewest, most = ARITY[command]
    if len(rest) < fewest or (most is not None and len(rest) > most):
        return None
    return socket_path, socket_name, command, rest


def target_arg(value: str | None) -> str | int | None:
    """A TARGET from the command line as the server takes it: an id if all digits."""
    if value is None:
        return None
    return int(value) if value.isdigit() else value


def with_final_newline(text: str) -> str:
    """Captured text as printed: ending in a newline unless empty."""
    return text if text.endswith("\n") or not text else text + "\n"


def request(command: str, rest: list[str]) -> tuple[str, dict[str, Any]]:
    """The server request the full CLI makes for this command line."""
    if command == "ls":
        return "ls", {}
    if command == "kill":
        return "kill", {"target": rest[0], "signal": "HUP"}
    if command == "send":
        from tmuxish.keynames import send_args

        return "send", {"target": rest[0], **send_args(rest[1:])}
    target = target_arg(rest[0] if rest else None)
    return "capture", {"target": target, "history": False, "escapes": False}


def run(argv: Sequence[str]) -> int | None:
    """Run a plain everyday command; None: not one, or not plain sailing (use the full CLI).

    Only a failure before the request is written falls back: after that the server may have
    acted on it, and asking again would, say, type `send`'s keys twice. A server that accepts
    the connection but does not answer is reported at once too: the full CLI would wait for it
    just as long again.
    """
    if os.environ.get("TMUXISH_HOST"):
        return None
    parsed = parse(argv)
    if parsed is None:
        return None
    socket_path, socket_name, command, rest = parsed
    from tmuxish.client.connection import Connection
    from tmuxish.errors import ServerGone, TmuxishError
    from tmuxish.sockets import is_default_dir, private_dir_problem, socket_location

    try:
        path = socket_location(socket_path, socket_name)
        directory = os.path.dirname(path)
        if is_default_dir(directory) and private_dir_problem(directory):
            return None  # the full CLI creates it, or says why it will not use it
        name, args = request(command, rest)
        conn = Connection.open(path)
    except ServerGone as exc:
        if isinstance(exc.__cause__, TimeoutError):
            return _report(exc)
        return None
    except (TmuxishError, OSError):
        return None
    with conn:
        try:
            req_id = conn.send_request(name, args)
        except TmuxishError:
            return None  # not all of it reached the server: it cannot have acted on it
        try:
            result = conn.reply(req_id)
        except TmuxishError as exc:
            return _report(exc)
    try:
        if command == "ls" and result:
            from tmuxish.client.listing import format_table

            sys.stdout.write(format_table(result))
        elif command == "capture":
            sys.stdout.write(with_final_newline(str(result)))
    except BrokenPipeError:
        return 1  # `tmuxish ls | head -1`: as the full CLI does
    return 0


def _report(exc: BaseException) -> int:
    from tmuxish.cli import report

    return report(exc)
