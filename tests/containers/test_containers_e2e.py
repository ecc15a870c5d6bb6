"""tmuxish as the console-socket receiver of real runc and crun, driven through the CLI.

- ``console-socket --name web`` + ``RUNTIME run -d --console-socket PATH`` + ``attach web``: type,
  resize (``stty size`` follows the client), detach, re-attach.
- ``new --runtime RUNTIME --bundle DIR``: the server runs the container as a child subreaper, so
  ``wait`` returns the container's real exit code and ``kill`` ends it; the container is deleted
  when the session ends.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from helpers import Cli, detach, stop_server, wait_for

if TYPE_CHECKING:
    from tests.containers.conftest import BundleFactory, Containers, Runtime

EXPECTED_PAYLOADS = {"runc": {"/dev/ptmx", "/dev/pts/ptmx"}, "crun": {" "}}


def by_name(cli: Cli, name: str) -> dict[str, Any] | None:
    return next((s for s in cli.sessions() if s["name"] == name), None)


def named(cli: Cli, name: str) -> dict[str, Any]:
    found = by_name(cli, name)
    assert found is not None, f"no session named {name}"
    return found


def stopped(runtime: Runtime, cid: str) -> Callable[[], bool]:
    def check() -> bool:
        state = runtime.state(cid)
        return state is None or state.get("status") == "stopped"

    return check


def leftover_files(cli: Cli) -> list[str]:
    """Console sockets, pid files and stderr files the server made next to its socket."""
    return [
        p.name for p in cli.socket_path.parent.iterdir() if ".cs-" in p.name or ".rt-" in p.name
    ]


def shows(cli: Cli, name: str, text: str) -> bool:
    return text in cli.run("capture", name).stdout


def type_and_see(child: Any, a: int, b: int) -> None:
    """Type an arithmetic echo; its result (not in the echoed input) must come back."""
    child.send(f"echo out-$(({a}*{b}))\r")
    child.expect_exact(f"out-{a * b}")


def test_console_socket_attach_resize_detach(
    runtime: Runtime, bundle_factory: BundleFactory, containers: Containers, cli: Cli
) -> None:
    bundle = bundle_factory(["sh"])
    cid = containers.new_id(runtime)
    path = cli.run("console-socket", "--name", "web").stdout.strip()
    assert os.path.dirname(path) == str(cli.socket_path.parent)
    assert len(os.fsencode(path)) <= 107 and os.path.exists(path)

    runtime.run(*runtime.run_detached_args(bundle, cid, path))
    web = wait_for(lambda: by_name(cli, "web"), what="session web")
    assert web["status"] == "running" and web["pid"] is None
    assert web["console_socket"] == path
    assert web["payload"] in EXPECTED_PAYLOADS[runtime.name]
    assert (web["cols"], web["rows"]) == (80, 24), "the 0x0 PTY got the default size at once"
    assert not os.path.exists(path), "a one-shot console socket is removed after its master"

    child = cli.spawn("attach", "web", rows=30, cols=100)
    type_and_see(child, 6, 7)
    child.send("stty size\r")
    child.expect_exact("30 100")
    child.setwinsize(40, 120)
    wait_for(lambda: named(cli, "web")["cols"] == 120, what="session to take the new size")
    child.send("stty size\r")
    child.expect_exact("40 120")
    detach(child)
    assert named(cli, "web")["status"] == "running"

    again = cli.spawn("attach", "web", rows=30, cols=100)
    type_and_see(again, 7, 8)
    again.send("stty size\r")
    again.expect_exact("30 100")
    detach(again)

    # The container ends: the session sees the PTY's end (EIO); its exit status is unknown,
    # and is shown as such, never as a made-up code.
    runtime.run("kill", cid, "KILL")
    wait_for(lambda: named(cli, "web")["status"] == "exited", what="session to end")
    assert named(cli, "web")["exit_code"] is None
    assert "exited (?)" in cli.run("ls").stdout
    waited = cli.run("wait", "web", check=False)
    assert waited.returncode == 125
    assert waited.stderr.strip().splitlines() == [
        f"tmuxish: session {web['id']} has ended; its exit code is unknown "
        "(its process is not the server's child)"
    ]


def test_persistent_console_socket_numbers_sessions(
    runtime: Runtime, bundle_factory: BundleFactory, containers: Containers, cli: Cli
) -> None:
    bundle = bundle_factory(["sh"])
    path = cli.run("console-socket", "--name", "box", "--persist").stdout.strip()
    for _ in range(2):
        runtime.run(*runtime.run_detached_args(bundle, containers.new_id(runtime), path))
    wait_for(lambda: by_name(cli, "box-2"), what="second session box-2")
    assert by_name(cli, "box") is not None
    assert os.path.exists(path), "a --persist socket keeps listening"
    cli.run("send", "box-2", "echo two-$((2*21))", "Enter")
    wait_for(partial(shows, cli, "box-2", "two-42"), what="output in box-2")


def test_new_runtime_exit_code(
    runtime: Runtime, bundle_factory: BundleFactory, containers: Containers, cli: Cli
) -> None:
    bundle = bundle_factory(["sh", "-c", "exit 7"])
    cid = containers.new_id(runtime)
    out = cli.run(
        "new", "--runtime", runtime.executable(), "--bundle", str(bundle), "-d", "-s", "seven", cid
    )
    sid = int(out.stdout.strip())
    assert cli.run("wait", "seven", check=False).returncode == 7
    info = cli.session(sid)
    assert info["status"] == "exited" and info["exit_code"] == 7
    assert info["container_id"] == cid and info["bundle"] == str(bundle)
    assert info["runtime"] == runtime.executable()
    assert isinstance(info["pid"], int)
    assert "exited (7)" in cli.run("ls").stdout
    # The stopped container is deleted once its session has ended.
    wait_for(lambda: runtime.state(cid) is None, what="container deleted")
    assert leftover_files(cli) == []


def test_new_runtime_kill(
    runtime: Runtime, bundle_factory: BundleFactory, containers: Containers, cli: Cli
) -> None:
    bundle = bundle_factory(["sh"])
    exe = runtime.executable()
    ids = [containers.new_id(runtime) for _ in range(2)]
    for name, cid in zip(("hup", "nine"), ids, strict=True):
        cli.run("new", "--runtime", exe, "--bundle", str(bundle), "-d", "-s", name, cid)
        cli.run("send", name, "echo up-$((5*5))", "Enter")
        wait_for(partial(shows, cli, name, "up-25"), what=f"{name} up")
        assert (runtime.state(cid) or {}).get("status") == "running"

    # Plain `kill` (SIGHUP): pid 1 of a PID namespace drops signals it has no handler for, so the
    # terminal is hung up as well; the container ends either way.
    cli.run("kill", "hup")
    assert cli.run("wait", "hup", check=False, timeout=20).returncode in (0, 129, 137)
    wait_for(stopped(runtime, ids[0]), what="container hup to end")

    cli.run("kill", "-s", "KILL", "nine")
    assert cli.run("wait", "nine", check=False, timeout=20).returncode == 128 + 9
    assert cli.session(2)["exit_code"] == 137
    wait_for(lambda: runtime.state(ids[1]) is None, what="container nine deleted")


def launched(directory: Path, count: int) -> bool:
    return len(list(directory.glob("started.*"))) == count


def gated_runtime(runtime: Runtime, directory: Path) -> Path:
    """A runtime program whose ``run`` waits for ``directory/gate`` (after touching
    ``directory/started.PID``), with its own container root so default ids cannot clash with
    other servers' containers."""
    wrapper = directory / "gated-runtime"
    wrapper.write_text(
        "#!/bin/sh\n"
        'if [ "$1" = run ]; then\n'
        f'  : > "{directory}/started.$$"\n'
        f'  while [ ! -e "{directory}/gate" ]; do sleep 0.05; done\n'
        "fi\n"
        f'exec {runtime.executable()} --root "{directory}/root" "$@"\n'
    )
    wrapper.chmod(0o755)
    return wrapper


