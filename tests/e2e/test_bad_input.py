"""Bad input through the real CLI: one line on stderr, a non-zero exit, never a traceback, and
nothing already running is lost; the fast path (tmuxish/quick.py) and the full CLI agree."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from helpers import TMUXISH, Cli, wait_for

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


HUGE = "99999999999999999999"


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (("new", "-d", "-x", HUGE, "--", "true"), "-x"),
        (("new", "-d", "-y", "10001", "--", "true"), "-y"),
        (("new", "-d", "-x", "\u00b2", "--", "true"), "-x"),
        (("new", "-d", "--log", "/tmp/x", "--log-max", HUGE, "--", "true"), "--log-max"),
        (("log", "--log-max", HUGE, "web", "/tmp/x"), "--log-max"),
        (("attach", "--history", HUGE, "web"), "--history"),
        (("attach", "--history", "2000000", "web"), "--history"),
        (("attach", "--history", "-5", "web"), "--history"),
    ],
)
def test_numbers_out_of_range_name_the_option(cli: Cli, args: tuple[str, ...], named: str) -> None:
    """Numbers too big for the wire or out of the documented range: the option the user typed
    and a usage exit, as for `-x 0`; nothing is started."""
    sid = cli.new("sleep", "1000", name="web")
    proc = both(cli, *args)
    assert proc.returncode == 2 and named in one_line_error(proc), proc
    assert [s["id"] for s in cli.sessions()] == [sid]


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("TMUXISH_DEFAULT_SIZE", f"{HUGE}x24"),
        ("TMUXISH_DEFAULT_SIZE", "80x10001"),
        ("TMUXISH_DEFAULT_SIZE", "\u0668\u0660x24"),
        ("TMUXISH_HISTORY_LINES", HUGE),
        ("TMUXISH_HISTORY_LIMIT", HUGE),
    ],
)
def test_settings_out_of_range_are_config_errors(cli: Cli, variable: str, value: str) -> None:
    cli.env[variable] = value
    proc = both(cli, "new", "-d", "--", "true")
    assert proc.returncode == 2 and variable in one_line_error(proc), proc
    assert cli.server_pid() is None


@pytest.mark.parametrize("mode", ["direct", "relay"])
def test_detach_onto_a_stuck_terminal_exits_anyway(cli: Cli, mode: str) -> None:
    """The user's terminal takes nothing more (stopped with ^S, a full pipe, a dead ssh) when
    they detach: the client still exits, giving up what the terminal will not take after
    attach.TERM_PATIENCE, the ending line included; the session goes on."""
    if mode == "relay":
        cli.env["TMUXISH_ATTACH_MODE"] = "relay"
    sid = cli.new("sh", "-c", "yes stuck-terminal; sleep 1000", name="flood")
    child = cli.spawn("attach", "flood")
    child.expect_exact("stuck-terminal")
    # From here on nobody reads the terminal: `yes` fills it and keeps it full.
    wait_for(lambda: _unread(child.child_fd) >= 4095, 20, "the client's terminal to fill")
    child.send(b"\x10\x11")
    wait_for(lambda: not child.isalive(), 5 * 2 + 10, "the client to exit")
    assert child.exitstatus == 0
    assert cli.session(sid)["status"] == "running"


def _unread(master: int) -> int:
    """Bytes waiting on a pty's master side: 4095 at most, once the terminal is full."""
    import fcntl
    import struct
    import termios

    return int(struct.unpack("i", fcntl.ioctl(master, termios.FIONREAD, b"\0" * 4))[0])


