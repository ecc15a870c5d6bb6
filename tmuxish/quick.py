"""The fast path of the scripting commands: `ls`, `kill`, `send`, `capture`, `new -d`, `wait`,
`attach`.

Issues 6 and 15 ask these to cost at most 2x `python3 -c pass`: scripts call them hundreds of
times. Through argparse, pathlib, typing and the Python API they cost ~4.7x in a clean venv (111
ms against 23.5, measured): the imports alone were ~85 ms. Here a plain command line is run with
os, socket and msgpack only, through the same ``Connection`` the API uses (and a direct attach
through the same ``attach`` the full CLI uses, which waits with poll, not asyncio). Anything out
of the ordinary (an option not in the table, ``--help``, a remote host, no server, a socket
directory to create or refuse, any error before the request is written) is left to the full CLI,
which then does the whole job. Errors after that are reported through the full CLI's own
``tmuxish.cli.report``, so the two paths have one wording.

A command joins the fast path with one entry in ``COMMANDS``: which options and how many
arguments it takes, the request it sends, and what it prints.
"""

from __future__ import annotations

import os
import sys

#: Not typing.TYPE_CHECKING: importing typing (and re with it) costs `tmuxish ls` ~15 ms.
TYPE_CHECKING = False

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence
    from typing import Any

    from tmuxish.client.connection import Connection

    Request = tuple[str, dict[str, Any]]


class Unusual(Exception):
    """This command line is the full CLI's to run (it may have an error of its own to report)."""


class Line:
    """A command line as the fast path parsed it: options by flag, then the arguments."""

    __slots__ = ("args", "options")

    def __init__(self, options: dict[str, Any], args: list[str]) -> None:
        #: ``"-d": True`` for a flag, ``"-s": "web"`` for a value, a list for a repeatable one.
        self.options = options
        self.args = args

    def __repr__(self) -> str:
        return f"Line({self.options!r}, {self.args!r})"


class Spec:
    """One command of the fast path: its command line, its request, what it prints."""

    __slots__ = (
        "build",
        "command_tail",
        "converse",
        "fewest",
        "flags",
        "longs",
        "most",
        "needs",
        "show",
        "values",
        "waits",
    )

    def __init__(
        self,
        fewest: int,
        most: int | None,
        build: Callable[[Line], Request] | None,
        show: Callable[[Any], int] | None = None,
        flags: str = "",
        values: str = "",
        command_tail: bool = False,
        waits: bool = False,
        needs: str = "",
        longs: dict[str, bool] | None = None,
        converse: Callable[[Connection, int, str, Line, dict[str, Any]], int] | None = None,
    ) -> None:
        #: Fewest and most arguments (None: no upper bound).
        self.fewest, self.most = fewest, most
        #: The request for a parsed line (raises ``Unusual`` to leave it to the full CLI);
        #: None: the command has a ``run`` of its own (attach).
        self.build = build
        #: Print the result; the exit status. None: print nothing, exit 0.
        self.show = show
        #: Single-letter options: ``flags`` take no value; ``values`` take one ("e" repeats).
        self.flags, self.values = flags, values
        #: The first argument starts a program's command line, taken as it is (`new ... CMD`).
        self.command_tail = command_tail
        #: The reply comes when something ends (`wait`): no deadline, and asking again is
        #: harmless, so a server upgrade on the way is left to the full CLI to wait through.
        self.waits = waits
        #: Flags without which the line is the full CLI's (`new` without -d attaches).
        self.needs = needs
        #: Long options: name -> whether it takes a value (`--timeout 5`; `--timeout=5` is the
        #: full CLI's).
        self.longs = longs or {}
        #: What follows the request, for a command that streams (`run`): its exit status.
        self.converse = converse


