"""Issue 13: sessions survive a crash of the server. A keeper (server/keeper.py) holds every PTY
master and the last state; after `kill -9` of the server it starts a new one that carries on."""

from __future__ import annotations

import array
import contextlib
import os
import select
import signal
import socket
import subprocess
import time
from pathlib import Path

import pexpect
from hardkit import proc_state
from helpers import Cli, pid_alive, server_info, wait_for

COUNTER = (
    "import sys, time\n"
    "i = 0\n"
    "while True:\n"
    "    print(f'tick-{i}', flush=True)\n"
    "    with open(sys.argv[1], 'w') as f: f.write(str(i))\n"
    "    i += 1; time.sleep(0.05)\n"
)


def keeper_pid(cli: Cli) -> int:
    return int(server_info(cli)["keeper"])


def new_server(cli: Cli, old: int, timeout: float = 10.0) -> int:
    """Wait until a server other than ``old`` answers; return its pid."""

    def answered() -> int | None:
        pid = cli.server_pid()
        return pid if pid not in (None, old) else None

    result: int = wait_for(answered, timeout, "a new server")
    return result


def held_screens(pid: int) -> int:
    """How many screen snapshots (memfds) ``pid`` holds."""
    count = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            count += os.readlink(f"/proc/{pid}/fd/{fd}").startswith("/memfd:tmuxish-screen")
    return count


def identity(cli: Cli) -> list[tuple[int, str | None, int, str]]:
    return [(s["id"], s["name"], s["pid"], s["status"]) for s in cli.sessions()]


def test_kill9_server_sessions_carry_on(kept: Cli, tmp_path: Path) -> None:
    cli = kept
    ticks = tmp_path / "ticks"
    gate = tmp_path / "gate"
    shell = cli.new("sh", name="shell")
    counter = cli.new("python3", "-c", COUNTER, str(ticks), name="counter")
    ender = cli.new("sh", "-c", f"while [ ! -e {gate} ]; do sleep 0.02; done; exit 7", name="ender")
    ended = cli.new("sh", "-c", "exit 4", name="ended")
    wait_for(lambda: cli.session(ended)["status"] == "exited", 10, "a program to end before")
    wait_for(lambda: ticks.exists() and int(ticks.read_text() or 0) > 3, 10, "ticks")
    before = identity(cli)
    ender_pid = cli.session(ender)["pid"]
    server, keeper = cli.server_pid(), keeper_pid(cli)
    assert server is not None
    # The server hands the keeper a snapshot of each screen that changed, every 2 s.
    wait_for(lambda: held_screens(keeper) == 5, 10, "screen snapshots held by the keeper")

    # Hold the keeper so that no server runs for a while: the counter goes on printing and
    # the third program ends while nobody but the (stopped) keeper could reap it.
    os.kill(keeper, signal.SIGSTOP)
    try:
        os.kill(server, signal.SIGKILL)
        wait_for(lambda: proc_state(server) == "Z", 10, "the server to die")
        crashed_at = int(ticks.read_text() or 0)
        gate.touch()
        wait_for(lambda: proc_state(ender_pid) == "Z", 10, "the third program to end")
        wait_for(lambda: int(ticks.read_text() or 0) >= crashed_at + 5, 10, "ticks while down")
        printed_while_down = int(ticks.read_text() or 0)
    finally:
        os.kill(keeper, signal.SIGCONT)

    started = time.monotonic()
    new = new_server(cli, server)
    assert time.monotonic() - started < 2.0, "a new server answers within 2 s"
    after = identity(cli)
    assert [x[:3] for x in after] == [x[:3] for x in before], "same ids, names and pids"
    assert [x for x in after if x[0] != ender] == [x for x in before if x[0] != ender]
    assert cli.session(ended)["exit_code"] == 4
    statuses = {sid: status for sid, _, _, status in after}
    assert statuses[shell] == statuses[counter] == "running"
    assert [s["exit_code"] for s in cli.sessions() if s["id"] == ender] == [7]
    assert cli.run("wait", str(ender), check=False, timeout=10).returncode == 7

    # What the counter printed while no server ran was kept in the PTY and relayed.
    def history_has_all() -> bool:
        text = cli.run("capture", "--history", str(counter)).stdout
        return all(f"tick-{i}\n" in text for i in range(crashed_at + 1, printed_while_down + 1))

    wait_for(history_has_all, 10, "the ticks printed while no server ran")
    # What it printed before the last screen snapshot came back from that snapshot.
    assert "tick-0\n" in cli.run("capture", "--history", str(counter)).stdout

    # The programs of the dead server are the keeper's now; the new one still runs them.
    cli.run("send", "shell", "exit 3", "Enter")
    assert cli.run("wait", "shell", check=False, timeout=10).returncode == 3
    info = cli.session(shell)
    assert (info["status"], info["exit_code"]) == ("exited", 3)
    log = (cli.socket_path.parent / "s.log").read_text()
    assert f"server {server} crashed: killed by SIGKILL (9)" in log
    info = cli.run("server", "info").stdout
    assert f"server pid {new}, " in info and "generation 1," in info
    assert f"keeper pid {keeper}; last restart " in info and "killed by SIGKILL (9)" in info


