"""What each CLI command does, on top of the blocking client connection."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tmuxish import config
from tmuxish.client.autostart import connect
from tmuxish.client.connection import Connection
from tmuxish.client.listing import format_table
from tmuxish.errors import UsageError
from tmuxish.paths import current_umask, resolve_socket
from tmuxish.quick import target_arg, with_final_newline

if TYPE_CHECKING:
    from tmuxish.client.api import SyncClient
    from tmuxish.client.remote import SshHost


def _socket(args: argparse.Namespace) -> Path:
    return resolve_socket(args.socket_path, args.socket_name)


def _host(args: argparse.Namespace) -> SshHost | None:
    """The remote host of -H (else $TMUXISH_HOST), or None for the local server."""
    value = getattr(args, "host", None) or os.environ.get("TMUXISH_HOST")
    if not value:
        return None
    from tmuxish.client.remote import parse_host

    return parse_host(value)


def _connect(args: argparse.Namespace, start: bool, terminal: bool = False) -> Connection:
    """A connection to the server the command line names: local, or through ssh with -H.

    ``terminal``: hand a local server our terminal (direct attach); a remote one relays.
    """
    host = _host(args)
    if host is not None:
        from tmuxish.client.remote import dial

        remote_args = []
        if args.socket_path:
            remote_args += ["-S", args.socket_path]
        if args.socket_name:
            remote_args += ["-L", args.socket_name]
        return dial(host, remote_args, start)
    socket_path = _socket(args)
    if terminal:
        return _connect_with_terminal(socket_path, start)
    return connect(socket_path, start=start)


def _reconnect(args: argparse.Namespace, direct: bool) -> Connection:
    """Connect again after a server upgrade, waiting for the new server to answer."""
    import time

    from tmuxish.errors import ServerNotRunning

    deadline = time.monotonic() + 15.0
    while True:
        try:
            return _connect(args, start=False, terminal=direct)
        except ServerNotRunning:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.05)


def _out(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def _inside(args: argparse.Namespace) -> int | None:
    """The session id we run inside, if it belongs to this server (TMUXISH=socket,id)."""
    if _host(args) is not None:
        return None
    socket_path = _socket(args)
    value = os.environ.get("TMUXISH", "")
    path, _, sid = value.rpartition(",")
    if sid.isdigit() and path and os.path.abspath(path) == str(socket_path):
        return int(sid)
    return None


def default_command(settings: config.Settings) -> list[str]:
    configured = settings["default_command"]
    if configured:
        return list(configured)
    return [os.environ.get("SHELL") or "/bin/sh"]


def _new_size(args: argparse.Namespace, settings: config.Settings) -> tuple[int, int]:
    """-x/-y, else the terminal's size when attaching at once, else the configured default."""
    cols, rows = settings["default_size"]
    if not args.detached:
        from tmuxish.client.terminal import get_size

        tcols, trows = get_size(1)
        if tcols and trows:
            cols, rows = tcols, trows
    cols = args.cols or cols
    rows = args.rows or rows
    if cols <= 0 or rows <= 0:
        raise UsageError("-x and -y must be positive")
    return cols, rows


def cmd_new(args: argparse.Namespace) -> int:
    if args.runtime is not None or args.bundle is not None:
        return _new_container(args)
    settings = config.load({"detach_keys": args.detach_keys, "window_size": args.window_size})
    argv: list[str] | None = list(args.command_argv)
    if argv and argv[0] == "--":
        argv = argv[1:]
    remote = _host(args) is not None
    if not argv and remote:
        # On another host our $SHELL means nothing: the server there picks its user's shell.
        argv = list(settings["default_command"] or ()) or None
    elif not argv:
        argv = default_command(settings)
    extra: dict[str, str] = {}
    for item in args.env:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"-e needs KEY=VALUE, got {item!r}")
        extra[key] = value
    if remote:
        # Like ssh: the program gets the host's environment, our terminal type, and -e.
        env = {k: os.environ[k] for k in ("TERM", "COLORTERM") if k in os.environ} | extra
        cwd, log = args.cwd, args.log
    else:
        env = dict(os.environ) | extra
        env.pop("TMUXISH", None)
        cwd = os.path.abspath(args.cwd) if args.cwd else os.getcwd()
        log = os.path.abspath(args.log) if args.log else None
    cols, rows = _new_size(args, settings)
    with _connect(args, start=True, terminal=not args.detached) as conn:
        info = conn.request(
            "new",
            command=argv,
            name=args.name,
            cwd=cwd,
            cols=cols,
            rows=rows,
            env=env,
            replace_env=not remote,
            window_size=settings["window_size"],
            log=log,
            log_max=args.log_max,
            umask=None if remote else current_umask(),
        )
        if args.detached:
            _out(f"{info['id']}\n")
            return 0
        return _attach(conn, str(info["id"]), settings, False, None, args)