def parse(argv: Sequence[str]) -> tuple[str | None, str | None, str, Line] | None:
    """(-S path, -L name, command, line) for a command line the fast path takes, else None."""
    socket_path = socket_name = None
    i = 0
    while i + 1 < len(argv) and argv[i] in ("-S", "-L"):
        if argv[i] == "-S":
            socket_path = argv[i + 1]
        else:
            socket_name = argv[i + 1]
        i += 2
    if i >= len(argv):
        return None
    command = ALIASES.get(argv[i], argv[i])
    spec = COMMANDS.get(command)
    if spec is None:
        return None
    options: dict[str, Any] = {}
    args: list[str] = []
    rest = list(argv[i + 1 :])
    j = 0
    while j < len(rest):
        arg = rest[j]
        if spec.command_tail and (args or arg == "--"):
            args += rest[j + 1 :] if arg == "--" and not args else rest[j:]
            break
        if not arg.startswith("-"):
            args.append(arg)
        elif len(arg) == 2 and arg[1] in spec.flags:
            options[arg] = True
        elif (len(arg) == 2 and arg[1] in spec.values) or spec.longs.get(arg):
            if j + 1 >= len(rest) or rest[j + 1].startswith("-"):
                return None  # argparse's error to report
            j += 1
            if arg == "-e":
                options.setdefault(arg, []).append(rest[j])
            else:
                options[arg] = rest[j]
        elif arg in spec.longs:
            options[arg] = True
        else:
            return None  # long options, --help, `--`, grouped flags: argparse's job
        j += 1
    if len(args) < spec.fewest or (spec.most is not None and len(args) > spec.most):
        return None
    if any(f"-{flag}" not in options for flag in spec.needs):
        return None
    return socket_path, socket_name, command, Line(options, args)


def target_arg(value: str | None) -> str | int | None:
    """A TARGET from the command line as the server takes it: an id if all ASCII digits.

    Too many digits for the wire's 64-bit integers stay a string: the server then says there
    is no such session, as for any other id it does not have."""
    if value is None:
        return None
    return int(value) if value.isascii() and value.isdigit() and len(value) < 19 else value


def with_final_newline(text: str) -> str:
    """Captured text as printed: ending in a newline unless empty."""
    return text if text.endswith("\n") or not text else text + "\n"


# -- settings -------------------------------------------------------------------------------------

#: The settings the fast path uses: option key -> (environment variable, built-in default), as in
#: tmuxish.config (tests/unit/test_quick.py holds the two together). Without a config file or
#: any of these variables, the defaults are the settings, and tmuxish.config is not imported.
DEFAULTS: dict[str, tuple[str, Any]] = {
    "detach_keys": ("TMUXISH_DETACH_KEYS", "ctrl-p,ctrl-q"),
    "detach_timeout": ("TMUXISH_DETACH_TIMEOUT", 0.5),
    "default_command": ("TMUXISH_DEFAULT_COMMAND", None),
    "default_size": ("TMUXISH_DEFAULT_SIZE", (80, 24)),
    "window_size": ("TMUXISH_WINDOW_SIZE", "latest"),
    "history_lines": ("TMUXISH_HISTORY_LINES", -1),
}


def config_file(env: Mapping[str, str] = os.environ) -> str:
    """Where tmuxish.config.config_path looks, without pathlib."""
    if env.get("TMUXISH_CONFIG"):
        return env["TMUXISH_CONFIG"]
    base = env.get("XDG_CONFIG_HOME") or os.path.join(env.get("HOME", "~"), ".config")
    return os.path.join(os.path.expanduser(base), "tmuxish", "config.toml")


def settings() -> dict[str, Any]:
    """The effective settings, as ``tmuxish.config.load()`` has them (a bad one: ``Unusual``)."""
    if not os.path.exists(config_file()) and not any(v in os.environ for v, _ in DEFAULTS.values()):
        return {key: default for key, (_, default) in DEFAULTS.items()}
    from tmuxish import config
    from tmuxish.errors import TmuxishError

    try:
        loaded = config.load()
    except TmuxishError as exc:
        raise Unusual from exc  # the full CLI says what is wrong with it
    return {key: loaded[key] for key in DEFAULTS}


# -- requests -------------------------------------------------------------------------------------


def request(command: str, line: Line) -> Request:
    """The server request the full CLI makes for this command line."""
    build = COMMANDS[command].build
    assert build is not None
    return build(line)


def _ls(line: Line) -> Request:
    return "ls", {}


def _kill(line: Line) -> Request:
    return "kill", {"target": target_arg(line.args[0]), "signal": "HUP"}


def _send(line: Line) -> Request:
    from tmuxish.keynames import send_args

    return "send", {"target": line.args[0], "mark": True, **send_args(line.args[1:])}


