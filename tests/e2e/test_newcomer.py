"""What a new user trips over (issue 14), each through the real CLI, most in a real terminal.

Where the behaviour follows tmux or docker, the test says which.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pexpect
import pytest
from helpers import TMUXISH, Cli, wait_for

pytest.importorskip("pyghostty")

from term_model import DETACH, PROMPT, Term, shell


def exited(cli: Cli, sid: int) -> None:
    wait_for(lambda: cli.session(sid)["status"] == "exited", what=f"session {sid} to exit")


# -- item 4: exited sessions and their names ----------------------------------------------------


def test_name_is_taken_over_from_an_exited_session(cli: Cli) -> None:
    """docker needs `rm` first; tmux forgets ended sessions. Here the new session takes the name
    and the exited one stays listed under its id."""
    old = cli.new("sh", "-c", "exit 3", name="calc")
    exited(cli, old)
    new = cli.new("sleep", "1000", name="calc")
    assert new != old
    by_id = {s["id"]: s for s in cli.sessions()}
    assert by_id[old]["name"] is None and by_id[old]["exit_code"] == 3
    assert by_id[new]["name"] == "calc" and by_id[new]["status"] == "running"
    # A running holder still refuses.
    proc = cli.run("new", "-d", "-s", "calc", "--", "true", check=False)
    assert proc.returncode != 0 and "already exists" in proc.stderr


def test_new_A_attaches_to_the_running_session_else_creates_it(cli: Cli) -> None:
    """tmux's `new -A -s NAME`."""
    argv = shell(cli)
    term = Term(cli, "new", "-A", "-s", "calc", "--", *argv)
    term.shows(PROMPT.rstrip())
    [s] = wait_for(cli.sessions, what="the session")
    assert s["name"] == "calc"
    term.send("echo made-$((6*7))\r")
    term.shows("made-42")
    term.send(DETACH)
    term.shows(f"[detached from session calc ({s['id']})]")
    assert term.exit_status() == 0
    again = Term(cli, "new", "-A", "-s", "calc", "--", "false")  # the command is not run
    again.shows("made-42")  # the repaint of the running session
    wait_for(lambda: cli.session(s["id"])["clients"] == 1, what="a client on calc")
    assert len(cli.sessions()) == 1
    again.send(DETACH)
    assert again.exit_status() == 0
    # With -d: the id of the running session, nothing new started.
    assert cli.run("new", "-A", "-d", "-s", "calc", "--", "false").stdout == f"{s['id']}\n"
    assert len(cli.sessions()) == 1
    proc = cli.run("new", "-A", "-d", "--", "true", check=False)
    assert proc.returncode == 2 and "-A needs -s NAME" in proc.stderr


def test_new_rm_forgets_the_session_when_it_exits(cli: Cli) -> None:
    """docker run --rm: attached, the client still gets the exit code."""
    term = Term(cli, "new", "--rm", "-s", "once", "--", "sh", "-c", "read x; exit 5")
    wait_for(lambda: [s["name"] for s in cli.sessions()] == ["once"], what="the session")
    term.send("\r")
    assert term.exit_status() == 5
    term.shows("[session once")
    wait_for(lambda: cli.sessions() == [], what="the session to be forgotten")
    sid = cli.run("new", "-d", "--rm", "--", "sh", "-c", "exit 0").stdout.strip()
    assert sid.isdigit()
    kept = cli.new("sh", "-c", "exit 1")
    exited(cli, kept)
    wait_for(lambda: [s["id"] for s in cli.sessions()] == [kept], what="only the kept session")


def test_prune_forgets_every_exited_session(cli: Cli) -> None:
    """docker container prune; prints the ids it forgot."""
    gone = [cli.new("sh", "-c", f"exit {n}") for n in (0, 3)]
    live = cli.new("sleep", "1000", name="live")
    for sid in gone:
        exited(cli, sid)
    out = cli.run("prune").stdout
    assert out.split() == [str(s) for s in gone]
    assert [s["id"] for s in cli.sessions()] == [live]
    assert cli.run("prune").stdout == ""


# -- item 5: inside a session, no target means this session --------------------------------------


def test_inside_a_session_no_target_means_this_session(cli: Cli, sock_dir: Path) -> None:
    """As tmux uses the current pane (and finds its server through $TMUX): no -S inside."""
    argv = shell(cli)
    inner = cli.new(*argv)
    cli.new(*argv)  # newer, so the most recently used outside
    out = sock_dir / "cap.txt"
    me = " ".join(TMUXISH)
    typed = f"echo MARK-$((40+1)); {me} capture > {out}; echo DONE-$((1+1))\r"
    cli.run("send", str(inner), "-l", typed)
    wait_for(lambda: "DONE-2" in cli.run("capture", str(inner)).stdout, what="the inner capture")
    assert "MARK-41" in out.read_text()
    # kill with no target is this session too (outside, a TARGET is needed).
    cli.run("send", str(inner), "-l", f"{me} kill\r")
    exited(cli, inner)
    assert cli.session(inner)["exit_code"] == 128 + 1  # SIGHUP
    proc = cli.run("kill", check=False)
    assert proc.returncode == 2 and "kill needs a TARGET" in proc.stderr