def test_attach_with_output_to_a_file_keeps_everything(cli: Cli) -> None:
    """`tmuxish attach web > FILE` (as `docker attach web > FILE`): the repaint, the output
    and the ending line follow each other in FILE; none is written over another."""
    import shlex

    import pexpect

    cli.new("sh", "-c", "echo first-line; read x; echo second-line; sleep 1000", name="f")
    wait_for(lambda: "first-line" in cli.run("capture", "f").stdout)
    out = cli.socket_path.parent / "out.txt"
    command = shlex.join(cli.argv("attach", "f")) + f" > {shlex.quote(str(out))}"
    child = pexpect.spawn("sh", ["-c", command], env=cli.env, timeout=10)
    cli.children.append(child)
    wait_for(lambda: cli.session(1)["clients"] == 1, 10, "the client to attach")
    child.send(b"go\r")
    wait_for(lambda: b"second-line" in out.read_bytes(), 10, "the output in the file")
    child.send(b"\x10\x11")
    child.expect(pexpect.EOF)
    data = out.read_bytes()
    assert b"first-line" in data and data.index(b"first-line") < data.index(b"second-line")
    assert data.endswith(b"[detached from session f (1)]\n"), data


def _closed(cli: Cli, fd: int, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the real CLI with ``fd`` closed, as `tmuxish ARGS >&-` does."""
    return subprocess.run(
        ["sh", "-c", f'exec "$@" {fd}>&-', "sh", *cli.argv(*args)],
        capture_output=True,
        text=True,
        env=cli.env,
        timeout=30,
    )


@pytest.mark.parametrize(
    "args",
    [
        ("ls",),
        ("ls", "--json"),
        ("capture", "web"),
        ("capture", "-e", "web"),
        ("new", "-d", "--", "true"),
        ("--help",),
        ("--version",),
    ],
)
def test_output_to_a_closed_stdout_is_one_line_error(cli: Cli, args: tuple[str, ...]) -> None:
    """`tmuxish ls >&-`: as ls(1) says "write error", one line and exit 1, never a
    traceback; the fast path's commands and the full CLI's alike."""
    cli.new("sleep", "1000", name="web")
    proc = _closed(cli, 1, *args)
    assert (proc.returncode, proc.stderr) == (
        1,
        "tmuxish: cannot write output: standard output is closed\n",
    ), proc


def test_commands_without_output_run_with_stdout_or_stderr_closed(cli: Cli) -> None:
    sid = cli.new("sh", name="web")
    assert _closed(cli, 1, "send", "web", "echo one-$((1+1))", "Enter").returncode == 0
    wait_for(lambda: "one-2" in cli.run("capture", "web").stdout)
    assert _closed(cli, 2, "kill", "nosuch").returncode == 1
    assert _closed(cli, 0, "kill", "web").returncode == 0
    assert cli.run("wait", str(sid), check=False).returncode == 129


def test_ctrl_c_while_waiting_exits_130_without_a_traceback(cli: Cli) -> None:
    """Ctrl-C during `wait` (the fast path's) or `run`: exit 130 as the shell's own ^C
    would, one line at most, and the session goes on."""
    import signal

    sid = cli.new("sh", name="web")
    for args in (("wait", "web"), ("run", "-t", "web", "--", "sleep", "1000")):
        proc = subprocess.Popen(cli.argv(*args), env=cli.env, stderr=subprocess.PIPE, text=True)
        pid = proc.pid
        wait_for(lambda: _connected(pid), 10, "the client to wait on the server")  # noqa: B023
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=10)
        assert proc.returncode == 130 and "Traceback" not in err, err
    assert cli.session(sid)["status"] == "running"


def _has_fd(pid: int, target: str) -> bool:
    import os

    try:
        return any(
            os.readlink(f"/proc/{pid}/fd/{fd}") == target for fd in os.listdir(f"/proc/{pid}/fd")
        )
    except OSError:
        return False


def _connected(pid: int) -> bool:
    """The process holds a unix socket (it has connected to the server)."""
    import os

    try:
        return any(
            os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:")
            for fd in os.listdir(f"/proc/{pid}/fd")
        )
    except OSError:
        return False


@pytest.mark.parametrize("kind", ["file", "directory", "fifo"])
@pytest.mark.parametrize("args", [("ls",), ("new", "-d", "--", "true"), ("kill", "1")])
def test_s_on_something_not_a_socket_is_refused_at_once(
    cli: Cli, kind: str, args: tuple[str, ...]
) -> None:
    """-S naming a file, directory or FIFO (a typo, a swapped argument): not "the socket is
    stale" and ten seconds waiting for a server that cannot listen there; the thing is left
    as it was, with no .lock or .log beside it."""
    import os

    path = cli.socket_path
    if kind == "file":
        path.write_text("precious\n")
    elif kind == "directory":
        path.mkdir()
    else:
        os.mkfifo(path)
    proc = both(cli, *args)
    assert proc.returncode == 2 and one_line_error(proc) == f"tmuxish: {path} is not a socket\n"
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]
    assert kind != "file" or path.read_text() == "precious\n"


@pytest.mark.parametrize("timeout", ["-1", "nan", "-inf"])
def test_run_timeout_out_of_range_names_the_option(cli: Cli, timeout: str) -> None:
    """`run --timeout nan` ran the command and then said it was "still running after nans"
    (exit 124); -1 was the server's "timeout must be ..." with exit 1."""
    cli.new("sh", name="web")
    proc = both(cli, "run", "-t", "web", "--timeout", timeout, "--", "echo", "ran")
    assert proc.returncode == 2 and "--timeout" in one_line_error(proc), proc
    assert "ran" not in proc.stdout


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (("new", "-d", "-c", "", "--", "true"), "-c"),
        (("new", "-d", "--log", "", "--", "true"), "--log"),
        (("new", "-d", "--record", "", "--", "true"), "--record"),
        (("log", "web", ""), "FILE"),
        (("record", "web", ""), "FILE"),
        (("console-socket", "--name", ""), "--name"),
    ],
)
def test_an_empty_file_dir_or_name_is_a_usage_error(
    cli: Cli, args: tuple[str, ...], named: str
) -> None:
    """`--log "$LOG"` with LOG unset: said, not taken as "no log" (or the current directory
    for -c, or "console" for --name) with the session started anyway."""
    sid = cli.new("sleep", "1000", name="web")
    proc = both(cli, *args)
    assert proc.returncode == 2 and f"argument {named}: " in one_line_error(proc), proc
    assert [s["id"] for s in cli.sessions()] == [sid]