def _capture(line: Line) -> Request:
    target = target_arg(line.args[0] if line.args else None)
    return "capture", {"target": target, "history": False, "escapes": False}


def _wait(line: Line) -> Request:
    return "wait", {"target": target_arg(line.args[0])}


def _size(value: str | None, default: int) -> int:
    if value is None:
        return default
    if not (value.isascii() and value.isdigit() and 0 < int(value) <= 10000):
        raise Unusual  # argparse or `new` has the words for it
    return int(value)


def _new(line: Line) -> Request:
    """`new -d`: what tmuxish.client.commands.cmd_new sends for a detached local session."""
    from tmuxish.sockets import current_umask

    opts = line.options
    if any(opts.get(flag) == "" for flag in ("-s", "-c")):
        raise Unusual  # the full CLI's words for an empty value
    config = settings()
    argv = list(line.args)
    if not argv:
        argv = list(config["default_command"] or [os.environ.get("SHELL") or "/bin/sh"])
    extra: dict[str, str] = {}
    for item in opts.get("-e", ()):
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise Unusual
        extra[key] = value
    env = dict(os.environ) | extra
    env.pop("TMUXISH", None)
    cols, rows = config["default_size"]
    return "new", {
        "command": argv,
        "name": opts.get("-s"),
        "cwd": os.path.abspath(opts["-c"]) if opts.get("-c") else os.getcwd(),
        "cols": _size(opts.get("-x"), cols),
        "rows": _size(opts.get("-y"), rows),
        "env": env,
        "replace_env": True,
        "window_size": config["window_size"],
        "log": None,
        "log_max": None,
        "umask": current_umask(),
    }


def _run(line: Line) -> Request:
    """`run`: what tmuxish.client.commands.cmd_run asks through SyncClient.run."""
    from tmuxish.client.runstream import run_args
    from tmuxish.errors import UsageError

    timeout = None
    if "--timeout" in line.options:
        try:
            timeout = float(line.options["--timeout"])
        except ValueError:
            raise Unusual from None  # argparse has the words for it
        if not timeout >= 0:  # nan too
            raise Unusual  # cmd_run has them
    try:
        return "run", run_args(target_arg(line.options.get("-t")), line.args, timeout, None)
    except UsageError:
        raise Unusual from None  # a blank command line: cmd_run says so


def _converse_run(conn: Connection, req_id: int, path: str, line: Line, args: Any) -> int:
    from tmuxish.client.connection import Connection

    raw = bool(line.options.get("--raw"))
    return stream_run(conn, args, raw, lambda: Connection.open(path), req_id)


def stream_run(
    conn: Connection,
    args: dict[str, Any],
    raw: bool,
    reconnect: Callable[[], Connection],
    req_id: int | None = None,
) -> int:
    """`tmuxish run` (the fast path and the full CLI's cmd_run): the command's output to stdout
    as it comes, then its exit status; 124 on timeout, 125 if unknown, and 130 on Ctrl-C,
    which also goes to the session (through ``reconnect``): the user interrupts the command,
    not just the waiting for it. ``req_id``: the request went with the greeting."""
    from tmuxish.client.runstream import converse, timeout_text
    from tmuxish.errors import TmuxishError

    out = sys.stdout.buffer

    def write(data: bytes) -> None:
        out.write(data)
        out.flush()

    try:
        result = converse(conn, args, write, raw, req_id)
    except KeyboardInterrupt:
        try:
            with reconnect() as other:
                target = args["target"]
                if target is None:
                    target = other.request("get", target=None)["id"]
                other.request("send", target=target, mark=True, data=b"\x03")
        except TmuxishError as exc:
            return _report(exc)
        return 130
    except (TmuxishError, OSError) as exc:
        # OSError: our output failed (`run ... | head -1`, `> /dev/full`; the connection's
        # own errors come as TmuxishError); the connection closes with us, which interrupts
        # the command, as ssh's end does.
        return _report(exc)
    if result.get("timed_out"):
        text = timeout_text(result.get("session", args["target"]), args.get("timeout"))
        sys.stderr.write(f"tmuxish: {text}\n")
        return 124  # as timeout(1)
    if result.get("session_exited"):
        sys.stderr.write("tmuxish: the session ended during the command\n")
    code = result.get("exit_code")
    return 125 if code is None else int(code)


