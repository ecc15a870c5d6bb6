"""What each CLI command does, on top of the blocking client connection."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tmuxish import config, protocol
from tmuxish.client.autostart import connect
from tmuxish.client.connection import Connection
from tmuxish.client.listing import format_table
from tmuxish.errors import TmuxishError, UsageError
from tmuxish.paths import current_umask, resolve_socket
from tmuxish.quick import inside_session, target_arg, with_final_newline

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
    return inside_session(str(_socket(args)))


def default_command(settings: config.Settings) -> list[str]:
    configured = settings["default_command"]
    if configured:
        return list(configured)
    return [os.environ.get("SHELL") or "/bin/sh"]


def _new_size(args: argparse.Namespace, settings: config.Settings) -> tuple[int, int]:
    """-x/-y, else the terminal's size when attaching at once, else the configured default."""
    for flag, value in (("-x", args.cols), ("-y", args.rows)):
        if value is not None and not 1 <= value <= 10000:
            raise UsageError(f"{flag} must be from 1 to 10000, not {value}")
    cols, rows = settings["default_size"]
    if not args.detached:
        from tmuxish.client.terminal import get_size

        tcols, trows = get_size(1)
        if tcols and trows:
            cols, rows = tcols, trows
    cols = args.cols or cols
    rows = args.rows or rows
    return cols, rows


def _check_log_max(value: int | None) -> None:
    if value is not None and not 4096 <= value <= protocol.MAX_LOG_BYTES:
        raise UsageError(
            f"--log-max must be from 4096 to {protocol.MAX_LOG_BYTES} bytes, not {value}"
        )


def cmd_new(args: argparse.Namespace) -> int:
    if not args.detached and not os.isatty(0):
        # Before anything is started, as tmux's "not a terminal": the session would be left
        # running, unseen, by a command that failed.
        raise UsageError("new needs a terminal on standard input to attach (-d: start detached)")
    if args.runtime is not None or args.bundle is not None:
        return _new_container(args)
    settings = config.load({"detach_keys": args.detach_keys, "window_size": args.window_size})
    if args.attach_existing:
        existing = _running_named(args)
        if existing is not None and args.detached:
            _out(f"{existing}\n")  # tmux's new -A -d: nothing to attach, the session is there
            return 0
        if existing is not None:
            with _connect(args, start=False, terminal=True) as conn:
                return _attach(conn, str(existing), settings, False, None, args)
    _check_log_max(args.log_max)
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
            **_new_record_args(args, remote),
            **({"auto_remove": True} if args.auto_remove else {}),
        )
        if args.detached:
            _out(f"{info['id']}\n")
            return 0
        return _attach(conn, str(info["id"]), settings, False, None, args)


def _record_path(path: str, remote: bool) -> str:
    """A recording path as the server needs it: absolute (a remote one is the user's business)."""
    return path if remote else os.path.abspath(path)


def _new_record_args(args: argparse.Namespace, remote: bool) -> dict[str, Any]:
    """`new --record FILE [--record-format F] [--record-input]`; nothing without --record."""
    if not getattr(args, "record", None):
        if getattr(args, "record_format", None) or getattr(args, "record_input", False):
            raise UsageError("--record-format and --record-input go with --record FILE")
        return {}
    return {
        "record": _record_path(args.record, remote),
        "record_format": args.record_format or "v2",
        "record_input": bool(args.record_input),
    }


def cmd_record(args: argparse.Namespace) -> int:
    """`record TARGET FILE` starts a recording in the server; `record --stop TARGET` ends it."""
    if args.stop:
        if args.file is not None:
            raise UsageError("record --stop takes the session only, not a FILE")
        with _client(args) as client:
            info = client.request("record-stop", target=args.target, timeout=30.0)
        rec = info["recording"]
        if rec.get("error"):
            raise TmuxishError(f"the recording {rec['path']} stopped early: {rec['error']}")
        if rec.get("dropped"):
            sys.stderr.write(
                f"tmuxish: {rec['dropped']} bytes of output could not be written in time and "
                f"are missing from {rec['path']} (marked there)\n"
            )
        return 0
    if args.file is None:
        raise UsageError("record needs a TARGET and a FILE (or --stop TARGET)")
    with _client(args) as client:
        client.request(
            "record",
            target=args.target,
            path=_record_path(args.file, _host(args) is not None),
            format=args.format,
            input=args.input,
            term=os.environ.get("TERM"),
        )
    return 0


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

    if history is not None and not -1 <= history <= protocol.MAX_HISTORY_LINES:
        raise UsageError(
            f"--history must be from -1 to {protocol.MAX_HISTORY_LINES} lines, not {history}"
        )
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
    return result.status


