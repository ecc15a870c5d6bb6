"""`tmuxish server upgrade` keeps every session: same PIDs, no SIGHUP, exit codes, clients."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pexpect
import pytest
from helpers import Cli, pid_alive, wait_for


def keeper_of(cli: Cli) -> int | None:
    from tmuxish.client.connection import Connection

    with Connection.open(cli.socket_path, timeout=5) as conn:
        keeper = conn.request("info").get("keeper")
    return None if keeper is None else int(keeper)


@pytest.mark.parametrize("keeper", ["0", "1"], ids=["exec", "keeper"])
def test_upgrade_keeps_sessions_and_clients(cli: Cli, keeper: str) -> None:
    """Without a keeper the server re-executes itself in place; with one (the default) it
    hands over to its keeper, which re-executes itself and starts the installed server."""
    cli.env["TMUXISH_KEEPER"] = keeper
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
    keeper_pid = keeper_of(cli)
    assert (keeper_pid is not None) == (keeper == "1")
    before = {s["id"]: s for s in cli.sessions()}

    out = cli.run("server", "upgrade").stdout
    assert "3 sessions kept" in out and "generation 1" in out

    if keeper == "0":
        # Same process (exec keeps the pid), same sessions, programs untouched.
        assert cli.server_pid() == server_pid
    else:
        # A new server; the same keeper process, which ran the installed keeper script again.
        assert cli.server_pid() != server_pid and keeper_of(cli) == keeper_pid
        log = Path(f"{cli.socket_path}.log").read_text()
        assert f"keeper {keeper_pid}: keeper re-executed in place (upgrade)" in log
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
    # Exit codes are still collected: the programs are still the server's children (or, after
    # a handover, the keeper's, which tells the new server).
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


# Plays an OCI runtime for `new --runtime` and `console-socket` without root: `run -d
# --console-socket S --pid-file F --bundle B ID` starts `sh` on a new PTY, writes its pid, sends
# the master to S and exits (so `sh` is re-parented to the nearest subreaper, as a container's
# init is); `delete -f ID` kills it and leaves a `deleted-ID` file in the bundle.
FAKE_RUNTIME = r"""#!/usr/bin/env python3
import array, os, signal, socket, sys
args = sys.argv[1:]
opts, rest = {}, []
i = 0
while i < len(args):
    if args[i] in ("--console-socket", "--pid-file", "--bundle"):
        opts[args[i]] = args[i + 1]
        i += 2
    else:
        rest.append(args[i])
        i += 1
verb, cid = rest[0], rest[-1]
state = os.path.join(os.path.dirname(os.path.abspath(__file__)), "state-" + cid)
if verb == "run":
    master, slave = os.openpty()
    pid = os.fork()
    if pid == 0:
        os.close(master)
        os.login_tty(slave)
        os.execv("/bin/sh", ["sh"])
    os.close(slave)
    with open(opts["--pid-file"], "w") as f:
        f.write(str(pid))
    with open(state, "w") as f:
        f.write(str(pid))
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(opts["--console-socket"])
        rights = array.array("i", [master]).tobytes()
        sock.sendmsg([b"/dev/ptmx"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, rights)])
elif verb == "delete":
    try:
        with open(state) as f:
            os.kill(int(f.read()), signal.SIGKILL)
    except (OSError, ValueError):
        pass
    open(os.path.join(os.path.dirname(state), "deleted-" + cid), "w").close()
"""


def test_upgrade_keeps_every_kind_and_console_socket_without_root(cli: Cli, tmp_path: Path) -> None:
    # The same as tests/containers/test_upgrade_containers.py, with a runtime played by a
    # script, so it runs anywhere.
    runtime = tmp_path / "fake-runtime"
    runtime.write_text(FAKE_RUNTIME)
    runtime.chmod(0o755)
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "config.json").write_text("{}")
    cli.env["PS1"] = "$ "

    def run_on(socket_path: str, cid: str) -> None:
        subprocess.run(
            [
                str(runtime),
                "run",
                "-d",
                "--console-socket",
                socket_path,
                "--pid-file",
                str(tmp_path / f"{cid}.pid"),
                "--bundle",
                str(bundle),
                cid,
            ],
            check=True,
            timeout=20,
        )

    def by_name(name: str) -> dict[str, Any] | None:
        return next((s for s in cli.sessions() if s["name"] == name), None)

    def echo_back(name: str, a: int, b: int) -> None:
        cli.run("send", name, f"echo out-$(({a}*{b}))", "Enter")
        wait_for(lambda: f"out-{a * b}" in cli.run("capture", name).stdout, what=name)

    persistent = cli.run("console-socket", "--persist", "--name", "c").stdout.strip()
    one_shot = cli.run("console-socket", "--name", "once").stdout.strip()
    run_on(cli.run("console-socket", "--name", "rec").stdout.strip(), "rec")
    wait_for(lambda: by_name("rec"), what="session rec")
    cli.run("new", "--runtime", str(runtime), "--bundle", str(bundle), "-d", "-s", "web", "web1")
    prog = cli.new("sleep", "1000", name="prog")
    echo_back("web", 2, 3)
    echo_back("rec", 3, 4)
    before = {s["name"]: s for s in cli.sessions()}

    assert "3 sessions kept" in cli.run("server", "upgrade").stdout

    after = {s["name"]: s for s in cli.sessions()}
    assert after.keys() == before.keys()
    for name, s in before.items():
        for key in ("id", "command", "pid", "status", "container_id", "console_socket"):
            assert after[name].get(key) == s.get(key), (name, key)
    assert pid_alive(after["prog"]["pid"]) and after["prog"]["id"] == prog
    assert "out-12" in cli.run("capture", "rec").stdout
    echo_back("rec", 4, 5)
    run_on(persistent, "c1")
    wait_for(lambda: by_name("c"), what="session c from the persistent socket")
    echo_back("c", 5, 6)
    run_on(one_shot, "o1")
    wait_for(lambda: by_name("once"), what="session once from the one-shot socket")
    echo_back("once", 6, 7)
    assert os.path.exists(persistent) and not os.path.exists(one_shot)

    # Still a container session: kill, its real exit code, then RUNTIME delete -f.
    cli.run("kill", "-s", "KILL", "web")
    assert cli.run("wait", "web", check=False).returncode == 128 + 9
    wait_for(lambda: (tmp_path / "deleted-web1").exists(), what="delete -f web1")
    # A console session ends on kill; its exit code is not known.
    cli.run("kill", "rec")
    assert cli.run("wait", "rec", check=False).returncode == 125
    assert "exited (?)" in cli.run("ls").stdout
    for cid in ("rec", "c1", "o1"):
        subprocess.run([str(runtime), "delete", "-f", cid], check=True, timeout=20)