def test_crash_loop_stops_restarting_and_keeps_programs(kept: Cli) -> None:
    cli = kept
    sid = cli.new("sleep", "100000", name="sleeper")
    program = cli.session(sid)["pid"]
    server = cli.server_pid()
    assert server is not None
    for crash in range(5):
        os.kill(server, signal.SIGKILL)
        if crash < 4:
            server = new_server(cli, server)
            assert identity(cli)[-1] == (sid, "sleeper", program, "running")

    def refused() -> str | None:
        r = cli.run("ls", check=False, timeout=10)
        return r.stderr if r.returncode != 0 else None

    message: str = wait_for(refused, 10, "the keeper to refuse")
    assert "crashed 5 times" in message and "server restart" in message
    assert len(message.strip().splitlines()) == 1
    assert pid_alive(program), "the program keeps running without a server"
    log = (cli.socket_path.parent / "s.log").read_text()
    assert "not restarting it" in log

    # Asked to, the keeper starts a server again and the session is there as it was.
    out = cli.run("server", "restart").stdout
    assert out.startswith("server restarted: server pid ") and "generation 5," in out
    assert identity(cli)[-1] == (sid, "sleeper", program, "running")
    r = cli.run("server", "restart", check=False)
    assert r.returncode == 1 and "nothing to restart" in r.stderr


def test_crash_after_an_upgrade(kept: Cli) -> None:
    """The link to the keeper passes through the upgrade's re-exec."""
    cli = kept
    sid = cli.new("sleep", "100000", name="sleeper")
    cli.run("server", "upgrade")
    before = identity(cli)
    server = cli.server_pid()
    assert server is not None
    os.kill(server, signal.SIGKILL)
    new_server(cli, server)
    assert identity(cli) == before
    cli.run("kill", "-s", "TERM", str(sid))
    assert cli.run("wait", str(sid), check=False).returncode == 128 + signal.SIGTERM


def test_keeper_memory_and_oom_scores(kept: Cli) -> None:
    cli = kept
    sid = cli.new("sleep", "100000")
    keeper, server = keeper_pid(cli), cli.server_pid()
    program = cli.session(sid)["pid"]

    def score(pid: int | None) -> int:
        return int(Path(f"/proc/{pid}/oom_score_adj").read_text())

    own = score(os.getpid())
    assert score(server) == 1000, "the server is the OOM killer's first choice"
    assert score(keeper) == own and score(program) == own
    private = 0
    for line in Path(f"/proc/{keeper}/smaps_rollup").read_text().splitlines():
        if line.startswith(("Private_Clean:", "Private_Dirty:")):
            private += int(line.split()[1])
    assert private < 8 * 1024, f"keeper private memory {private} KiB"


def test_kill_server_and_sigterm_to_the_keeper_end_everything(kept: Cli) -> None:
    cli = kept
    for how in ("kill-server", "SIGTERM to the keeper"):
        sid = cli.new("sleep", "100000")
        program, keeper, server = cli.session(sid)["pid"], keeper_pid(cli), cli.server_pid()
        try:
            if how == "kill-server":
                cli.run("kill-server")
            else:
                os.kill(keeper, signal.SIGTERM)
            for pid in (server, keeper, program):
                assert pid is not None
                wait_for(lambda pid=pid: not pid_alive(pid), 10, f"{pid} to end ({how})")
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(keeper, signal.SIGKILL)
        assert not cli.socket_path.exists()
        log = cli.socket_path.parent / "s.log"
        if how == "kill-server":
            # Nothing is left beside the socket (issue 14), and no server was started again
            # (it would have made a new log).
            assert not log.exists() and not Path(f"{cli.socket_path}.lock").exists()
        else:
            text = log.read_text()
            assert f"keeper {keeper}: exiting" in text and "crashed" not in text