def cmd_attach(args: argparse.Namespace) -> int:
    # No target: the server picks the most recently used running session (as tmux does);
    # the chooser is `tmuxish` alone or `tmuxish choose`.
    settings = config.load({"detach_keys": args.detach_keys})
    with _connect(args, start=False, terminal=True) as conn:
        return _attach(conn, args.target, settings, args.readonly, args.history, args)


def cmd_choose(args: argparse.Namespace) -> int:
    """`tmuxish choose`, and `tmuxish` alone: the interactive chooser (alone: a direct attach or
    new when there is no choice to make)."""
    from tmuxish.client import chooser

    if not (os.isatty(0) and os.isatty(1)):
        raise UsageError("choose needs a terminal")
    return chooser.main(args, always=not getattr(args, "alone", False))


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

    local = _socket(args) if _host(args) is None else None
    return SyncClient(local, connector=lambda start: _connect(args, start))


def cmd_ls(args: argparse.Namespace) -> int:
    from tmuxish.client.api import SessionInfo
    from tmuxish.errors import ServerNotRunning, StaleSocket

    with _client(args) as client:
        try:
            sessions = [SessionInfo.from_dict(s).to_dict() for s in client.request("ls")]
        except StaleSocket:
            raise  # a crashed server: say so rather than list nothing
        except ServerNotRunning:
            if not args.json:
                raise  # as tmux: "no server running on ...", exit 1
            sessions = []  # scripts get an empty list
    if args.json:
        import json  # not at the top: `ls`, `kill`, `send`, `capture` start faster without it

        _out(json.dumps(sessions) + "\n")
    else:
        _out(format_table(sessions))
    return 0


def _simple(args: argparse.Namespace, command: str, **kwargs: Any) -> Any:
    with _client(args) as client:
        return client.request(command, **kwargs)


def _target_or_this(args: argparse.Namespace, command: str) -> str | int:
    """The TARGET given, else the session this runs inside; outside one a TARGET is needed."""
    target = _target_or_inside(args)
    if target is None:
        raise UsageError(f"{command} needs a TARGET (session id or name) outside a session")
    return target


def cmd_kill(args: argparse.Namespace) -> int:
    with _client(args) as client:
        client.kill(_target_or_this(args, "kill"), args.signal)
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
    if _host(args) is None:
        _wait_gone(Path(str(_socket(args)) + ".lock"))
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