# -- output ---------------------------------------------------------------------------------------


def _show_ls(result: Any) -> int:
    # The header even with no sessions, as tmux ls does.
    from tmuxish.client.listing import format_table

    sys.stdout.write(format_table(result))
    return 0


def _show_capture(result: Any) -> int:
    sys.stdout.write(with_final_newline(str(result)))
    return 0


def _show_id(result: Any) -> int:
    sys.stdout.write(f"{result['id']}\n")
    return 0


def _show_exit_code(result: Any) -> int:
    return int(result)


#: The fast path's commands. `new` and `wait` mirror tmuxish.client.commands: `new -d` with -s -c
#: -x -y -e and a command; `attach TARGET` (direct attach only) with -r; `run` with -t,
#: --timeout and --raw (not --stdin).
COMMANDS: dict[str, Spec] = {
    "ls": Spec(0, 0, _ls, _show_ls),
    "kill": Spec(1, 1, _kill),
    "send": Spec(2, None, _send),
    "capture": Spec(0, 1, _capture, _show_capture),
    "new": Spec(0, None, _new, _show_id, flags="d", values="scxye", command_tail=True, needs="d"),
    "wait": Spec(1, 1, _wait, _show_exit_code, waits=True),
    "attach": Spec(1, 1, None, flags="r"),
    "run": Spec(
        1,
        None,
        _run,
        values="t",
        command_tail=True,
        longs={"--timeout": True, "--raw": False},
        converse=_converse_run,
    ),
}
ALIASES = {"a": "attach", "list": "ls"}


# -- running --------------------------------------------------------------------------------------


def entry() -> None:
    """The `tmuxish` command: this fast path, else the full CLI (tmuxish.cli, imported only
    then); exit without interpreter teardown once output is flushed.

    Tearing down an interpreter that loaded uvloop and asyncio costs tens of milliseconds,
    which users feel as a slow detach; nothing tmuxish holds needs finalizers at exit.
    """
    if sys.stdin is None or sys.stdout is None or sys.stderr is None:
        _stand_in_for_closed_std_fds()
    try:
        code = run(sys.argv[1:])
        if code is None:
            from tmuxish.cli import main

            code = main()
    except KeyboardInterrupt:
        code = 130  # as the full CLI: Ctrl-C while waiting for the server is no error
    except SystemExit as exc:  # argparse: --help, --version, usage errors
        code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except OSError as exc:  # BrokenPipeError, ENOSPC (`> /dev/full`), EIO
        code = code or _report(exc)
    os._exit(code)


def _stand_in_for_closed_std_fds() -> None:
    """/dev/null on whichever of fds 0-2 the caller closed (`tmuxish ls >&-`), as OpenSSH's
    sanitise_stdfd does: else the first socket or terminal opened takes that number, and
    output meant for the user goes into it. Python leaves such a stream None; output to a
    closed stdout becomes a BrokenPipeError saying so (``tmuxish.cli.report``), as `ls >&-`
    is an error for ls(1) too, while commands that print nothing run as usual."""
    import errno
    import io

    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)

    class Closed(io.RawIOBase):
        def writable(self) -> bool:
            return True

        def write(self, data: Any) -> int:
            raise BrokenPipeError(errno.EBADF, "standard output is closed")

    if sys.stdin is None:
        sys.stdin = open(0, closefd=False)  # noqa: SIM115 - for the whole process
    if sys.stdout is None:
        sys.stdout = io.TextIOWrapper(io.BufferedWriter(Closed()), write_through=True)
    if sys.stderr is None:
        sys.stderr = open(2, "w", closefd=False)  # noqa: SIM115 - for the whole process


