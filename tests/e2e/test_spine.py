"""The real CLI under a real PTY: what a user does every day."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import zipfile
from pathlib import Path

import pexpect
import pytest
from helpers import Cli, pid_alive, wait_for

PROMPT = "PROMPT> "


def shell(cli: Cli) -> list[str]:
    cli.env["PS1"] = PROMPT
    cli.env["ENV"] = "/dev/null"
    return ["sh"]


def test_new_type_detach_reattach(cli: Cli) -> None:
    child = cli.spawn("new", "--", *shell(cli))
    child.expect_exact(PROMPT)
    child.send("echo $((6*7))\r")
    child.expect_exact("42")
    child.send("\x10\x11")
    child.expect_exact("[detached from session 1]")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    sessions = cli.sessions()
    assert [(s["id"], s["status"], s["clients"]) for s in sessions] == [(1, "running", 0)]

    again = cli.spawn("attach", "1")
    # The repaint brings back what was on the screen before.
    again.expect_exact("42")
    again.send("echo back-$((1+1))\r")
    again.expect_exact("back-2")
    again.send("\x10\x11")
    again.expect(pexpect.EOF)
    again.close()
    assert again.exitstatus == 0


def test_stty_size_follows_resize(cli: Cli) -> None:
    child = cli.spawn("new", "--", *shell(cli), rows=24, cols=80)
    child.expect_exact(PROMPT)
    child.send("stty size\r")
    child.expect_exact("24 80")
    child.setwinsize(40, 120)
    wait_for(lambda: cli.session(1)["cols"] == 120, what="session to take the new size")
    child.send("stty size\r")
    child.expect_exact("40 120")
    child.sendcontrol("p")
    child.sendcontrol("q")
    child.expect(pexpect.EOF)


def test_exit_code_is_returned(cli: Cli) -> None:
    child = cli.spawn("new", "--", *shell(cli))
    child.expect_exact(PROMPT)
    child.send("exit 7\r")
    child.expect_exact("[session 1 exited with code 7]")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 7
    session = cli.session(1)
    assert session["status"] == "exited" and session["exit_code"] == 7
    table = cli.run("ls").stdout
    assert "exited (7)" in table


def test_signal_exit_code(cli: Cli) -> None:
    sid = cli.new("sleep", "1000")
    cli.run("kill", "-s", "TERM", str(sid))
    wait_for(lambda: cli.session(sid)["status"] == "exited", what="exit")
    assert cli.session(sid)["exit_code"] == 128 + signal.SIGTERM
    cli.run("rm", str(sid))
    assert cli.sessions() == []


def test_two_clients_see_and_type(cli: Cli) -> None:
    sid = cli.new(*shell(cli))
    a = cli.spawn("attach", str(sid))
    b = cli.spawn("attach", str(sid))
    wait_for(lambda: cli.session(sid)["clients"] == 2, what="two clients")
    a.send("echo from-$((10+1))\r")
    a.expect_exact("from-11")
    b.expect_exact("from-11")
    b.send("echo from-$((20+2))\r")
    a.expect_exact("from-22")
    b.expect_exact("from-22")
    a.send("\x10\x11")
    a.expect(pexpect.EOF)
    wait_for(lambda: cli.session(sid)["clients"] == 1, what="one client left")


def test_kill_9_client_leaves_session_alive(cli: Cli) -> None:
    sid = cli.new(*shell(cli))
    child = cli.spawn("attach", str(sid))
    wait_for(lambda: cli.session(sid)["clients"] == 1, what="attach")
    os.kill(child.pid, signal.SIGKILL)
    wait_for(lambda: cli.session(sid)["clients"] == 0, what="server to notice the dead client")
    assert cli.session(sid)["status"] == "running"
    again = cli.spawn("attach", str(sid))
    again.send("echo alive-$((3*3))\r")
    again.expect_exact("alive-9")


def test_errors_are_one_line(cli: Cli) -> None:
    cli.new("sleep", "1000", name="web")
    for args, needle in [
        (("attach", "nosuch"), "no session named 'nosuch'"),
        (("kill", "42"), "no session 42"),
        (("new", "-d", "-s", "web", "--", "true"), "already exists"),
        (("new", "-d", "--", "no-such-program-xyz"), "program not found"),
        (("new", "-d", "-c", "/no/such/dir", "--", "true"), "directory not found"),
        (("rm", "web"), "still running"),
        (("kill", "-s", "NOSIG", "web"), "unknown signal"),
        (("bogus-command",), "unknown command 'bogus-command'"),
    ]:
        proc = cli.run(*args, check=False)
        assert proc.returncode != 0, args
        assert needle in proc.stderr, (args, proc.stderr)
        assert proc.stderr.count("\n") == 1, proc.stderr
        assert "Traceback" not in proc.stderr


def test_no_server(sock_dir: Path) -> None:
    cli = Cli(sock_dir / "none")
    # As tmux ls: says so, exit 1 (issue 14); --json still gives scripts a list.
    proc = cli.run("ls", check=False)
    assert proc.stdout == "" and proc.returncode == 1
    assert proc.stderr == f"tmuxish: no server running on {sock_dir / 'none'}\n"
    assert json.loads(cli.run("ls", "--json").stdout) == []
    proc = cli.run("attach", "1", check=False)
    assert proc.returncode == 1 and "no server running" in proc.stderr
    assert not (sock_dir / "none").exists()


def test_ls_json_fields(cli: Cli) -> None:
    sid = cli.new("sleep", "1000", name="job", size=(100, 30))
    [s] = cli.sessions()
    assert s["id"] == sid == 1
    assert s["name"] == "job"
    assert s["command"] == ["sleep", "1000"]
    assert isinstance(s["pid"], int) and pid_alive(s["pid"])
    assert s["status"] == "running" and s["exit_code"] is None
    assert s["clients"] == 0 and (s["cols"], s["rows"]) == (100, 30)
    from datetime import datetime

    datetime.fromisoformat(s["created"])
    assert cli.new("true") == 2  # ids increase and are never reused


def test_env_and_cwd(cli: Cli, tmp_path: Path) -> None:
    out = tmp_path / "out"
    sid = cli.new("sh", "-c", f'echo "$FOO:$TMUXISH:$(pwd)" > {out}')
    cli.run(
        "new",
        "-d",
        "-e",
        "FOO=bar",
        "-c",
        str(tmp_path),
        "--",
        "sh",
        "-c",
        f'echo "$FOO:$TMUXISH:$(pwd)" > {out}',
    )
    wait_for(lambda: out.exists() and out.read_text().startswith("bar"), what="output file")
    assert out.read_text().strip() == f"bar:{cli.socket_path},{sid + 1}:{tmp_path}"


def test_attach_to_own_session_is_refused(cli: Cli) -> None:
    child = cli.spawn("new", "--", *shell(cli))
    child.expect_exact(PROMPT)
    child.send(f"{sys.executable} -P -m tmuxish -S {cli.socket_path} attach 1; echo rc=$?\r")
    child.expect_exact("from inside itself")
    child.expect_exact("rc=1")


def test_ctrl_p_alone_reaches_the_program_after_a_pause(cli: Cli) -> None:
    child = cli.spawn("new", "--", "od", "-c")
    wait_for(lambda: cli.sessions() and cli.session(1)["clients"] == 1, what="attach")
    child.sendcontrol("p")
    child.send("\x04\x04")  # flush the line, then EOF: od prints what it read
    child.expect_exact("020")  # od -c shows ^P as octal 020
    child.expect(pexpect.EOF)


def test_custom_detach_keys_from_env(cli: Cli) -> None:
    cli.env["TMUXISH_DETACH_KEYS"] = "ctrl-a,d"
    sid = cli.new(*shell(cli))
    child = cli.spawn("attach", str(sid))
    child.send("echo ok-$((5+5))\r")
    child.expect_exact("ok-10")
    child.send("\x01d")
    child.expect_exact(f"[detached from session {sid}]")
    child.expect(pexpect.EOF)
    # The flag beats the environment.
    child = cli.spawn("attach", "--detach-keys", "ctrl-x", str(sid))
    child.send("\x18")
    child.expect_exact(f"[detached from session {sid}]")


def test_server_gone_restores_terminal(cli: Cli) -> None:
    sid = cli.new(*shell(cli))
    child = cli.spawn("attach", str(sid))
    wait_for(lambda: cli.session(sid)["clients"] == 1, what="attach")
    cli.run("kill-server")
    child.expect(r"\[(server exited|session 1 exited with code \d+)\]")
    child.expect(pexpect.EOF)


def test_wheel_has_no_top_level_client_or_server(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[2]
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(root)],
        check=True,
        capture_output=True,
    )
    [wheel] = tmp_path.glob("tmuxish-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    stem = wheel.name.split("-")[0] + "-" + wheel.name.split("-")[1]
    assert tops <= {"tmuxish", stem + ".dist-info", stem + ".data"}
    assert "tmuxish/client/attach.py" in names and "tmuxish/server/session.py" in names
    # The command is our own script, not a console_scripts wrapper (pip's imports re first).
    assert [n for n in names if n.startswith(stem + ".data/")] == [stem + ".data/scripts/tmuxish"]
    script = zipfile.ZipFile(wheel).read(stem + ".data/scripts/tmuxish").decode()
    assert script.startswith("#!python\n") and "import re" not in script
    assert "from tmuxish.quick import entry" in script
    assert "tmuxish/protocol.py" in names and "tmuxish/py.typed" in names
    assert not any(n.startswith(("client/", "server/")) for n in names)


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_both_loops_end_to_end(cli: Cli, loop: str) -> None:
    cli.env["TMUXISH_LOOP"] = loop
    child = cli.spawn("new", "--", *shell(cli))
    child.expect_exact(PROMPT)
    child.send("printf 'a\\001b\\377c' | od -An -tx1\r")
    child.expect_exact("61 01 62 ff 63")
    child.send("\x10\x11")
    child.expect(pexpect.EOF)


@pytest.mark.parametrize("mode", ["relay", "direct"])
def test_attach_modes(cli: Cli, mode: str) -> None:
    """Direct: the server drives the passed terminal; relay: bytes go through the client."""
    cli.env["TMUXISH_ATTACH_MODE"] = mode
    child = cli.spawn("new", "--", *shell(cli))
    child.expect_exact(PROMPT)
    child.send("printf 'x\\001y\\377z' | od -An -tx1\r")
    child.expect_exact("78 01 79 ff 7a")
    child.setwinsize(33, 91)
    wait_for(lambda: cli.session(1)["cols"] == 91, what="resize")
    child.send("stty size\r")
    child.expect_exact("33 91")
    child.sendcontrol("p")
    child.sendcontrol("q")
    child.expect_exact("[detached from session 1]")
    child.expect(pexpect.EOF)


@pytest.mark.parametrize(
    "line", [["ls"], ["send", "1", "echo", "Enter"], ["capture", "1"], ["kill", "1"]]
)
def test_everyday_commands_stay_light(cli: Cli, line: list[str]) -> None:
    # Issue 6: ls, kill, send and capture within 2.5x `python -c pass`. What they import decides
    # it (argparse, pathlib and typing with re alone cost ~40 ms at a cold start); checked here by
    # what is imported, the time itself is the benchmark's business.
    cli.new("sh")
    env = {**cli.env, "PYTHONPROFILEIMPORTTIME": "1"}

    def imports(argv: list[str]) -> set[str]:
        proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=30, check=True)
        return {row.split("|")[-1].strip() for row in proc.stderr.splitlines() if "|" in row}

    # What this environment's site start-up imports anyway (an editable install's finder
    # imports pathlib and typing) is not the command's doing.
    imported = imports(cli.argv(*line)) - imports([sys.executable, "-P", "-c", "pass"])
    assert "tmuxish.quick" in imported
    heavy = {"argparse", "pathlib", "typing", "re", "dataclasses", "asyncio", "uvloop"}
    assert not heavy & imported, sorted(heavy & imported)


@pytest.mark.parametrize("mode", ["relay", "direct"])
def test_detach_resets_the_terminal_once(cli: Cli, mode: str) -> None:
    """Direct attach: the server resets the terminal itself and tells the client it did; the
    client must not read that as "unknown" and reset it again with its own defaults."""
    cli.env["TMUXISH_ATTACH_MODE"] = mode
    child = cli.spawn("new", "--", *shell(cli))
    child.expect_exact(PROMPT)
    child.send("\x10\x11")
    child.expect_exact("[detached from session 1]")
    # Bracketed paste off is in both the screen model's reset and the client's fallback.
    assert child.before.count(b"\x1b[?2004l") == 1, child.before
    child.expect(pexpect.EOF)
