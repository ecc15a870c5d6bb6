"""`tmuxish server upgrade`, and `kill -9` of the server (its keeper starts a new one), keep
every kind of session and every console socket, with real runc and crun: a `--runtime`
container still ends on `kill` and is deleted, a console session received before keeps working,
and console sockets (persistent, and one-shot ones that had not received yet) still turn what
runtimes send them into sessions."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from helpers import Cli, pid_alive, server_info, wait_for

if TYPE_CHECKING:
    from tests.containers.conftest import BundleFactory, Containers, Runtime


def by_name(cli: Cli, name: str) -> dict[str, Any] | None:
    return next((s for s in cli.sessions() if s["name"] == name), None)


def shows(cli: Cli, name: str, text: str) -> bool:
    return text in cli.run("capture", name).stdout


def echo_back(cli: Cli, name: str, a: int, b: int) -> None:
    """Type an arithmetic echo into session ``name``; its result must reach the screen."""
    cli.run("send", name, f"echo out-$(({a}*{b}))", "Enter")
    wait_for(partial(shows, cli, name, f"out-{a * b}"), what=f"output in {name}")


def keeper_holds_screen_with(keeper: int, text: str) -> bool:
    """Whether a screen snapshot the keeper holds shows ``text``."""
    for fd in os.listdir(f"/proc/{keeper}/fd"):
        path = f"/proc/{keeper}/fd/{fd}"
        with contextlib.suppress(OSError):
            if os.readlink(path).startswith("/memfd:tmuxish-screen"):
                with open(path, "rb") as f:
                    if text.encode() in f.read():
                        return True
    return False


def crash(cli: Cli) -> None:
    """kill -9 the server once the keeper holds screens showing the output so far."""
    info = server_info(cli)
    keeper = int(info["keeper"])
    for text in ("out-6", "out-12"):
        wait_for(partial(keeper_holds_screen_with, keeper, text), 10, f"a snapshot with {text}")
    os.kill(info["pid"], signal.SIGKILL)
    wait_for(lambda: cli.server_pid() not in (None, info["pid"]), 10, "a new server")


@pytest.mark.parametrize("how", ["upgrade", "exec-upgrade", "crash"])
def test_upgrade_keeps_every_kind_and_console_socket(
    runtime: Runtime, bundle_factory: BundleFactory, containers: Containers, cli: Cli, how: str
) -> None:
    """upgrade: through the keeper (the default); exec-upgrade: a server without a keeper
    re-executes itself; crash: kill -9, and the keeper starts a new server."""
    if how == "exec-upgrade":
        cli.env["TMUXISH_KEEPER"] = "0"
    bundle = bundle_factory(["sh"])
    persistent = cli.run("console-socket", "--persist", "--name", "c").stdout.strip()
    one_shot = cli.run("console-socket", "--name", "once").stdout.strip()
    received = cli.run("console-socket", "--name", "rec").stdout.strip()
    runtime.run(*runtime.run_detached_args(bundle, containers.new_id(runtime), received))
    wait_for(lambda: by_name(cli, "rec"), what="session rec")
    web_id = containers.new_id(runtime)
    cli.run(
        "new", "--runtime", runtime.executable(), "--bundle", str(bundle), "-d", "-s", "web", web_id
    )
    prog = cli.new("sleep", "1000", name="prog")
    echo_back(cli, "web", 2, 3)
    echo_back(cli, "rec", 3, 4)
    before = {s["name"]: s for s in cli.sessions()}
    assert before["web"]["container_id"] == web_id and isinstance(before["web"]["pid"], int)

    if how != "crash":
        assert "3 sessions kept" in cli.run("server", "upgrade").stdout
    else:
        crash(cli)

    after = {s["name"]: s for s in cli.sessions()}
    assert after.keys() == before.keys()
    for name, s in before.items():
        for key in (
            "id",
            "command",
            "pid",
            "status",
            "cols",
            "rows",
            "container_id",
            "console_socket",
            "payload",
        ):
            assert after[name].get(key) == s.get(key), (name, key)
    assert pid_alive(after["prog"]["pid"]) and after["prog"]["id"] == prog
    assert os.path.exists(persistent) and os.path.exists(one_shot)

    # The console session received before the upgrade still reads and writes its console.
    assert shows(cli, "rec", "out-12"), "the screen was carried over"
    echo_back(cli, "rec", 4, 5)
    # Both console sockets still make sessions of what the runtime sends.
    runtime.run(*runtime.run_detached_args(bundle, containers.new_id(runtime), persistent))
    wait_for(lambda: by_name(cli, "c"), what="session c from the persistent socket")
    echo_back(cli, "c", 5, 6)
    assert os.path.exists(persistent), "a --persist socket keeps listening"
    runtime.run(*runtime.run_detached_args(bundle, containers.new_id(runtime), one_shot))
    wait_for(lambda: by_name(cli, "once"), what="session once from the one-shot socket")
    echo_back(cli, "once", 6, 7)
    wait_for(lambda: not os.path.exists(one_shot), what="the one-shot socket to go")

    # The container session is still one: kill ends the container, which is then deleted.
    echo_back(cli, "web", 7, 8)
    cli.run("kill", "web")
    assert cli.run("wait", "web", check=False, timeout=20).returncode in (0, 129, 137)
    wait_for(lambda: runtime.state(web_id) is None, 20, "container web deleted")
    # A console session ends on kill too (it has no process to signal).
    cli.run("kill", "rec")
    wait_for(lambda: (by_name(cli, "rec") or {}).get("status") == "exited", what="rec to end")


def gated_runtime(runtime: Runtime, tmp_path: Path) -> tuple[str, Path, Path]:
    """A runtime program that says it started, then waits for a gate file before running:
    a launch kept in flight for as long as the test wants. (program, started, gate)"""
    started, gate = tmp_path / "started", tmp_path / "gate"
    program = tmp_path / "gated-runtime"
    program.write_text(
        "#!/bin/sh\n"
        f"touch {started}\n"
        f"while [ ! -e {gate} ]; do sleep 0.02; done\n"
        f'exec {runtime.executable()} "$@"\n'
    )
    program.chmod(0o755)
    return str(program), started, gate


def in_log(cli: Cli, text: str) -> bool:
    return text in (cli.socket_path.parent / "s.log").read_text()


@pytest.mark.parametrize("how", ["upgrade", "exec-upgrade"])
def test_an_upgrade_waits_for_a_launch_in_flight(
    runtime_factory: Callable[[str], Runtime],
    bundle_factory: BundleFactory,
    containers: Containers,
    cli: Cli,
    tmp_path: Path,
    how: str,
) -> None:
    """`new --runtime` still running `runc run` when `server upgrade` comes: the upgrade waits
    for it, and the container is a session of the upgraded server. Failed before: the upgrade
    went ahead and the launch was dropped (no session; `new` failed)."""
    runtime = runtime_factory("runc")
    if how == "exec-upgrade":
        cli.env["TMUXISH_KEEPER"] = "0"
    program, started, gate = gated_runtime(runtime, tmp_path)
    bundle = bundle_factory(["sh"])
    cid = containers.new_id(runtime)
    cli.new("true")  # the server, started by a client that ends
    argv = cli.argv("new", "--runtime", program, "--bundle", str(bundle), "-d", "-s", "web", cid)
    launch = subprocess.Popen(argv, env=cli.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    upgrade = None
    try:
        wait_for(started.exists, 10, "the runtime to start")
        upgrade = subprocess.Popen(
            cli.argv("server", "upgrade"), env=cli.env, stdout=subprocess.PIPE, text=True
        )
        waiting = partial(in_log, cli, "waiting for 1 container launch")
        wait_for(lambda: waiting() or upgrade.poll() is not None, 10, "the upgrade")
        assert upgrade.poll() is None, "the upgrade went ahead with a launch in flight"
        # Meanwhile a new launch is refused in one line (the wait stays bounded).
        other_id = containers.new_id(runtime)
        other = cli.run(
            "new", "--runtime", program, "--bundle", str(bundle), "-d", other_id, check=False
        )
        assert other.returncode != 0 and "the server is upgrading" in other.stderr
        assert other.stderr.strip().count("\n") == 0
        gate.touch()
        out, err = launch.communicate(timeout=30)
        assert launch.returncode == 0, err
        upgraded, _ = upgrade.communicate(timeout=30)
        assert upgrade.returncode == 0 and "2 sessions kept" in upgraded
        sid = int(out)
    finally:
        gate.touch()
        for proc in (launch, upgrade):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
    web = by_name(cli, "web")
    assert web is not None and web["container_id"] == cid and web["status"] == "running"
    assert web["id"] == sid
    echo_back(cli, "web", 2, 3)
    cli.run("kill", "web")
    assert cli.run("wait", "web", check=False, timeout=20).returncode in (0, 129, 137)
    wait_for(lambda: runtime.state(cid) is None, 20, "container web deleted")


def test_an_upgrade_refuses_while_a_launch_stays_in_flight(
    runtime_factory: Callable[[str], Runtime],
    bundle_factory: BundleFactory,
    containers: Containers,
    cli: Cli,
    tmp_path: Path,
) -> None:
    """Past its bounded wait, `server upgrade` refuses in one line and nothing is lost: the
    server keeps running and the launch becomes a session."""
    runtime = runtime_factory("runc")
    cli.env["TMUXISH_UPGRADE_LAUNCH_WAIT"] = "1"
    program, started, gate = gated_runtime(runtime, tmp_path)
    bundle = bundle_factory(["sh"])
    cid = containers.new_id(runtime)
    cli.new("true")
    server = cli.server_pid()
    argv = cli.argv("new", "--runtime", program, "--bundle", str(bundle), "-d", "-s", "web", cid)
    launch = subprocess.Popen(argv, env=cli.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_for(started.exists, 10, "the runtime to start")
        refused = cli.run("server", "upgrade", check=False)
        assert refused.returncode != 0
        assert refused.stderr.strip().count("\n") == 0
        assert "server upgrade refused: 1 container launch" in refused.stderr
        assert cli.server_pid() == server
        gate.touch()
        out, err = launch.communicate(timeout=30)
        assert launch.returncode == 0, err
        assert (by_name(cli, "web") or {}).get("id") == int(out)
    finally:
        gate.touch()
        if launch.poll() is None:
            launch.kill()
            launch.wait()
    echo_back(cli, "web", 3, 4)
    cli.run("kill", "web")
    assert cli.run("wait", "web", check=False, timeout=20).returncode in (0, 129, 137)
    wait_for(lambda: runtime.state(cid) is None, 20, "container web deleted")