# -- item 6: logs ---------------------------------------------------------------------------------


def test_logs_follow_prints_until_the_session_exits(cli: Cli, sock_dir: Path) -> None:
    """docker logs -f."""
    log = sock_dir / "job.log"
    cli.run(
        "new",
        "-d",
        "-s",
        "job",
        "--log",
        str(log),
        "--",
        "sh",
        "-c",
        "echo one-$((0+1)); read x; echo two-$((1+1))",
    )
    wait_for(lambda: log.exists() and "one-1" in log.read_text(), what="the log")
    child = cli.spawn("logs", "-f", "job")
    child.expect_exact("one-1")
    cli.run("send", "job", "Enter")
    child.expect_exact("two-2")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    assert "two-2" in cli.run("logs", "job").stdout


def test_log_turns_on_and_off_for_a_running_session(cli: Cli, sock_dir: Path) -> None:
    """tmux's pipe-pane."""
    sid = cli.new("cat")
    log = sock_dir / "cat.log"
    proc = cli.run("logs", str(sid), check=False)
    assert proc.returncode == 1 and f"session {sid} has no log" in proc.stderr
    cli.run("log", str(sid), str(log))
    assert cli.session(sid)["log"] == str(log)
    cli.run("send", str(sid), "-l", "alpha\r")
    wait_for(lambda: "alpha" in log.read_text(), what="alpha in the log")
    cli.run("log", "--off", str(sid))
    assert "log" not in cli.session(sid)
    cli.run("send", str(sid), "-l", "beta\r")
    wait_for(lambda: "beta" in cli.run("capture", str(sid)).stdout, what="beta on screen")
    assert "beta" not in log.read_text()
    proc = cli.run("log", str(sid), check=False)
    assert proc.returncode == 2 and "FILE" in proc.stderr


# -- item 7: messages and help -------------------------------------------------------------------


def test_config_show_is_a_config_file_the_loader_takes(cli: Cli, sock_dir: Path) -> None:
    shown = cli.run("config", "--show").stdout
    values = tomllib.loads(shown)
    assert values["default_size"] == "80x24" and "default_command" not in values
    path = sock_dir / "config.toml"
    path.write_text(shown)
    cli.env["TMUXISH_CONFIG"] = str(path)
    again = cli.run("config", "--show").stdout
    assert tomllib.loads(again) == values


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (("new", "-d", "-x", "0", "--", "true"), "-x"),
        (("new", "-d", "-y", "-3", "--", "true"), "-y"),
        (("new", "-d", "--log-max", "10", "--log", "/tmp/x", "--", "true"), "--log-max"),
        (("new", "-d", "--detach-keys", "ctrl-", "--", "true"), "--detach-keys"),
        (("new", "-d", "--window-size", "huge", "--", "true"), "--window-size"),
    ],
)
def test_errors_name_the_option_typed(cli: Cli, args: tuple[str, ...], named: str) -> None:
    proc = cli.run(*args, check=False)
    assert proc.returncode == 2, proc
    assert named in proc.stderr and proc.stderr.count("\n") == 1
    for key in ("cols", "rows", "log_max", "detach_keys", "window_size"):
        assert key not in proc.stderr
    assert cli.server_pid() is None or cli.sessions() == []


def test_unknown_command_suggests_and_hides_the_completion_helper(cli: Cli) -> None:
    proc = cli.run("atach", check=False)
    assert proc.returncode == 2
    assert "unknown command 'atach'; did you mean 'attach'?" in proc.stderr
    assert "_complete" not in proc.stderr
    proc = cli.run("zzzz", check=False)
    assert "unknown command 'zzzz'" in proc.stderr and "_complete" not in proc.stderr
    assert "_complete" not in cli.run("--help").stdout


def test_every_target_argument_has_help(cli: Cli) -> None:
    commands = ["attach", "kill", "rm", "capture", "send", "wait", "rename", "logs", "log"]
    for command in commands:
        text = cli.run(command, "--help").stdout
        line = next(ln for ln in text.splitlines() if ln.strip().startswith("target"))
        assert "session id or name" in line, (command, line)


def test_ls_without_server_and_with_no_sessions(cli: Cli) -> None:
    """tmux ls: 'no server running on ...', exit 1."""
    proc = cli.run("ls", check=False)
    assert proc.returncode == 1 and f"no server running on {cli.socket_path}" in proc.stderr
    assert cli.run("ls", "--json").stdout == "[]\n"  # scripts get an empty list
    sid = cli.new("true")
    exited(cli, sid)
    cli.run("rm", str(sid))
    assert cli.run("ls").stdout.split() == [
        "ID",
        "NAME",
        "COMMAND",
        "STATUS",
        "CLIENTS",
        "SIZE",
        "AGE",
    ]


