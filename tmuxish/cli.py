"""The `tmuxish` command line: argument parsing and a thin dispatch to the client commands.

Kept light on imports: `ls`, `kill`, `send` and `capture` must start about as fast as Python itself.
"""

from __future__ import annotations

import errno
import os
import sys

from tmuxish import __version__
from tmuxish.errors import TmuxishError

#: Not typing.TYPE_CHECKING: importing typing (and re with it) costs `tmuxish ls` ~15 ms.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable, Sequence
    from typing import Any

EPILOG = """\
examples:
  tmuxish new -- sh            start a shell in a new session and attach to it
  tmuxish new -d -s web -- top start a detached session named web
  tmuxish ls                   list sessions
  tmuxish attach web           attach to it again (Ctrl-P Ctrl-Q detaches)
  tmuxish                      choose a session interactively (start one if none runs)
  tmuxish -H ssh://me@box ls   the same commands against the server on another machine
"""


def build_parser() -> argparse.ArgumentParser:
    import argparse  # here, not at the top: `ls`, `kill`, `send`, `capture` skip it (tmuxish.quick)

    class _Parser(argparse.ArgumentParser):
        def _print_message(self, message: str, file: Any = None) -> None:
            # argparse's own swallows write errors: `tmuxish --help > /dev/full` exited 0.
            if message:
                (file or sys.stderr).write(message)

        def error(self, message: str) -> None:  # type: ignore[override]
            # One line and exit status 2, like every other tmuxish error.
            from tmuxish.errors import printable

            message = printable(_unknown_command(message, sub) or message)
            sys.stderr.write(f"tmuxish: {message} (see '{self.prog} --help')\n")
            sys.exit(2)

    p = _Parser(
        prog="tmuxish",
        description="A terminal multiplexer: detachable sessions for programs and containers.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("-S", dest="socket_path", metavar="PATH", help="server socket path")
    p.add_argument("-L", dest="socket_name", metavar="NAME", help="socket name in the default dir")
    p.add_argument(
        "-H",
        dest="host",
        metavar="ssh://[user@]host[:port]",
        help="run the command against the server on that host, over ssh (default $TMUXISH_HOST)",
    )
    p.add_argument("--version", action="version", version=f"tmuxish {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    def cmd(
        name: str, help: str, example: str, aliases: Sequence[str] = ()
    ) -> argparse.ArgumentParser:
        return sub.add_parser(
            name,
            help=help,
            aliases=list(aliases),
            description=help,
            epilog=f"example:\n  {example}",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )

    n = cmd("new", "create a session and attach to it", "tmuxish new -d -s build -- make -j8")
    n.add_argument("-d", dest="detached", action="store_true", help="do not attach; print the id")
    n.add_argument(
        "-s",
        dest="name",
        help="session name (an exited session holding it gives it up)",
    )
    n.add_argument("-c", dest="cwd", metavar="DIR", type=given, help="working directory")
    n.add_argument(
        "-x",
        dest="cols",
        type=int,
        help="width in columns, 1-10000 (default: the terminal's; with -d default_size)",
    )
    n.add_argument(
        "-y",
        dest="rows",
        type=int,
        help="height in rows, 1-10000 (default: the terminal's; with -d default_size)",
    )
    n.add_argument(
        "-e",
        dest="env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="set an environment variable (repeatable)",
    )
    n.add_argument(
        "--window-size",
        dest="window_size",
        choices=("latest", "smallest", "largest"),
        help="size policy when several clients attach",
    )
    n.add_argument(
        "--detach-keys",
        dest="detach_keys",
        metavar="SPEC",
        help="detach sequence, docker format (default ctrl-p,ctrl-q; '' disables)",
    )
    n.add_argument(
        "--log",
        dest="log",
        metavar="FILE",
        type=given,
        help="append the session's raw output to FILE (capped, one rotation)",
    )
    n.add_argument(
        "--log-max",
        dest="log_max",
        metavar="BYTES",
        type=int,
        help="rotate the log past this size (default 64 MiB)",
    )
    _record_options(n)
    n.add_argument(
        "--runtime",
        dest="runtime",
        metavar="RUNTIME",
        help="run an OCI container with RUNTIME (runc, crun, or a path); COMMAND is then the "
        "container id (default: the session name, else tmuxish-<id>)",
    )
    n.add_argument(
        "--bundle",
        dest="bundle",
        metavar="DIR",
        type=given,
        help="OCI bundle for --runtime (config.json)",
    )
    n.add_argument(
        "command_argv",
        nargs=argparse.REMAINDER,
        metavar="COMMAND",
        help="program and arguments (default: $SHELL)",
    )

    a = cmd(
        "attach",
        "attach to a session (default: the most recently used running one)",
        "tmuxish attach 3",
        aliases=("a",),
    )
    a.add_argument("-r", dest="readonly", action="store_true", help="read-only: input ignored")
    a.add_argument(
        "--detach-keys",
        dest="detach_keys",
        metavar="SPEC",
        help="detach sequence, docker format (default ctrl-p,ctrl-q; '' disables)",
    )
    a.add_argument(
        "--history",
        dest="history",
        type=int,
        metavar="N",
        help="lines of history to write before the screen (default: a screenful)",
    )
    a.add_argument(
        "target",
        nargs="?",
        help="session id or name (default: the most recently used running session)",
    )

    ls = cmd("ls", "list sessions", "tmuxish ls --json", aliases=("list",))
    ls.add_argument("--json", action="store_true", help="print a JSON array")

    k = cmd("kill", "send a signal to a session's program", "tmuxish kill -s TERM 3")
    k.add_argument("-s", dest="signal", default="HUP", help="signal name or number (default HUP)")
    k.add_argument("target", nargs="?", help=TARGET_INSIDE_HELP)

    r = cmd("rm", "forget an exited session", "tmuxish rm 3")
    r.add_argument("-f", dest="force", action="store_true", help="also kill a running session")
    r.add_argument("target", help=TARGET_HELP)

    cmd("kill-server", "end the server and every session", "tmuxish kill-server")

    s = cmd(
        "server", "run the server in the foreground (normally started on demand)", "tmuxish server"
    )
    s.add_argument(
        "action",
        nargs="?",
        choices=("run", "upgrade", "info", "restart"),
        default="run",
        help="run (default); upgrade: move the running server and every session "
        "to the installed version without stopping any program; info: its pid, generation "
        "and last restart; restart: start it again after its keeper gave up on a crash loop",
    )
    s.add_argument("--resume", dest="resume_fd", type=int, help=argparse.SUPPRESS)

    c = cmd("capture", "print a session's screen as text", "tmuxish capture -e 3")
    c.add_argument("-e", dest="escapes", action="store_true", help="keep colours")
    c.add_argument("--history", action="store_true", help="include the scrollback")
    c.add_argument("target", nargs="?", help=TARGET_DEFAULT_HELP)

    _record_command(cmd)

    sk = cmd("send", "send keys to a session", "tmuxish send 3 'make test' Enter")
    sk.add_argument("-l", dest="literal", action="store_true", help="send arguments as text")
    sk.add_argument("target", help=TARGET_HELP)
    sk.add_argument("keys", nargs="+", metavar="KEY")

    w = cmd(
        "wait",
        "wait for a session's program to exit; exit with its code (125 if it is unknown, as "
        "for console-socket sessions)",
        "tmuxish wait 3",
    )
    w.add_argument("target", nargs="?", help=TARGET_INSIDE_HELP)

    add_run_parser(cmd)
    ev = cmd(
        "events",
        "print what happens to sessions as it happens (created, exited, renamed, attached, "
        "detached, bell, title, command finished), as docker events",
        "tmuxish events --json",
    )
    ev.add_argument("--json", action="store_true", help="one JSON object per line")

    rn = cmd("rename", "rename a session", "tmuxish rename 3 web")
    rn.add_argument("target", help=TARGET_HELP)
    rn.add_argument("name")

    cs = cmd(
        "console-socket",
        "listen for PTY masters from OCI runtimes (--console-socket); print the socket path",
        'runc run -d --console-socket "$(tmuxish console-socket --name web)" -b DIR web',
    )
    cs.add_argument(
        "--name", dest="name", type=given, help="name of the session made (default: console)"
    )
    cs.add_argument(
        "--persist",
        action="store_true",
        help="keep listening after the first master (sessions NAME, NAME-2, ...)",
    )

    ds = cmd(
        "dial-stdio",
        "copy standard input/output to and from the server socket (what -H runs on the host)",
        "ssh host tmuxish dial-stdio",
    )
    ds.add_argument(
        "--no-start", dest="no_start", action="store_true", help="do not start a server"
    )

    cf = cmd(
        "config",
        "show the effective settings, as a config file with where each came from",
        "tmuxish config --show > ~/.config/tmuxish/config.toml",
    )
    cf.add_argument("--show", action="store_true", help="print settings and their sources")

    co = cmd(
        "completion",
        "print a shell completion script (subcommands, options, session ids and names)",
        'eval "$(tmuxish completion bash)"    # in ~/.bashrc (zsh: after compinit)',
    )
    co.add_argument("shell", choices=("bash", "zsh"))
    add_session_commands(cmd, n)
    web_parser(cmd("web", "serve a page that attaches from a web browser", "tmuxish web"))
    # Hidden: what the completion scripts call for session ids and names.
    sub.add_parser("_complete-targets")
    return p


def given(value: str) -> str:
    """A FILE, DIR or NAME option's value: an empty one (`--log "$LOG"` with LOG unset) is a
    mistake to report, not "none" or the current directory."""
    if not value:
        import argparse

        raise argparse.ArgumentTypeError("needs a value, not an empty string")
    return value


TARGET_HELP = "session id or name"
TARGET_INSIDE_HELP = "session id or name (default inside a session: that one, $TMUXISH)"
TARGET_DEFAULT_HELP = (
    "session id or name (default: the session this runs inside, $TMUXISH; else the most "
    "recently used)"
)
CHOOSER_KEYS = """\
keys:
  type            filter the list (every printable key filters; none runs a command)
  Up/Down, C-p/C-n, PgUp/PgDn, Home/End
                  move the selection
  Enter           attach to the selected session
  C-o             start a new session (the default command) and attach
  C-x             kill the selected session (SIGHUP, as `tmuxish kill`; asks y/n);
                  on an exited session: remove it (as `tmuxish rm`)
  C-r             rename the selected session
  Backspace, C-u  delete from / clear the filter
  Esc             clear the filter, else quit; C-c quits
"""


def add_session_commands(cmd: Any, new: argparse.ArgumentParser) -> None:
    """The commands and `new` options for finding, reusing and cleaning up sessions (issue 14)."""
    import argparse

    new.add_argument(
        "-A",
        dest="attach_existing",
        action="store_true",
        help="with -s NAME: attach to the running session NAME if there is one, else create it "
        "(as tmux's new -A)",
    )
    new.add_argument(
        "--rm",
        dest="auto_remove",
        action="store_true",
        help="forget the session once its program exits (as docker run --rm)",
    )
    ch = cmd(
        "choose",
        "choose a session interactively, the most recently used selected ('tmuxish' alone "
        "does this when more than one session runs)",
        "tmuxish choose",
    )
    ch.epilog = CHOOSER_KEYS + "\n" + (ch.epilog or "")
    ch.formatter_class = argparse.RawDescriptionHelpFormatter
    ch.add_argument("-r", dest="readonly", action="store_true", help="attach read-only")
    ch.add_argument("--detach-keys", dest="detach_keys", metavar="SPEC", help="as for attach")
    cmd("prune", "forget every exited session; print their ids", "tmuxish prune")
    lg = cmd(
        "logs",
        "print a session's output log (new --log, or log); -f follows it (as docker logs -f)",
        "tmuxish logs -f build",
    )
    lg.add_argument(
        "-f",
        dest="follow",
        action="store_true",
        help="keep printing new output until the session exits or its log is turned off",
    )
    lg.add_argument("target", nargs="?", help=TARGET_DEFAULT_HELP)
    lo = cmd(
        "log",
        "start logging a running session's output to FILE, or stop with --off "
        "(as tmux's pipe-pane)",
        "tmuxish log build build.log",
    )
    lo.add_argument("--off", action="store_true", help="stop logging (the file stays)")
    lo.add_argument(
        "--log-max",
        dest="log_max",
        metavar="BYTES",
        type=int,
        help="rotate the log past this size (default 64 MiB)",
    )
    lo.add_argument("target", help=TARGET_HELP)
    lo.add_argument(
        "file", nargs="?", metavar="FILE", type=given, help="file to append the output to"
    )


def _unknown_command(message: str, sub: Any) -> str | None:
    """argparse's 'invalid choice' for a command, as one line with a suggestion and without the
    hidden completion helper."""
    if "invalid choice" not in message or not message.startswith("argument COMMAND"):
        return None
    import difflib

    typed = message.split("'", 2)[1] if message.count("'") >= 2 else ""
    names = [n for n in sub.choices if not n.startswith("_")]
    close = difflib.get_close_matches(typed, names, n=1)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    return f"unknown command '{typed}'{hint}"


def _record_options(n: argparse.ArgumentParser) -> None:
    """`new --record FILE`: an asciinema recording from the program's first byte."""
    n.add_argument(
        "--record",
        dest="record",
        metavar="FILE",
        type=given,
        help="record the session to FILE for asciinema (replaced if it exists)",
    )
    n.add_argument(
        "--record-format",
        dest="record_format",
        choices=("v2", "v3"),
        help="asciicast version (default v2, which asciinema 2 and 3 both play)",
    )
    n.add_argument(
        "--record-input",
        dest="record_input",
        action="store_true",
        help="record what is typed too (passwords included)",
    )


def _record_command(cmd: Callable[..., argparse.ArgumentParser]) -> None:
    rc = cmd(
        "record",
        "record a running session for asciinema, until 'record --stop' or the session ends",
        "tmuxish record 3 demo.cast; ...; tmuxish record --stop 3; asciinema play demo.cast",
    )
    rc.add_argument(
        "--format", dest="format", choices=("v2", "v3"), default="v2", help="default v2"
    )
    rc.add_argument("--input", dest="input", action="store_true", help="record what is typed too")
    rc.add_argument(
        "--stop",
        dest="stop",
        action="store_true",
        help="end the session's recording; the file is complete when this returns",
    )
    rc.add_argument("target", help="session id or name")
    rc.add_argument(
        "file",
        nargs="?",
        metavar="FILE",
        type=given,
        help="the recording (replaced if it exists)",
    )


def web_parser(w: argparse.ArgumentParser) -> None:
    w.add_argument(
        "--listen",
        default="127.0.0.1:7683",
        metavar="HOST:PORT",
        help="address to serve on (default 127.0.0.1:7683; anything else needs TLS)",
    )
    w.add_argument("--read-only", dest="readonly", action="store_true", help="tabs cannot type")
    w.add_argument(
        "--tls-cert", dest="tls_cert", metavar="FILE", type=given, help="TLS certificate (PEM)"
    )
    w.add_argument(
        "--tls-key", dest="tls_key", metavar="FILE", type=given, help="TLS private key (PEM)"
    )
    w.add_argument(
        "--allow-new", dest="allow_new", action="store_true", help="let the page start sessions"
    )


def add_run_parser(cmd: Callable[[str, str, str], argparse.ArgumentParser]) -> None:
    import argparse

    r = cmd(
        "run",
        "type a command into a session's shell, print its output, exit with its status "
        "(the shell's state stays for the next run; one command at a time per session)",
        "tmuxish run -t build --timeout 600 -- 'cd src && make test'",
    )
    r.add_argument("-t", dest="target", help="session (default: the most recent)")
    r.add_argument(
        "--timeout",
        type=float,
        metavar="S",
        help="give up after S seconds: exit 124, the command goes on in the kept session",
    )
    r.add_argument(
        "--stdin",
        action="store_true",
        help="type this command's standard input into the command once it runs",
    )
    r.add_argument("--raw", action="store_true", help="keep the terminal's CR LF line ends")
    r.add_argument(
        "command_argv",
        nargs=argparse.REMAINDER,
        metavar="COMMAND",
        help="words joined with spaces into the line the shell reads, as ssh does",
    )


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except OSError as exc:  # --help or --version written to `> /dev/full`
        return report(exc)
    if args.command is None:
        if not (os.isatty(0) and os.isatty(1)):
            build_parser().print_help()
            return 0
        # `tmuxish` alone, like `tmux` alone: attach, start a session, or choose one.
        args.command = "choose"
        args.alone = True
    try:
        return dispatch(args)
    except Exception as exc:
        expected = isinstance(exc, (TmuxishError, BrokenPipeError)) or (
            isinstance(exc, OSError) and exc.errno in _OUTPUT_ERRNOS
        )
        if os.environ.get("TMUXISH_DEBUG") and not expected:
            raise
        return report(exc)
    except KeyboardInterrupt:
        return 130


def dispatch(args: argparse.Namespace) -> int:
    """Run the command: the server itself, or a client command.

    Layers: ``tmuxish/`` is the shared core and imports neither ``tmuxish.client`` nor
    ``tmuxish.server``; the client never imports the server and the server never imports the
    client. Only the entry (this module, its fast path ``tmuxish.quick``, and the lazy public
    API in ``tmuxish/__init__``) reaches into the sides, and only lazily, so ``ls`` does not pay
    for the server. tests/unit/test_layers.py enforces this.
    """
    if args.command == "server" and args.action == "run":
        return run_server(args)
    from tmuxish.client import commands

    return commands.dispatch(args)


def run_server(args: argparse.Namespace) -> int:
    """`tmuxish server`: run the server in this process (normally started on demand)."""
    from tmuxish.errors import UsageError
    from tmuxish.paths import ensure_private_dir, is_default_dir, resolve_socket
    from tmuxish.server.daemon import run

    if args.host:
        raise UsageError("-H does not apply to `server`: the server runs on the host itself")
    socket_path = resolve_socket(args.socket_path, args.socket_name)
    if is_default_dir(socket_path.parent):
        ensure_private_dir(socket_path.parent)
    return run(socket_path, foreground=sys.stderr.isatty(), resume_fd=args.resume_fd)


#: What a write to a full disk or a failing device raises (anything else that reaches report
#: unwrapped is an internal error).
_OUTPUT_ERRNOS = frozenset((errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO))


def report(exc: BaseException) -> int:
    """Tell the user what went wrong, in one line; the exit status that goes with it."""
    from tmuxish.errors import printable

    if isinstance(exc, TmuxishError):
        # A program name, path or target may hold a newline or an escape sequence.
        sys.stderr.write(f"tmuxish: {printable(str(exc))}\n")
        return exc.exit_status
    if isinstance(exc, BrokenPipeError):
        # A reader that went away (`tmuxish ls | head -1`) wants no more: silence, as after
        # SIGPIPE. A stdout closed from the start (`>&-`) is the caller's mistake: say so.
        if exc.errno == errno.EBADF:
            sys.stderr.write(f"tmuxish: cannot write output: {exc.strerror}\n")
        return 1
    if isinstance(exc, OSError) and exc.errno in _OUTPUT_ERRNOS:
        # The client writes no file but standard output: `tmuxish ls > /dev/full`.
        sys.stderr.write(f"tmuxish: cannot write output: {exc.strerror}\n")
        return 1
    sys.stderr.write(
        f"tmuxish: internal error: {type(exc).__name__}: {printable(str(exc))} "
        "(set TMUXISH_DEBUG=1 for a traceback)\n"
    )
    return 1


def entry() -> None:
    """The entry of console-script wrappers installed by earlier versions (`from tmuxish.cli
    import entry`): an editable install keeps its old wrapper until reinstalled."""
    from tmuxish.quick import entry as quick_entry

    quick_entry()