def test_new_runtime_default_id_is_the_session_id(
    runtime: Runtime, bundle_factory: BundleFactory, cli: Cli, tmp_path: Path
) -> None:
    """Two launches at once, and a plain session made while they run: each container is
    ``tmuxish-<its session id>``, and none collides."""
    bundle = bundle_factory(["sh"])
    wrapper = gated_runtime(runtime, tmp_path)
    argv = cli.argv("new", "--runtime", str(wrapper), "--bundle", str(bundle), "-d")
    procs: list[subprocess.Popen[str]] = []
    try:
        for _ in range(2):
            procs.append(
                subprocess.Popen(
                    argv,
                    env=cli.env,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
            )
            wait_for(partial(launched, tmp_path, len(procs)), what="a launch to reach run")
        prog = cli.new("sleep", "1000")
        (tmp_path / "gate").touch()
        outs = [p.communicate(timeout=30) for p in procs]
        assert [p.returncode for p in procs] == [0, 0], outs
        made = [s for s in cli.sessions() if s.get("container_id")]
        assert sorted(s["id"] for s in made) == [1, 2] and prog == 3
        for s in made:
            assert s["container_id"] == f"tmuxish-{s['id']}"
            assert s["status"] == "running"
    finally:
        (tmp_path / "gate").touch()
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.communicate(timeout=10)
        stop_server(cli)  # deletes its containers
        for n in range(1, 4):
            subprocess.run(
                [str(wrapper), "delete", "-f", f"tmuxish-{n}"], capture_output=True, timeout=30
            )
    left = subprocess.run([str(wrapper), "list", "-q"], capture_output=True, text=True, timeout=30)
    assert left.stdout.split() == []


def test_new_runtime_attached(
    runtime: Runtime, bundle_factory: BundleFactory, containers: Containers, cli: Cli
) -> None:
    """Without -d, `new --runtime` attaches like `new`; rm -f deletes the container."""
    bundle = bundle_factory(["sh"])
    cid = containers.new_id(runtime)
    child = cli.spawn(
        "new", "--runtime", runtime.executable(), "--bundle", str(bundle), cid, rows=33, cols=91
    )
    type_and_see(child, 3, 4)
    child.send("stty size\r")
    child.expect_exact("33 91")
    detach(child)
    info = by_name(cli, cid)  # the container id names the session when no -s is given
    assert info is not None and info["status"] == "running" and info["container_id"] == cid
    cli.run("rm", "-f", cid)
    wait_for(lambda: runtime.state(cid) is None, what="container deleted after rm -f")
    assert by_name(cli, cid) is None


def test_new_runtime_failure_is_one_line(
    runtime: Runtime, bundle_factory: BundleFactory, containers: Containers, cli: Cli
) -> None:
    bundle = bundle_factory(["/bin/no-such-program"])
    cid = containers.new_id(runtime)
    proc = cli.run(
        "new", "--runtime", runtime.executable(), "--bundle", str(bundle), "-d", cid, check=False
    )
    assert proc.returncode == 1
    err = proc.stderr.strip()
    assert err.startswith("tmuxish: ") and "\n" not in err, err
    assert "failed" in err and "no-such-program" in err, err
    assert cli.sessions() == []
    assert leftover_files(cli) == []
    wait_for(lambda: runtime.state(cid) is None, what="failed container deleted")


def test_new_runtime_usage_errors(cli: Cli, tmp_path: Path) -> None:
    """No runtime needed: bad arguments fail fast with one line, and nothing is left behind."""
    missing = cli.run(
        "new", "--runtime", "no-such-runtime", "--bundle", str(tmp_path), "-d", check=False
    )
    assert missing.returncode == 127 and "runtime not found" in missing.stderr
    no_bundle = cli.run("new", "--runtime", "sh", "--bundle", str(tmp_path), "-d", check=False)
    assert no_bundle.returncode == 1 and "config.json" in no_bundle.stderr
    alone = cli.run("new", "--bundle", str(tmp_path), "-d", check=False)
    assert alone.returncode == 2
    two = cli.run("new", "--runtime", "sh", "--bundle", str(tmp_path), "-d", "a", "b", check=False)
    assert two.returncode == 2
    assert cli.sessions() == []


@pytest.mark.parametrize("name", ["bad name", "-x"])
def test_console_socket_bad_name(cli: Cli, name: str) -> None:
    proc = cli.run("console-socket", f"--name={name}", check=False)
    assert proc.returncode != 0 and "invalid session name" in proc.stderr