def test_a_killed_keeper_leaves_the_server_running_alone(kept: Cli) -> None:
    cli = kept
    sid = cli.new("sleep", "100000")
    keeper, server = keeper_pid(cli), cli.server_pid()
    os.kill(keeper, signal.SIGKILL)
    wait_for(lambda: not pid_alive(keeper), 10, "the keeper to die")
    lost = "its keeper was lost"
    wait_for(lambda: lost in cli.run("server", "info").stdout, 10, "the server to notice")
    assert cli.server_pid() == server and cli.session(sid)["status"] == "running"
    ended = cli.new("sh", "-c", "exit 6")
    assert cli.run("wait", str(ended), check=False).returncode == 6
    log = (cli.socket_path.parent / "s.log").read_text()
    assert log.count("the keeper is gone") == 1 and "Broken pipe" not in log


def test_a_console_socket_outlives_a_crash(kept: Cli) -> None:
    """A runtime that hands over its console while no server runs is served by the next one."""
    cli = kept
    path = cli.run("console-socket", "--name", "web").stdout.strip()
    keeper, server = keeper_pid(cli), cli.server_pid()
    assert server is not None
    os.kill(keeper, signal.SIGSTOP)
    master, slave = os.openpty()
    try:
        os.kill(server, signal.SIGKILL)
        wait_for(lambda: proc_state(server) == "Z", 10, "the server to die")
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.connect(path)  # the keeper's duplicate keeps it listening
            rights = array.array("i", [master]).tobytes()
            sock.sendmsg([b"/dev/ptmx"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, rights)])
    finally:
        os.kill(keeper, signal.SIGCONT)
        os.close(master)
    try:
        new_server(cli, server)
        web = wait_for(
            lambda: next((s for s in cli.sessions() if s["name"] == "web"), None), 10, "web"
        )
        # The program's end (our slave, in canonical mode) gets a line typed into the session.
        cli.run("send", str(web["id"]), "hello", "Enter")
        got = b""
        deadline = time.monotonic() + 10
        while b"hello" not in got:
            assert time.monotonic() < deadline, f"only {got!r} arrived"
            if select.select([slave], [], [], 0.1)[0]:
                got += os.read(slave, 100)
    finally:
        os.close(slave)


def test_an_attached_client_reconnects_after_a_crash(kept: Cli) -> None:
    cli = kept
    cli.env["PS1"] = "PROMPT> "
    cli.env["ENV"] = "/dev/null"
    child = cli.spawn("new", "-s", "sh", "--", "sh")
    child.expect_exact("PROMPT> ")
    child.send("echo before-$((2*21))\r")
    child.expect_exact("before-42")
    server = cli.server_pid()
    assert server is not None
    os.kill(server, signal.SIGKILL)
    new_server(cli, server)
    wait_for(lambda: cli.session(2)["clients"] == 1, 10, "the client to reconnect")
    child.send("echo after-$((2*22))\r")
    child.expect_exact("after-44")
    # The program is the keeper's child now; its exit code still reaches the client.
    child.send("exit 5\r")
    child.expect_exact("[session sh (2) exited with code 5]")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 5


def test_kill_server_is_not_mistaken_for_a_crash(kept: Cli) -> None:
    cli = kept
    child = cli.spawn("new", "--", "sleep", "100000")
    # Not cli.session(2): the session may not exist yet when the first `ls` runs.
    wait_for(
        lambda: any(s["id"] == 2 and s["clients"] == 1 for s in cli.sessions()), 10, "attached"
    )
    started = time.monotonic()
    cli.run("kill-server")
    child.expect(pexpect.EOF, timeout=10)
    child.close()
    assert child.exitstatus != 0 and time.monotonic() - started < 5