def _attach(
    conn: Connection,
    target: str | None,
    settings: config.Settings,
    readonly: bool,
    history: int | None,
    args: argparse.Namespace,
) -> int:
    from tmuxish.client.attach import attach
    from tmuxish.keys import parse_detach_keys

    if not os.isatty(0):
        conn.request("get", target=target_arg(target))  # a wrong target is the better error
        raise UsageError("attach needs a terminal on standard input")
    result = attach(
        conn,
        target,
        detach_keys=parse_detach_keys(settings["detach_keys"]),
        detach_timeout=settings["detach_timeout"],
        readonly=readonly,
        history=history if history is not None else settings["history_lines"],
        inside=_inside(args),
        reconnect=lambda direct: _reconnect(args, direct),
    )
    _out(result.message + "\n")
    return result.status


def cmd_attach(args: argparse.Namespace) -> int:
    if args.target is None and os.isatty(0) and os.isatty(1):
        # Several sessions: let the user pick one (client/chooser.py).
        return cmd_choose(args, from_attach=True)
    settings = config.load({"detach_keys": args.detach_keys})
    with _connect(args, start=False, terminal=True) as conn:
        return _attach(conn, args.target, settings, args.readonly, args.history, args)


def cmd_choose(args: argparse.Namespace, from_attach: bool = False) -> int:
    """`tmuxish` alone: the interactive chooser, or a direct attach/new when there is no choice."""
    from tmuxish.client import chooser

    return chooser.main(args, from_attach=from_attach)


def _connect_with_terminal(socket_path: Path, start: bool) -> Connection:
    """Connect, handing the server our terminal when we can (local direct attach)."""
    from tmuxish.client.attach import terminal_for_server

    fd = terminal_for_server()
    if fd is None:
        return connect(socket_path, start=start)
    try:
        return connect(socket_path, start=start, pass_fds=(fd,))
    finally:
        os.close(fd)


def _client(args: argparse.Namespace) -> SyncClient:
    """The Python API client the everyday commands go through (one code path with the API)."""
    from tmuxish.client.api import SyncClient

    return SyncClient(connector=lambda start: _connect(args, start))


def cmd_ls(args: argparse.Namespace) -> int:
    from tmuxish.client.api import SessionInfo
    from tmuxish.errors import ServerNotRunning, StaleSocket

    with _client(args) as client:
        try:
            sessions = [SessionInfo.from_dict(s).to_dict() for s in client.request("ls")]
        except StaleSocket:
            raise  # a crashed server: say so rather than list nothing
        except ServerNotRunning:
            sessions = []
    if args.json:
        import json  # not at the top: `ls`, `kill`, `send`, `capture` start faster without it

        _out(json.dumps(sessions) + "\n")
    elif sessions:
        _out(format_table(sessions))
    return 0


def _simple(args: argparse.Namespace, command: str, **kwargs: Any) -> Any:
    with _client(args) as client:
        return client.request(command, **kwargs)


def cmd_kill(args: argparse.Namespace) -> int:
    with _client(args) as client:
        client.kill(args.target, args.signal)
    return 0


def cmd_rm(args: argparse.Namespace) -> int:
    with _client(args) as client:
        client.rm(args.target, force=args.force)
    return 0


def cmd_kill_server(args: argparse.Namespace) -> int:
    with _connect(args, start=False) as conn:
        conn.request("kill-server")
        # Wait until the server has closed, so a following command starts a fresh one.
        try:
            while True:
                conn.recv()
        except Exception:
            pass
    return 0


def cmd_server(args: argparse.Namespace) -> int:
    """`server upgrade|info|restart` (`server run` is the server itself: tmuxish.cli runs it)."""
    if args.action == "upgrade":
        return server_upgrade(args)
    if args.action == "info":
        from tmuxish.client.server_admin import server_info

        return server_info(lambda: _connect(args, start=False))
    if args.host:
        raise UsageError("-H does not apply to `server restart`: it signals the local keeper")
    from tmuxish.client.server_admin import server_restart

    return server_restart(_socket(args), lambda: _connect(args, start=False))


