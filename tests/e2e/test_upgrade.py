"""`tmuxish server upgrade` keeps every session: same PIDs, no SIGHUP, exit codes, clients."""

from __future__ import annotations

import json
import os

import pexpect
from helpers import Cli, pid_alive, wait_for


def test_upgrade_keeps_sessions_and_clients(cli: Cli) -> None:
    hup = cli.socket_path.parent / "hup"
    trap = f"trap 'echo HUP > {hup}' HUP; while :; do sleep 1; done"
    bg = cli.new("sh", "-c", trap, name="bg")
    done = cli.new("sh", "-c", "exit 9")
    wait_for(lambda: cli.session(done)["status"] == "exited", what="session 2 exit")
    cli.env["PS1"] = "PROMPT> "
    cli.env["ENV"] = "/dev/null"
    child = cli.spawn("new", "--", "sh")
    child.expect_exact("PROMPT> ")
    child.send("echo before-$((2*21))\r")
    child.expect_exact("before-42")
    server_pid = cli.server_pid()
    before = {s["id"]: s for s in cli.sessions()}

    out = cli.run("server", "upgrade").stdout
    assert "3 sessions kept" in out and "generation 1" in out

    # Same process (exec keeps the pid), same sessions, programs untouched.
    assert cli.server_pid() == server_pid
    after = {s["id"]: s for s in cli.sessions()}
    assert after.keys() == before.keys()
    for sid, s in before.items():
        for key in ("name", "command", "pid", "status", "exit_code", "cols", "rows", "created"):
            assert after[sid][key] == s[key], (sid, key)
    assert pid_alive(after[bg]["pid"])
    assert after[done]["exit_code"] == 9
    assert not hup.exists(), "a program got SIGHUP during the upgrade"

    # The attached client reconnected by itself and keeps working.
    wait_for(lambda: cli.session(3)["clients"] == 1, what="client to reconnect")
    child.send("echo after-$((2*22))\r")
    child.expect_exact("after-44")
    # Exit codes are still collected: the programs are still the server's children.
    child.send("exit 5\r")
    child.expect_exact("[session 3 exited with code 5]")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 5
    cli.run("kill", "-s", "TERM", "bg")
    wait_for(lambda: cli.session(bg)["status"] == "exited", what="bg exit")
    assert cli.session(bg)["exit_code"] == 143
    # A re-attach after the upgrade still repaints the screen carried over.
    new = cli.new("sh", "-c", "echo carried-over; exec sleep 1000")
    wait_for(lambda: "carried-over" in cli.run("capture", str(new)).stdout, what="output")
    cli.run("server", "upgrade")
    assert "carried-over" in cli.run("capture", str(new)).stdout
    assert json.loads(cli.run("ls", "--json").stdout)[-1]["status"] == "running"
    assert os.path.exists(cli.socket_path)


def test_upgrade_while_the_screen_model_is_behind_a_flood(cli: Cli) -> None:
    # A session whose screen model is behind a flood (the old process resyncs it from the
    # tail before handing the screen over) keeps its program, and its screen is right after.
    flood = "\\033[1;31mred\\033[0m \\033[42mgreen\\033[0m"
    trap = "trap \"printf '\\\\030\\\\n'; echo stopped-\\$((6*7))\" INT"
    sid = cli.new("sh", "-c", f"{trap}; yes \"$(printf '{flood}')\"; sleep 1000")
    wait_for(lambda: "(screen behind)" in cli.run("ls").stdout, 20, "the model to fall behind")
    pid = cli.session(sid)["pid"]

    assert "1 sessions kept" in cli.run("server", "upgrade").stdout
    assert cli.session(sid)["pid"] == pid and cli.session(sid)["status"] == "running"
    cli.run("send", str(sid), "C-c")

    def stopped() -> bool:
        lines = [line for line in cli.run("capture", str(sid)).stdout.splitlines() if line]
        return bool(lines) and lines[-1].endswith("stopped-42")

    wait_for(stopped, 20, "the program's last words on the captured screen")
    assert "red green" in cli.run("capture", str(sid)).stdout