FLOOD = (
    "import sys\n"
    "line = b'x' * 99 + b'\\n'\n"
    "for _ in range(1_000_000):\n"  # 100 MB
    "    sys.stdout.buffer.write(line)\n"
    "sys.stdout.buffer.write(b'flood-done-%d\\n' % (6 * 7))\n"
    "sys.stdout.flush()\n"
    "sys.stdin.readline()\n"
)


def test_kill9_during_a_100_mb_flood(kept: Cli) -> None:
    cli = kept
    sid = cli.new("python3", "-c", FLOOD, name="flood")
    pid = cli.session(sid)["pid"]
    server = cli.server_pid()
    assert server is not None
    # Mid-flood: the program has written some of it (its PTY is being relayed).
    wait_for(lambda: "x" * 40 in cli.run("capture", "flood").stdout, 20, "the flood to start")
    assert "flood-done" not in cli.run("capture", "flood").stdout
    os.kill(server, signal.SIGKILL)
    new_server(cli, server)
    assert identity(cli)[-1] == (sid, "flood", pid, "running")
    wait_for(
        lambda: "flood-done-42" in cli.run("capture", "flood").stdout,
        60,
        "the rest of the flood relayed by the new server",
    )
    cli.run("send", "flood", "Enter")
    assert cli.run("wait", "flood", check=False, timeout=20).returncode == 0


NOISY = (
    "import sys, time\n"
    "for i in range(40000):\n"
    "    print('n' * 99)\n"
    "print('noisy-done', flush=True)\n"
    "time.sleep(100000)\n"
)


def test_kill9_during_an_upgrade(kept: Cli) -> None:
    cli = kept
    from tmuxish.client.connection import Connection

    sid = cli.new("sleep", "100000", name="sleeper")
    noisy = cli.new("python3", "-c", NOISY, name="noisy")
    wait_for(lambda: "noisy-done" in cli.run("capture", "noisy").stdout, 20, "its output")
    before = identity(cli)
    server = cli.server_pid()
    assert server is not None
    log = cli.socket_path.parent / "s.log"
    # A client that asks for all 4 MB of history and never reads: the old server waits (up to
    # its grace time) for it to go before it hands over, which leaves time to kill it then.
    stuck = Connection.open(cli.socket_path)
    stuck.send_request(
        "attach", {"target": noisy, "cols": 80, "rows": 24, "readonly": True, "history": 100_000}
    )
    upgrade = subprocess.Popen(
        cli.argv("server", "upgrade"),
        env=cli.env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        # The old server is preparing the handover (sessions suspended) when it is killed.
        wait_for(lambda: "server re-executing for upgrade" in log.read_text(), 10, "handover")
        os.kill(server, signal.SIGKILL)
        out, err = upgrade.communicate(timeout=20)
    finally:
        stuck.close()
        if upgrade.poll() is None:
            upgrade.kill()
            upgrade.wait(10)
    assert upgrade.returncode == 0, err
    assert "server upgraded" in out and "3 sessions kept" in out
    assert f"server {server} crashed: killed by SIGKILL" in log.read_text()
    new_server(cli, server)
    assert identity(cli) == before
    cli.run("kill", "-s", "TERM", str(sid))
    assert cli.run("wait", str(sid), check=False).returncode == 128 + signal.SIGTERM


def test_kill9_twice_in_a_row(kept: Cli) -> None:
    cli = kept
    cli.env.update({"PS1": "PROMPT> ", "ENV": "/dev/null"})
    sid = cli.new("sh", name="shell")
    cli.run("send", "shell", "echo first-$((6*7))", "Enter")
    wait_for(lambda: "first-42" in cli.run("capture", "shell").stdout, what="output")
    before = identity(cli)
    keeper = keeper_pid(cli)
    wait_for(lambda: held_screens(keeper) == 2, 10, "screen snapshots held by the keeper")
    first = cli.server_pid()
    assert first is not None
    os.kill(first, signal.SIGKILL)
    second = new_server(cli, first)
    # At once: the second server has just restored, and is killed too.
    os.kill(second, signal.SIGKILL)
    third = new_server(cli, second)
    assert identity(cli) == before
    assert "generation 2," in cli.run("server", "info").stdout
    assert "first-42" in cli.run("capture", "shell").stdout
    cli.run("send", "shell", "exit 6", "Enter")
    assert cli.run("wait", str(sid), check=False, timeout=10).returncode == 6
    assert third not in (first, second)