def test_ls_keeps_the_command_quoting(cli: Cli) -> None:
    sid = cli.new("sh", "-c", "echo bye; exit 3")
    exited(cli, sid)
    row = cli.run("ls").stdout.splitlines()[1]
    assert "sh -c 'echo bye; exit 3'" in row and "exited (3)" in row


def test_detach_line_names_the_session(cli: Cli) -> None:
    sid = cli.new("sleep", "1000", name="wide")
    term = Term(cli, "attach", "wide")
    wait_for(lambda: cli.session(sid)["clients"] == 1, what="a client")
    term.send(DETACH)
    term.shows(f"[detached from session wide ({sid})]")
    assert term.exit_status() == 0


# -- item 8: the socket directory and what goes with the server -----------------------------------


def test_s_in_a_missing_directory_is_refused(cli: Cli, sock_dir: Path) -> None:
    """tmux refuses too; only the default directory is created."""
    missing = sock_dir / "nope" / "deeper"
    proc = cli.run("-S", str(missing / "x"), "new", "-d", "--", "true", check=False)
    assert proc.returncode == 2
    assert f"socket directory {missing} does not exist" in proc.stderr
    assert not (sock_dir / "nope").exists()


def test_kill_server_leaves_nothing_behind(cli: Cli, sock_dir: Path) -> None:
    cli.new("sleep", "1000")
    assert sorted(p.name for p in sock_dir.iterdir()) == ["s", "s.lock", "s.log"]
    cli.run("kill-server")
    assert list(sock_dir.iterdir()) == []


def test_readme_python_example_runs_again_and_leaves_nothing(cli: Cli) -> None:
    """The README's SyncClient example, verbatim, three times on one server: the name `calc`
    is free again each time and nothing piles up (27 runs used to leave 27 exited sessions, and
    the second run failed on the name)."""
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    block = readme.split("```python\n", 1)[1].split("```", 1)[0]
    code = block.split("async def main", 1)[0]
    assert "SyncClient()" in code and 'name="calc"' in code
    env = {k: v for k, v in cli.env.items() if k != "TMUXISH"}
    env["TMUXISH_SOCKET"] = str(cli.socket_path)
    for _ in range(3):
        out = subprocess.run(
            [sys.executable, "-P", "-c", code],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            check=False,
        )
        assert out.returncode == 0, out.stderr
        assert out.stdout.endswith("137\n"), out.stdout
        assert cli.sessions() == []
    assert os.path.exists(cli.socket_path)


def test_ls_json_is_valid_after_everything(cli: Cli) -> None:
    cli.new("sleep", "1000", name="a")
    assert json.loads(cli.run("ls", "--json").stdout)[0]["name"] == "a"


# -- item 9: the 16 base colours keep their own SGR codes -----------------------------------------


def test_repaint_and_capture_keep_base_colour_codes(cli: Cli) -> None:
    """As tmux repaints them: SGR 31 stays 31 and 103 stays 103 (not 38;5;1 and 48;5;11, which
    terminals that brighten bold only for 30-37 render differently); 256 colours stay 38;5;N."""
    paint = r"\033[1;31mred\033[0m \033[103mhi-bg\033[0m \033[38;5;208morange\033[0m\n"
    sid = cli.new("sh", "-c", f"printf '{paint}'; exec sleep 1000")
    wait_for(lambda: "orange" in cli.run("capture", str(sid)).stdout, what="the paint")
    colour = cli.run("capture", "-e", str(sid)).stdout
    assert "\x1b[1m\x1b[31mred" in colour and "\x1b[103mhi-bg" in colour
    assert "\x1b[38;5;208morange" in colour
    assert "38;5;1m" not in colour and "48;5;11m" not in colour
    term = Term(cli, "attach", str(sid))
    term.wait_text("orange")
    raw = bytes(term.raw)
    assert b"\x1b[31mred" in raw and b"\x1b[103mhi-bg" in raw and b"\x1b[38;5;208m" in raw
    assert b"38;5;1m" not in raw and b"48;5;11m" not in raw
    term.detach()


def test_log_and_rm_survive_a_server_upgrade(cli: Cli, sock_dir: Path) -> None:
    """A log turned on with `tmuxish log` and a `new --rm` session keep both across an upgrade."""
    logged = cli.new("cat")
    log = sock_dir / "up.log"
    cli.run("log", str(logged), str(log))
    once = int(cli.run("new", "-d", "--rm", "--", "sh", "-c", "read x; exit 4").stdout)
    cli.run("server", "upgrade")
    cli.run("send", str(logged), "-l", "after-upgrade\r")
    wait_for(lambda: "after-upgrade" in log.read_text(), what="the log after the upgrade")
    cli.run("send", str(once), "Enter")
    wait_for(lambda: [s["id"] for s in cli.sessions()] == [logged], what="--rm after upgrade")
