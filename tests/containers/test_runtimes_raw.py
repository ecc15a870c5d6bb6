"""Real runc/crun handing their console to our ConsoleSocketListener, without the tmuxish server.

These pin down the runtime facts the server relies on: which payload each runtime sends, that the
master arrives 0x0 and works once sized, that the one-shot socket goes away, and that a child
subreaper running ``run -d`` gets the container's real exit status.
"""

from __future__ import annotations

import fcntl
import os
import struct
import subprocess
import termios
from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest

from tmuxish.server.console_socket import ReceivedConsole, ensure_size

if TYPE_CHECKING:
    # Types only: pytest loads the conftest itself; importing it at run time would load it twice.
    from tests.containers.conftest import (
        BundleFactory,
        CatcherFactory,
        Containers,
        LoopFactory,
        Runtime,
        SubreapedRun,
    )

    Subreaper = Callable[..., SubreapedRun]

# runc <= 1.2.7 sends "/dev/ptmx", newer runc "/dev/pts/ptmx"; crun sends a single space.
EXPECTED_PAYLOADS = {"runc": {b"/dev/ptmx", b"/dev/pts/ptmx"}, "crun": {b" "}}

ReadUntil = Callable[..., bytes]


def winsize(fd: int) -> tuple[int, int]:
    rows, cols, _, _ = struct.unpack("HHHH", fcntl.ioctl(fd, termios.TIOCGWINSZ, b"\0" * 8))
    return cols, rows


def check_master(runtime_name: str, console: ReceivedConsole) -> None:
    assert console.payload in EXPECTED_PAYLOADS[runtime_name], console.payload
    assert console.peer_uid == 0
    assert fcntl.fcntl(console.fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC


def test_console_master_from_runtime(
    runtime: Runtime,
    bundle_factory: BundleFactory,
    containers: Containers,
    catcher_factory: CatcherFactory,
    loop_factory: LoopFactory,
    read_until: ReadUntil,
) -> None:
    bundle = bundle_factory(["sh"])
    cid = containers.new_id(runtime)
    catcher = catcher_factory(loop_factory)
    runtime.run(*runtime.run_detached_args(bundle, cid, catcher.path))
    console = catcher.get()
    check_master(runtime.name, console)
    assert not os.path.exists(catcher.path), "a one-shot socket must be gone after its master"

    assert winsize(console.fd) == (0, 0), "runtimes hand over 0x0 PTYs"
    ensure_size(console.fd, 80, 24)
    # $((6*7)) so the marker is in the output, not in the echo of what we typed.
    os.write(console.fd, b"stty size; echo mark-$((6*7))\n")
    out = read_until(console.fd, b"mark-42")
    assert b"24 80" in out

    fcntl.ioctl(console.fd, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
    os.write(console.fd, b"stty size; echo mark-$((6*8))\n")
    assert b"30 100" in read_until(console.fd, b"mark-48")

    state = runtime.state(cid)
    assert state is not None and state["status"] == "running"


def test_create_then_start(
    runtime: Runtime,
    bundle_factory: BundleFactory,
    containers: Containers,
    catcher_factory: CatcherFactory,
    read_until: ReadUntil,
) -> None:
    bundle = bundle_factory(["sh", "-c", "read line; echo got-$line"])
    cid = containers.new_id(runtime)
    catcher = catcher_factory()
    # Through executable(): the one-word form a `--runtime PROGRAM` option would be given.
    create = ["create", "--console-socket", catcher.path, "--bundle", str(bundle), cid]
    subprocess.run(
        [runtime.executable(), *create],
        stdin=subprocess.DEVNULL,
        check=True,
        timeout=20,
    )
    # The master is handed over at create time, before the program runs.
    console = catcher.get()
    check_master(runtime.name, console)
    ensure_size(console.fd, 80, 24)
    state = runtime.state(cid)
    assert state is not None and state["status"] == "created"
    runtime.run("start", cid)
    os.write(console.fd, b"xyz\n")
    read_until(console.fd, b"got-xyz")


def test_subreaper_gets_container_exit_code(
    runtime: Runtime,
    bundle_factory: BundleFactory,
    containers: Containers,
    catcher_factory: CatcherFactory,
    subreaper: Subreaper,
) -> None:
    bundle = bundle_factory(["sh", "-c", "exit 7"])
    cid = containers.new_id(runtime)
    catcher = catcher_factory()
    run = subreaper(runtime, bundle, cid, catcher.path)
    check_master(runtime.name, catcher.get())
    # Only the parent can waitpid() a process: getting 7 proves the init was re-parented to the
    # subreaper. (Its ppid read right after `run -d` can still name a runtime helper that is
    # about to exit, so it is not asserted.)
    assert run.wait_exit() == 7


def test_subreaper_sees_kill(
    runtime: Runtime,
    bundle_factory: BundleFactory,
    containers: Containers,
    catcher_factory: CatcherFactory,
    subreaper: Subreaper,
    read_until: ReadUntil,
) -> None:
    bundle = bundle_factory(["sh"])
    cid = containers.new_id(runtime)
    catcher = catcher_factory()
    run = subreaper(runtime, bundle, cid, catcher.path)
    console = catcher.get()
    ensure_size(console.fd, 80, 24)
    os.write(console.fd, b"echo up-$((5*5))\n")
    read_until(console.fd, b"up-25")
    runtime.run("kill", cid, "KILL")
    assert run.wait_exit() == 128 + 9
    # The master reports EIO (the end) once the container's last holder of the slave is gone.
    with pytest.raises(AssertionError, match="EOF"):
        read_until(console.fd, b"never printed", timeout=5)


def test_crun_needs_the_private_cgroup_recipe_here(
    runtime_factory: Callable[[str], Runtime],
    bundle_factory: BundleFactory,
    containers: Containers,
    catcher_factory: CatcherFactory,
) -> None:
    """Why crun is wrapped: unwrapped, it refuses this host's hybrid cgroup layout."""
    crun = runtime_factory("crun")
    if crun.prefix == ["crun"]:
        pytest.skip("crun runs unwrapped on this host's cgroup layout")
    bundle = bundle_factory(["sh"])
    cid = containers.new_id(crun)
    catcher = catcher_factory()
    unwrapped = ["crun", *crun.run_detached_args(bundle, cid, catcher.path)]
    bare = subprocess.run(
        unwrapped, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=20
    )
    assert bare.returncode != 0
    assert "hybrid" in bare.stderr, bare.stderr
    # crun connected and closed without sending: the listener must still be waiting.
    assert catcher.listener.received == 0 and os.path.exists(catcher.path)