@pytest.mark.parametrize("kind", ["file", "sysfs"])
def test_a_default_socket_directory_that_cannot_be_made_is_one_line(
    cli: Cli, sock_dir: Path, kind: str
) -> None:
    """$XDG_RUNTIME_DIR/tmuxish is a file (or cannot be created): said in one line, as a
    directory of the wrong mode or owner is, not "internal error: FileExistsError"."""
    runtime = sock_dir / "runtime"
    runtime.mkdir()
    if kind == "file":
        (runtime / "tmuxish").write_text("")
        said = f"socket directory {runtime / 'tmuxish'} is not a directory"
    else:
        runtime = Path("/sys/kernel")  # even root cannot make a directory in sysfs
        said = f"cannot create socket directory {runtime / 'tmuxish'}: Operation not permitted"
    env = {**cli.env, "XDG_RUNTIME_DIR": str(runtime)}
    for args in (("ls",), ("new", "-d", "--", "true"), ("kill", "1")):
        proc = subprocess.run(
            [*TMUXISH, *args], capture_output=True, text=True, env=env, timeout=30
        )
        assert proc.returncode == 1 and said in one_line_error(proc), proc


@pytest.mark.parametrize(
    ("option", "said"),
    [("-S", "-S needs a socket path"), ("-L", "invalid socket name ''")],
)
@pytest.mark.parametrize("args", [("ls",), ("new", "-d", "--", "true"), ("kill", "1")])
def test_an_empty_socket_option_is_not_the_default_server(
    cli: Cli, sock_dir: Path, option: str, said: str, args: tuple[str, ...]
) -> None:
    """`tmuxish -S "$SOCK" kill 1` with SOCK unset must not reach (or start) the default
    server and act on its sessions."""
    env = {**cli.env, "XDG_RUNTIME_DIR": str(sock_dir)}
    try:
        proc = subprocess.run(
            [*TMUXISH, option, "", *args], capture_output=True, text=True, env=env, timeout=30
        )
        assert proc.returncode == 2 and said in one_line_error(proc), proc
        assert not (sock_dir / "tmuxish").exists()
    finally:
        # Were it the default server after all, it must not outlive the test.
        subprocess.run([*TMUXISH, "kill-server"], capture_output=True, env=env, timeout=30)


