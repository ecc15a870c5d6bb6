"""Issue 13, end to end: `kill -9` of the server with a shell, a full-screen program (less), a
program printing a counter, a console-socket session and a `--runtime runc` container. Within
2 s `ls` lists all of them with the same ids, names, pids and statuses; attaching shows the
screen; `wait` on the container still returns its exit code; `kill` still hangs up the console
session."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pexpect
from helpers import Cli, wait_for

if TYPE_CHECKING:
    from tests.containers.conftest import BundleFactory, Containers, Runtime

COUNTER = (
    "import time\n"
    "i = 0\n"
    "while True:\n"
    "    print(f'tick-{i}', flush=True)\n"
    "    i += 1; time.sleep(0.05)\n"
)


def info(cli: Cli) -> dict[str, Any]:
    from tmuxish.client.connection import Connection

    with Connection.open(cli.socket_path, timeout=5) as conn:
        result: dict[str, Any] = conn.request("info")
        return result


def identity(cli: Cli) -> list[tuple[int, str | None, int | None, str]]:
    return [(s["id"], s["name"], s["pid"], s["status"]) for s in cli.sessions()]


def held_screens_show(keeper: int, texts: list[str]) -> bool:
    """Whether the screen snapshots the keeper holds show every one of ``texts``."""
    found = b""
    for fd in os.listdir(f"/proc/{keeper}/fd"):
        path = f"/proc/{keeper}/fd/{fd}"
        with contextlib.suppress(OSError):
            if os.readlink(path).startswith("/memfd:tmuxish-screen"):
                with open(path, "rb") as f:
                    found += f.read()
    return all(text.encode() in found for text in texts)


def shows(cli: Cli, name: str, text: str) -> bool:
    return text in cli.run("capture", name).stdout


def within(seconds: float, predicate: Callable[[], Any]) -> float:
    """How long ``predicate`` took to hold (failing after ``seconds``)."""
    started = time.monotonic()
    wait_for(predicate, seconds, "the condition")
    return time.monotonic() - started


def test_kill9_keeps_every_kind(
    runtime_factory: Callable[[str], Runtime],
    bundle_factory: BundleFactory,
    containers: Containers,
    cli: Cli,
    tmp_path: Path,
) -> None:
    runc = runtime_factory("runc")
    bundle = bundle_factory(["sh"])
    cli.env.update({"PS1": "PROMPT> ", "ENV": "/dev/null", "LESS": ""})
    text = tmp_path / "text"
    text.write_text("".join(f"page-line-{i}\n" for i in range(1, 200)))

    shell = cli.new("sh", name="shell")
    pager = cli.new("less", str(text), name="pager")
    cli.new(sys.executable, "-c", COUNTER, name="counter")
    received = cli.run("console-socket", "--name", "rec").stdout.strip()
    runc.run(*runc.run_detached_args(bundle, containers.new_id(runc), received))
    wait_for(lambda: any(s["name"] == "rec" for s in cli.sessions()), what="session rec")
    box_id = containers.new_id(runc)
    cli.run(
        "new", "--runtime", runc.executable(), "--bundle", str(bundle), "-d", "-s", "box", box_id
    )
    cli.run("send", "shell", "echo shell-$((6*7))", "Enter")
    cli.run("send", "rec", "echo rec-$((6*8))", "Enter")
    cli.run("send", "box", "echo box-$((6*9))", "Enter")
    for name, out in (
        ("shell", "shell-42"),
        ("rec", "rec-48"),
        ("box", "box-54"),
        ("pager", "page-line-1"),
    ):
        wait_for(partial(shows, cli, name, out), what=f"{out} in {name}")
    before = identity(cli)
    assert [status for *_, status in before] == ["running"] * 5
    server = info(cli)
    keeper = int(server["keeper"])
    wait_for(
        lambda: held_screens_show(keeper, ["shell-42", "rec-48", "box-54", "page-line-23"]),
        10,
        "screen snapshots of every session",
    )

    os.kill(server["pid"], signal.SIGKILL)
    took = within(
        2.0, lambda: cli.server_pid() not in (None, server["pid"]) and identity(cli) == before
    )
    assert took < 2.0

    # Attaching shows the screen the full-screen program drew before the crash.
    child = cli.spawn("attach", "pager")
    child.expect_exact("page-line-23")
    child.send("\x10\x11")
    child.expect_exact(f"[detached from session pager ({pager})]")
    child.expect(pexpect.EOF)
    child.close()
    # The shell and the counter carry on.
    cli.run("send", "shell", "echo again-$((7*7))", "Enter")
    wait_for(partial(shows, cli, "shell", "again-49"), what="the shell after the crash")
    assert shell == before[0][0]

    # The container is still one: its exit code reaches `wait`, and it is deleted.
    cli.run("send", "box", "exit 7", "Enter")
    assert cli.run("wait", "box", check=False, timeout=20).returncode == 7
    wait_for(lambda: runc.state(box_id) is None, 20, "the container deleted")
    # The console session is still one: kill hangs it up.
    cli.run("kill", "rec")
    wait_for(
        lambda: next(s for s in cli.sessions() if s["name"] == "rec")["status"] == "exited",
        what="rec to end",
    )