def _wait_gone(lock: Path, timeout: float = 5.0) -> None:
    """Until the server has let go of its lock file: it removes the file while still holding
    it, then exits, so a following command finds nothing of it. A free lock that stays (a
    server that keeps the file) ends the wait as well."""
    import fcntl
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            fd = os.open(lock, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        except OSError:
            return  # removed
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            return  # no server holds it
        except OSError:
            time.sleep(0.01)  # still held: the server is on its way out
        finally:
            os.close(fd)


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


def _target_or_inside(args: argparse.Namespace) -> str | int | None:
    """The TARGET given, else the session this command runs inside ($TMUXISH, as tmux uses the
    current pane), else None: the server's most recently used session."""
    if args.target is not None:
        return target_arg(args.target)
    return _inside(args)


def cmd_capture(args: argparse.Namespace) -> int:
    with _client(args) as client:
        text = client.capture(_target_or_inside(args), history=args.history, escapes=args.escapes)
    _out(with_final_newline(text))
    return 0


def cmd_send(args: argparse.Namespace) -> int:
    with _client(args) as client:
        client.send(args.target, list(args.keys), literal=args.literal)
    return 0


def cmd_wait(args: argparse.Namespace) -> int:
    with _client(args) as client:
        return client.wait(_target_or_this(args, "wait"))


def cmd_run(args: argparse.Namespace) -> int:
    """`tmuxish run`: the command's output on stdout as it comes, and its exit status (the
    same conversation as the fast path's, tmuxish.quick.stream_run)."""
    from tmuxish.client.runstream import run_args
    from tmuxish.quick import stream_run

    argv = list(args.command_argv)
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        raise UsageError("run needs a command: tmuxish run [-t TARGET] -- COMMAND...")
    if args.timeout is not None and not args.timeout >= 0:  # nan too
        raise UsageError(f"--timeout must be a number of seconds from 0 up, not {args.timeout}")
    stdin = sys.stdin.buffer.read(protocol.MAX_RUN_INPUT + 1) if args.stdin else None
    if stdin is not None and len(stdin) > protocol.MAX_RUN_INPUT:
        # The server would cut the connection at the frame limit: "lost connection" says
        # nothing of why.
        raise UsageError(
            f"--stdin takes at most {protocol.MAX_RUN_INPUT} bytes; put more in a file the "
            "command reads"
        )
    request = run_args(target_arg(args.target), argv, args.timeout, stdin)
    with _connect(args, False) as conn:
        return stream_run(conn, request, args.raw, lambda: _connect(args, False))


def cmd_events(args: argparse.Namespace) -> int:
    """`tmuxish events`: one line per event until the server goes away (or Ctrl-C)."""
    import json

    with _client(args) as client:
        try:
            for event in client.events():
                if args.json:
                    _out(json.dumps(event) + "\n")
                else:
                    _out(event_line(event))
                sys.stdout.flush()
        except KeyboardInterrupt:
            return 0
    return 0


def event_line(event: dict[str, Any]) -> str:
    known = ("time", "type", "session", "name")
    name = f" ({event['name']})" if event.get("name") else ""
    rest = "".join(f" {k}={v}" for k, v in event.items() if k not in known)
    return f"{event.get('time', '')} {event.get('type')} {event.get('session')}{name}{rest}\n"


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
    settings = config.load()
    _out(config.show(settings))
    return 0


def cmd_web(args: argparse.Namespace) -> int:
    """`tmuxish web`: serve the browser page until interrupted; the URL with its token once."""
    import asyncio
    import logging

    try:
        from tmuxish.client.web import gateway
    except ImportError as exc:
        raise UsageError(
            f"tmuxish web needs the web extra ({exc.name} is missing): pip install 'tmuxish[web]'"
        ) from None
    from tmuxish.eventloop import new_event_loop

    if _host(args) is not None:
        raise UsageError("-H does not apply to `web`: run it on the host, beside the server")
    host, port = gateway.parse_listen(args.listen)
    options = gateway.WebOptions(
        socket_path=_socket(args),
        host=host,
        port=port,
        readonly=args.readonly,
        allow_new=args.allow_new,
        tls_cert=Path(args.tls_cert) if args.tls_cert else None,
        tls_key=Path(args.tls_key) if args.tls_key else None,
    )
    logging.basicConfig(format="tmuxish web: %(message)s", level=logging.INFO)
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        runner.run(gateway.run(options, lambda url: _out(f"tmuxish web: open {url}\n")))
    return 0


#: Seconds `new --runtime` waits for the server to start the container.
CONTAINER_START_TIMEOUT = 120.0


def _new_container(args: argparse.Namespace) -> int:
    """`new --runtime RUNTIME --bundle DIR [CONTAINER_ID]`: the server runs the container."""
    if not args.runtime or not args.bundle:
        raise UsageError("--runtime and --bundle go together")
    if args.cwd or args.env or getattr(args, "log", None):
        raise UsageError("-c, -e and --log do not apply to --runtime (use the bundle's config)")
    if getattr(args, "record", None):
        raise UsageError("--record does not apply to --runtime: 'tmuxish record' it once started")
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


def _running_named(args: argparse.Namespace) -> int | None:
    """`new -A -s NAME`: the id of the running session NAME, if there is one."""
    from tmuxish.errors import ServerNotRunning, SessionNotFound

    if not args.name:
        raise UsageError("-A needs -s NAME (the session to attach to if it exists)")
    try:
        with _connect(args, start=False) as conn:
            info = conn.request("get", target=args.name)
    except (ServerNotRunning, SessionNotFound):
        return None
    return int(info["id"]) if info["status"] == "running" else None


def cmd_prune(args: argparse.Namespace) -> int:
    from tmuxish.errors import ServerNotRunning

    try:
        with _connect(args, start=False) as conn:
            gone = conn.request("prune")
    except ServerNotRunning:
        return 0  # nothing to forget
    _out("".join(f"{info['id']}\n" for info in gone))
    return 0


def cmd_log(args: argparse.Namespace) -> int:
    """`log TARGET FILE` starts a running session's log; `log --off TARGET` stops it."""
    if args.off == (args.file is not None):
        raise UsageError("give either FILE (start logging) or --off (stop)")
    _check_log_max(args.log_max)
    path = args.file
    if path is not None and _host(args) is None:
        path = os.path.abspath(path)
    elif path is not None and not os.path.isabs(path):
        raise UsageError("with -H, FILE must be an absolute path on the host")
    with _connect(args, start=False) as conn:
        conn.request("log", target=target_arg(args.target), path=path, log_max=args.log_max)
    return 0


def cmd_logs(args: argparse.Namespace) -> int:
    from tmuxish.client import logs

    if _host(args) is not None:
        raise UsageError("logs reads the log file on this machine; it does not work with -H")
    with _connect(args, start=False) as conn:
        return logs.show(conn, _target_or_inside(args), follow=args.follow, out=sys.stdout.buffer)


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
    "run": cmd_run,
    "events": cmd_events,
    "rename": cmd_rename,
    "record": cmd_record,
    "web": cmd_web,
    "config": cmd_config,
    "completion": cmd_completion,
    "dial-stdio": cmd_dial_stdio,
    "_complete-targets": cmd_completion,
    "prune": cmd_prune,
    "log": cmd_log,
    "logs": cmd_logs,
}


def dispatch(args: argparse.Namespace) -> int:
    return COMMANDS[args.command](args)