@pytest.mark.parametrize(
    "args",
    [
        ("new", "--", "sleep", "1000"),
        ("new", "-s", "fresh", "--", "sleep", "1000"),
        ("new", "-A", "-s", "fresh", "--", "sleep", "1000"),
    ],
)
def test_new_without_a_terminal_starts_nothing(cli: Cli, args: tuple[str, ...]) -> None:
    """`new` (which attaches) with stdin not a terminal fails as tmux's "not a terminal"
    does: before the session is made, not after, leaving it running unseen."""
    sid = cli.new("sleep", "1000", name="web")
    proc = cli.run(*args, check=False)
    assert proc.returncode == 2 and "needs a terminal" in one_line_error(proc), proc
    assert [s["id"] for s in cli.sessions()] == [sid]


@pytest.mark.parametrize("command", ["record", "log"])
def test_a_fifo_nobody_reads_is_named_as_such(cli: Cli, command: str) -> None:
    """`record web FIFO` said "No such device or address" (ENXIO from the non-blocking
    open); `log` already said what it is."""
    import os

    cli.new("sh", name="web")
    fifo = cli.socket_path.parent / "fifo"
    os.mkfifo(fifo)
    proc = both(cli, command, "web", str(fifo))
    assert "it is a FIFO that nobody reads" in one_line_error(proc), proc
    assert cli.session(1)["status"] == "running"