def run(argv: Sequence[str]) -> int | None:
    """Run a plain scripting command; None: not one, or not plain sailing (use the full CLI).

    Only a failure before the request is written falls back: after that the server may have
    acted on it, and asking again would, say, type `send`'s keys twice. A server that accepts
    the connection but does not answer is reported at once too: the full CLI would wait for it
    just as long again.
    """
    if os.environ.get("TMUXISH_HOST"):
        return None
    if os.environ.get("TMUXISH") and argv and argv[-1] == "capture":
        return None  # inside a session, no target means this one: the full CLI knows which
    parsed = parse(argv)
    if parsed is None:
        return None
    socket_path, socket_name, command, line = parsed
    spec = COMMANDS[command]
    from tmuxish.errors import ServerGone, TmuxishError
    from tmuxish.sockets import is_default_dir, private_dir_problem, socket_location

    try:
        path = socket_location(socket_path, socket_name)
        directory = os.path.dirname(path)
        if is_default_dir(directory) and private_dir_problem(directory):
            return None  # the full CLI creates it, or says why it will not use it
        if spec.build is None:
            config = settings()
            conn = _open_with_terminal(path)
            if conn is None:
                return None
        else:
            name, args = spec.build(line)
            from tmuxish.client.connection import Connection

            conn = Connection(Connection.dial(path))
    except ServerGone as exc:
        if isinstance(exc.__cause__, TimeoutError):
            return _report(exc)
        return None
    except (TmuxishError, OSError, Unusual):
        return None
    if spec.build is None:
        return _attach(conn, path, line, config)
    with conn:
        try:
            req_id = conn.greet_with(name, args)
        except OSError:
            return None  # not all of it reached the server: it cannot have acted on it
        except TmuxishError as exc:
            from tmuxish.errors import ServerUpgrading

            if isinstance(exc, ServerUpgrading):
                return None  # it greeted with the upgrade, dropping the request: ask again
            return _report(exc)
        if spec.converse is not None:
            return spec.converse(conn, req_id, path, line, args)
        if spec.waits:
            conn.sock.settimeout(None)  # as long as the program runs
        try:
            result = conn.reply(req_id)
        except TmuxishError as exc:
            from tmuxish.errors import ServerUpgrading

            if spec.waits and isinstance(exc, ServerUpgrading):
                return None  # waiting has no effect to repeat: the full CLI waits on
            return _report(exc)
    try:
        return spec.show(result) if spec.show is not None else 0
    except OSError as exc:  # `tmuxish ls | head -1`, `> /dev/full`: as the full CLI does
        return _report(exc)


def inside_session(socket_path: str) -> int | None:
    """The session id we run inside, if it belongs to the server on ``socket_path``
    (TMUXISH=socket,id in the environment)."""
    path, _, sid = os.environ.get("TMUXISH", "").rpartition(",")
    sid_arg = target_arg(sid)
    if isinstance(sid_arg, int) and path and os.path.abspath(path) == socket_path:
        return sid_arg
    return None  # not a session id of ours: as outside any session


def _open_with_terminal(path: str) -> Connection | None:
    """A connection handing the server our terminal (direct attach); None: relay (the full
    CLI's, with asyncio), or no terminal at all (the full CLI has the words for it)."""
    if not os.isatty(0):
        return None
    from tmuxish.client.attach import terminal_for_server
    from tmuxish.client.connection import Connection

    fd = terminal_for_server()
    if fd is None:
        return None
    try:
        return Connection.open(path, pass_fds=(fd,))
    finally:
        os.close(fd)


def _attach(conn: Connection, path: str, line: Line, config: dict[str, Any]) -> int:
    from tmuxish.client.attach import attach
    from tmuxish.errors import TmuxishError
    from tmuxish.keys import parse_detach_keys

    try:
        with conn:
            result = attach(
                conn,
                line.args[0],
                detach_keys=parse_detach_keys(config["detach_keys"]),
                detach_timeout=config["detach_timeout"],
                readonly=bool(line.options.get("-r")),
                history=config["history_lines"],
                inside=inside_session(path),
                reconnect=lambda direct: _reconnect(path, direct),
            )
    except TmuxishError as exc:
        return _report(exc)
    return result.status


def _reconnect(path: str, direct: bool) -> Connection:
    """Connect again after a server upgrade, waiting for the new server to answer."""
    import time

    from tmuxish.client.connection import Connection
    from tmuxish.errors import ServerNotRunning

    deadline = time.monotonic() + 15.0
    while True:
        try:
            conn = _open_with_terminal(path) if direct else None
            return conn if conn is not None else Connection.open(path)
        except ServerNotRunning:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.05)


def _report(exc: BaseException) -> int:
    from tmuxish.cli import report

    return report(exc)