def server_upgrade(args: argparse.Namespace) -> int:
    from tmuxish.errors import ServerGone

    with _connect(args, start=False) as conn:
        before = conn.request("upgrade")
        try:
            while True:
                conn.recv()
        except ServerGone:
            pass
    with _reconnect(args, direct=False) as conn:
        after = conn.request("info")
    _out(
        f"server upgraded: tmuxish {before['version']} -> {after['version']} "
        f"(pid {after['pid']}, {after['sessions']} sessions kept, "
        f"generation {after.get('generation', '?')})\n"
    )
    return 0


def cmd_capture(args: argparse.Namespace) -> int:
    with _client(args) as client:
        text = client.capture(target_arg(args.target), history=args.history, escapes=args.escapes)
    _out(with_final_newline(text))
    return 0


def cmd_send(args: argparse.Namespace) -> int:
    with _client(args) as client:
        client.send(args.target, list(args.keys), literal=args.literal)
    return 0


def cmd_wait(args: argparse.Namespace) -> int:
    with _client(args) as client:
        return client.wait(args.target)


def cmd_rename(args: argparse.Namespace) -> int:
    with _client(args) as client:
        client.rename(args.target, args.name)
    return 0


def cmd_dial_stdio(args: argparse.Namespace) -> int:
    """The host's end of -H; always the local server, whatever $TMUXISH_HOST says."""
    from tmuxish.client.remote import dial_stdio

    return dial_stdio(_socket(args), start=not args.no_start)


def cmd_completion(args: argparse.Namespace) -> int:
    from tmuxish.client import completion

    return completion.run(args)


def cmd_config(args: argparse.Namespace) -> int:
    import json

    settings = config.load()
    _out(f"# {config.config_path()}\n")
    for key, value in settings.values.items():
        _out(f"{key} = {json.dumps(value)}  # {settings.sources[key]}\n")
    return 0


#: Seconds `new --runtime` waits for the server to start the container.
CONTAINER_START_TIMEOUT = 120.0


def _new_container(args: argparse.Namespace) -> int:
    """`new --runtime RUNTIME --bundle DIR [CONTAINER_ID]`: the server runs the container."""
    if not args.runtime or not args.bundle:
        raise UsageError("--runtime and --bundle go together")
    if args.cwd or args.env or getattr(args, "log", None):
        raise UsageError("-c, -e and --log do not apply to --runtime (use the bundle's config)")
    ids = list(args.command_argv)
    if ids and ids[0] == "--":
        ids = ids[1:]
    if len(ids) > 1:
        raise UsageError("--runtime takes at most one CONTAINER_ID, not a command")
    settings = config.load({"detach_keys": args.detach_keys, "window_size": args.window_size})
    cols, rows = _new_size(args, settings)
    runtime, bundle = args.runtime, args.bundle
    if _host(args) is None:
        runtime = os.path.abspath(runtime) if "/" in runtime else runtime
        bundle = os.path.abspath(bundle)
    with _connect(args, start=True) as conn:
        conn.sock.settimeout(CONTAINER_START_TIMEOUT)
        info = conn.request(
            "new-container",
            runtime=runtime,
            bundle=bundle,
            container_id=ids[0] if ids else None,
            name=args.name,
            cols=cols,
            rows=rows,
            window_size=settings["window_size"],
        )
        if args.detached:
            _out(f"{info['id']}\n")
            return 0
        conn.sock.settimeout(10.0)
        return _attach(conn, str(info["id"]), settings, False, None, args)


def cmd_console_socket(args: argparse.Namespace) -> int:
    settings = config.load()
    cols, rows = settings["default_size"]
    with _connect(args, start=True) as conn:
        info = conn.request(
            "console-socket",
            name=args.name,
            persist=args.persist,
            cols=cols,
            rows=rows,
            window_size=settings["window_size"],
        )
    _out(f"{info['path']}\n")
    return 0


COMMANDS = {
    "choose": cmd_choose,
    "new": cmd_new,
    "console-socket": cmd_console_socket,
    "attach": cmd_attach,
    "a": cmd_attach,
    "ls": cmd_ls,
    "list": cmd_ls,
    "kill": cmd_kill,
    "rm": cmd_rm,
    "kill-server": cmd_kill_server,
    "server": cmd_server,
    "capture": cmd_capture,
    "send": cmd_send,
    "wait": cmd_wait,
    "rename": cmd_rename,
    "config": cmd_config,
    "completion": cmd_completion,
    "dial-stdio": cmd_dial_stdio,
    "_complete-targets": cmd_completion,
}


def dispatch(args: argparse.Namespace) -> int:
    return COMMANDS[args.command](args)