@pytest.mark.parametrize("extra", [(), ("--raw",), ("--stdin",)])
def test_run_into_a_closed_pipe_stops_quietly(cli: Cli, extra: tuple[str, ...]) -> None:
    """`tmuxish run -- yes | head -1`: exit 141 without a word, as `ssh host yes | head -1`
    (killed by SIGPIPE); the command is interrupted and the shell takes the next run.
    (--raw is the fast path's too; --stdin only the full CLI's.)"""
    cli.new("sh", name="sh")
    proc = subprocess.Popen(
        cli.argv("run", "-t", "sh", *extra, "--", "yes"),
        env=cli.env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stdout.readline().rstrip(b"\r\n") == b"y"
    proc.stdout.close()
    _, err = proc.communicate(timeout=20)
    assert (proc.returncode, err) == (141, b""), err
    after = cli.run("run", "-t", "sh", "--timeout", "20", "--", "echo", "after")
    assert after.stdout == "after\n"


@pytest.mark.parametrize("sid", ["99999999999999999999", "\u0661", "\u00b2", "x"])
@pytest.mark.parametrize("command", ["kill", "wait"])
def test_a_garbled_tmuxish_variable_is_outside_any_session(
    cli: Cli, sid: str, command: str
) -> None:
    """$TMUXISH=SOCKET,ID with an ID that is no id of ours: as outside a session (`kill`
    needs a TARGET), not session 1 (an Arabic-Indic one is a digit to str.isdigit) or an
    internal error."""
    web = cli.new("sleep", "1000", name="web")
    cli.env["TMUXISH"] = f"{cli.socket_path},{sid}"
    proc = cli.run(command, check=False)
    assert proc.returncode == 2 and "needs a TARGET" in one_line_error(proc), proc
    assert cli.session(web)["status"] == "running"


def test_run_stdin_too_big_for_one_request_says_so(cli: Cli) -> None:
    """`run --stdin` with more input than a request may carry: the limit, not "lost connection
    to the server: Broken pipe"; nothing is typed, and the shell takes the next run."""
    cli.new("sh", name="sh")
    proc = subprocess.run(
        cli.argv("run", "--stdin", "-t", "sh", "--", "wc", "-c"),
        input=b"a" * (8 * 1024 * 1024 + 1),  # past the server's frame limit
        capture_output=True,
        env=cli.env,
        timeout=30,
    )
    err = proc.stderr.decode()
    assert proc.returncode == 2 and "--stdin takes at most" in err and err.count("\n") == 1, err
    after = cli.run("run", "-t", "sh", "--timeout", "20", "--", "echo", "after")
    assert after.stdout == "after\n"


@pytest.mark.parametrize(
    "args",
    [
        ("new", "-d", "--", "no\nsuch\x1b]0;title\x07program"),
        ("new", "-d", "-c", "/no/such\ndir", "--", "true"),
        ("bo\ngus",),
    ],
)
def test_control_characters_in_an_error_are_shown_not_sent(cli: Cli, args: tuple[str, ...]) -> None:
    """A program name or path with a newline made a two-line error, and an escape sequence in
    one reached the user's terminal (retitling it here), as ls must not do either."""
    cli.new("sleep", "1000", name="web")
    err = one_line_error(both(cli, *args))
    assert "\x1b" not in err and "\x07" not in err


@pytest.mark.parametrize(
    ("setup", "said", "status"),
    [
        ("#!/no/such/interpreter\n", "the interpreter its #! line names was not found", 127),
        ("cwd-file", "not a directory: ", 1),
    ],
)
def test_a_program_that_cannot_start_is_told_apart(
    cli: Cli, setup: str, said: str, status: int
) -> None:
    """ "program not found: ./script" for a script that is there (its interpreter is not), and
    "directory not found" for -c naming a file, send the user to look for the wrong thing."""
    script = cli.socket_path.parent / "script"
    script.write_text(setup if setup.startswith("#!") else "#!/bin/sh\n")
    script.chmod(0o755)
    if setup == "cwd-file":
        args: tuple[str, ...] = ("new", "-d", "-c", str(script), "--", "true")
    else:
        args = ("new", "-d", "--", str(script))
    proc = both(cli, *args)
    assert proc.returncode == status and said in one_line_error(proc), proc


@pytest.mark.parametrize("when", ["raw mode on", "event loop running"])
@pytest.mark.parametrize("mode", ["direct", "relay"])
def test_sigterm_to_an_attached_client_restores_the_terminal(
    cli: Cli, mode: str, when: str
) -> None:
    """`kill CLIENT` or `timeout 60 tmuxish attach web`: the client detached and restored the
    terminal first (SIGTERM's default left the user's shell in raw mode, without echo); it
    exits as a SIGTERM would (143) and the session goes on."""
    import os
    import signal
    import termios

    if mode == "relay":
        cli.env["TMUXISH_ATTACH_MODE"] = "relay"
    sid = cli.new("sh", "-c", "echo ready; exec sleep 1000", name="web")
    child = cli.spawn("attach", "web")
    child.expect_exact("ready")
    wait_for(lambda: not termios.tcgetattr(child.child_fd)[3] & termios.ECHO, 10, "raw mode")
    if when == "event loop running":
        wait_for(lambda: _has_fd(child.pid, "anon_inode:[eventpoll]"), 10, "the event loop")
    os.kill(child.pid, signal.SIGTERM)
    # On the relay's loop it detaches by name; a moment earlier, before the loop runs, it
    # cannot name the session yet.
    child.expect(r"\[detached( from session web \(1\))?: terminated\]")
    wait_for(lambda: not child.isalive(), 10, "the client to exit")
    assert child.exitstatus == 143
    lflag = termios.tcgetattr(child.child_fd)[3]
    assert lflag & termios.ECHO and lflag & termios.ICANON
    assert cli.session(sid)["status"] == "running"


def test_sigterm_to_the_chooser_restores_the_terminal(cli: Cli) -> None:
    """The chooser, like attach: SIGTERM leaves the full-screen application first (raw mode
    off, alternate screen left) and exits 143; the sessions are untouched."""
    import os
    import signal
    import termios

    cli.new("sh", name="one")
    cli.new("sh", name="two")
    child = cli.spawn("choose")
    child.expect_exact("two")
    wait_for(lambda: not termios.tcgetattr(child.child_fd)[3] & termios.ECHO, 10, "raw mode")
    os.kill(child.pid, signal.SIGTERM)
    child.expect_exact("\x1b[?1049l")
    wait_for(lambda: not child.isalive(), 10, "the chooser to exit")
    assert child.exitstatus == 143
    lflag = termios.tcgetattr(child.child_fd)[3]
    assert lflag & termios.ECHO and lflag & termios.ICANON
    assert [s["status"] for s in cli.sessions()] == ["running", "running"]


@pytest.mark.parametrize("mode", ["direct", "relay"])
def test_a_terminal_wider_than_the_server_takes_is_clamped(cli: Cli, mode: str) -> None:
    """A terminal of 30000x20000 (a huge window, a broken TIOCGWINSZ): attach takes the most
    the server allows, as a window resize does, instead of failing with "cols must be an
    integer from 0 to 10000"; growing to it while attached keeps the client attached."""
    if mode == "relay":
        cli.env["TMUXISH_ATTACH_MODE"] = "relay"
    sid = cli.new("sh", name="web")
    child = cli.spawn("attach", "web", rows=20000, cols=30000)
    wait_for(lambda: cli.session(sid)["cols"] == 10000, 10, "the clamped size")
    child.setwinsize(24, 80)
    wait_for(lambda: cli.session(sid)["cols"] == 80, 10, "the terminal's own size")
    child.setwinsize(20000, 30000)
    wait_for(lambda: cli.session(sid)["cols"] == 10000, 10, "the clamped size again")
    assert child.isalive() and cli.session(sid)["clients"] == 1
    child.send(b"\x10\x11")
    child.expect_exact("[detached from session web (1)]")


@pytest.mark.parametrize("kind", ["directory", "device"])
def test_logs_refuses_what_is_not_a_log_file(cli: Cli, kind: str) -> None:
    """Something else in the log file's place: "internal error: IsADirectoryError" for a
    directory, and a device (/dev/zero) was read forever."""
    import os

    log = cli.socket_path.parent / "web.log"
    sid = int(cli.run("new", "-d", "-s", "web", "--log", str(log), "--", "sh").stdout)
    log.unlink()
    if kind == "directory":
        log.mkdir()
    else:
        os.symlink("/dev/zero", log)
    for args in (("logs", "web"), ("logs", "-f", "web")):
        proc = cli.run(*args, check=False, timeout=10)
        assert "not a regular file" in one_line_error(proc), proc
    assert cli.session(sid)["status"] == "running"


@pytest.mark.parametrize(
    "args",
    [
        ("ls",),
        ("ls", "--json"),
        ("capture", "web"),
        ("new", "-d", "--", "true"),
        ("--help",),
        ("run", "-t", "sh", "--", "echo", "hi"),
    ],
)
def test_output_to_a_full_disk_is_one_line_error(cli: Cli, args: tuple[str, ...]) -> None:
    """`tmuxish ls > /dev/full`: "cannot write output: No space left on device" and exit 1, as
    ls(1) says "write error"; it was a traceback on the fast path, "internal error" on the
    full CLI, and `--help` exited 0 (argparse drops write errors)."""
    cli.new("sleep", "1000", name="web")
    cli.new("sh", name="sh")
    with open("/dev/full", "wb") as full:
        for argv in (cli.argv(*args), [*FULL, "-S", str(cli.socket_path), *args]):
            proc = subprocess.run(
                argv, stdout=full, stderr=subprocess.PIPE, text=True, env=cli.env, timeout=30
            )
            assert (proc.returncode, proc.stderr) == (
                1,
                "tmuxish: cannot write output: No space left on device\n",
            ), (argv, proc)


@pytest.mark.parametrize("variable", ["TMUXISH_SSH_OPTS", "TMUXISH_REMOTE_COMMAND"])
def test_unbalanced_quotes_in_an_ssh_setting_are_one_line(cli: Cli, variable: str) -> None:
    """The README's TMUXISH_SSH_OPTS / TMUXISH_REMOTE_COMMAND with an unbalanced quote was
    "internal error: ValueError: No closing quotation"; ssh is never started."""
    env = {**cli.env, variable: "-i '~/.ssh/work key", "PATH": "/nonexistent"}
    proc = subprocess.run(
        [*TMUXISH, "-H", "ssh://localhost", "ls"],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
    )
    assert proc.returncode == 2 and variable in one_line_error(proc), proc
