"""A `run` in progress is not lost to a server upgrade or a crash: the command goes on (the
upgrade used to interrupt it with Ctrl-C), and the client follows it on the next server
(run-follow), with every line of its output and its exit status."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
from helpers import Cli, server_info, wait_for

LINES = 200_000


def begin(cli: Cli, home: Path, shell: str, command: str) -> subprocess.Popen[bytes]:
    if shutil.which(shell) is None:
        pytest.skip(f"{shell} is not installed")
    (home / ".zshrc").write_text("")
    cli.env.update({"HOME": str(home), "PS1": "P> ", "ENV": "/dev/null"})
    sid = str(cli.new(shell))
    assert cli.run("run", "-t", sid, "--", "true").returncode == 0
    return subprocess.Popen(
        cli.argv("run", "-t", sid, "--", command),
        env=cli.env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


EXPECTED = b"".join(b"%d\n" % i for i in range(1, LINES + 1))


def at_most_one_gap(out: bytes, expected: bytes) -> bool:
    """``out`` is ``expected`` with one stretch missing at most (a crash may cost what the
    dead server had read from the PTY and not yet sent; nothing twice, nothing reordered)."""
    lo, hi = 0, min(len(out), len(expected))
    while lo < hi:  # the longest common prefix (a diff of 1 MB would take minutes)
        mid = (lo + hi + 1) // 2
        if out[:mid] == expected[:mid]:
            lo = mid
        else:
            hi = mid - 1
    whole_ends = out.startswith(expected[:64]) and out.endswith(expected[-64:])
    return whole_ends and len(out) <= len(expected) and expected.endswith(out[lo:])


def check_whole(run: subprocess.Popen[bytes], begun: Path, done: Path, crash: bool) -> None:
    out, err = run.communicate(timeout=60)
    assert run.returncode == 3, err
    assert err == b""
    assert begun.exists() and done.exists()
    expected = EXPECTED + b"end\n"
    if crash:
        assert at_most_one_gap(out, expected), (len(out), out[-40:])
    else:
        assert out == expected, "not every line, in order, once"  # no pytest diff of 1 MB


@pytest.mark.parametrize("shell", ["bash", "zsh", "dash"])
@pytest.mark.parametrize("how", ["upgrade", "kill -9"])
def test_run_follows_its_command_to_the_next_server(
    kept: Cli, tmp_path: Path, shell: str, how: str
) -> None:
    cli = kept
    begun, done = tmp_path / "begun", tmp_path / "done"
    command = f"touch {begun}; seq 1 {LINES}; sleep 1; echo end; touch {done}; (exit 3)"
    run = begin(cli, tmp_path, shell, command)
    try:
        wait_for(begun.exists, what="the command to start")
        old = int(server_info(cli)["pid"])
        if how == "upgrade":
            # Not waited for here: the upgrade waits for the run's client to read what it was
            # sent, and that client waits for us to read its output.
            upgrade = subprocess.Popen(cli.argv("server", "upgrade"), env=cli.env)
        else:
            os.kill(old, signal.SIGKILL)
        check_whole(run, begun, done, how != "upgrade")
        if how == "upgrade":
            assert upgrade.wait(timeout=30) == 0
        assert int(server_info(cli)["pid"]) != old
    finally:
        if run.poll() is None:
            run.kill()
            run.communicate()
    # The shell is free: the next run runs.
    sid = str(cli.sessions()[-1]["id"])
    assert cli.run("run", "-t", sid, "--", "echo", "next").stdout == "next\n"


def test_a_command_that_ended_while_no_server_ran_is_reported(kept: Cli, tmp_path: Path) -> None:
    """The command ends after the crash and before the next server: its status comes from
    the PTY the keeper held, read by the next server."""
    cli = kept
    begun, ended = tmp_path / "begun", tmp_path / "ended"
    run = begin(cli, tmp_path, "bash", f"touch {begun}; sleep 0.5; touch {ended}; (exit 7)")
    try:
        wait_for(begun.exists, what="the command to start")
        info = server_info(cli)
        keeper, old = int(info["keeper"]), int(info["pid"])
        # The keeper stopped for a moment: no server at all while the command ends.
        os.kill(keeper, signal.SIGSTOP)
        try:
            os.kill(old, signal.SIGKILL)
            wait_for(ended.exists, 10, "the command to end")
        finally:
            os.kill(keeper, signal.SIGCONT)
        _out, err = run.communicate(timeout=60)
        assert (run.returncode, err) == (7, b""), err
    finally:
        if run.poll() is None:
            run.kill()
            run.communicate()


@pytest.mark.parametrize("api", ["sync", "async"])
def test_the_api_run_follows_its_command_too(kept: Cli, tmp_path: Path, api: str) -> None:
    import asyncio
    import threading

    from tmuxish import Client, SyncClient

    cli = kept
    begun = tmp_path / "begun"
    command = f"touch {begun}; seq 1 {LINES}; sleep 0.5; (exit 3)"
    results: list[object] = []

    def sync_run() -> None:
        with SyncClient(cli.socket_path) as c:
            s = c.new(["bash"], env={"HOME": str(tmp_path), "PATH": os.environ["PATH"]})
            results.append(s.run(command, timeout=60))

    async def async_run() -> None:
        async with Client(cli.socket_path) as c:
            s = await c.new(["bash"], env={"HOME": str(tmp_path), "PATH": os.environ["PATH"]})
            results.append(await s.run(command, timeout=60))

    runner = threading.Thread(
        target=sync_run if api == "sync" else lambda: asyncio.run(async_run()), daemon=True
    )
    runner.start()
    wait_for(begun.exists, 30, "the command to start")
    os.kill(int(server_info(cli)["pid"]), signal.SIGKILL)
    runner.join(60)
    assert len(results) == 1, results
    result = results[0]
    assert getattr(result, "exit_code", None) == 3
    assert at_most_one_gap(getattr(result, "output", b""), EXPECTED)
