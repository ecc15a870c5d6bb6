"""Issue 15: the commands scripts call hundreds of times (`new -d`, `wait`, `attach`) start as
light as `ls`. Checked by what they import (the time itself is the benchmark's business), and
that the fast path does the whole job the full CLI did."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pexpect
import pytest
from helpers import Cli, wait_for

#: Imports that make a command start slowly: argparse, pathlib and typing with re alone cost
#: ~40 ms at a cold start; asyncio and uvloop ~50 ms more.
HEAVY = {"argparse", "pathlib", "typing", "re", "dataclasses", "asyncio", "uvloop"}


def imported_by(lines: list[str]) -> set[str]:
    """Module names in `-X importtime` lines."""
    return {row.split("|")[-1].strip() for row in lines if row.startswith("import time:")}


def site_imports(cli: Cli) -> set[str]:
    # What this environment's site start-up imports anyway (an editable install's finder
    # imports pathlib and typing) is not the command's doing.
    env = {**cli.env, "PYTHONPROFILEIMPORTTIME": "1"}
    proc = subprocess.run(
        [sys.executable, "-P", "-c", "pass"], capture_output=True, text=True, env=env, check=True
    )
    return imported_by(proc.stderr.splitlines())


@pytest.mark.parametrize(
    "line",
    [
        ["new", "-d", "--", "sleep", "1000"],
        ["new", "-d", "-s", "web", "-x", "100", "-y", "30", "-e", "A=1", "-c", "/", "sleep", "9"],
        ["wait", "1"],
    ],
)
def test_new_and_wait_stay_light(cli: Cli, line: list[str]) -> None:
    cli.new("sh", "-c", "exit 3")
    wait_for(lambda: cli.session(1)["status"] == "exited", what="session 1 to exit")
    env = {**cli.env, "PYTHONPROFILEIMPORTTIME": "1"}
    proc = subprocess.run(cli.argv(*line), capture_output=True, text=True, env=env, timeout=30)
    assert proc.returncode == (3 if line[0] == "wait" else 0), proc.stderr[-500:]
    imported = imported_by(proc.stderr.splitlines()) - site_imports(cli)
    assert "tmuxish.quick" in imported
    assert not HEAVY & imported, sorted(HEAVY & imported)
    assert "tmuxish.client.commands" not in imported  # the full CLI was not needed after all


def test_new_detached_makes_the_session_the_full_cli_would(cli: Cli, tmp_path: Path) -> None:
    out = cli.run(
        "new",
        "-d",
        "-s",
        "job",
        "-x",
        "100",
        "-y",
        "30",
        "-c",
        str(tmp_path),
        "-e",
        "K=v=w",
        "sh",
        "-c",
        "echo $K > out; pwd >> out; stty size >> out; exec sleep 1000",
    )
    sid = int(out.stdout)
    info = cli.session(sid)
    assert (info["name"], info["cols"], info["rows"]) == ("job", 100, 30)
    out_file = tmp_path / "out"
    wait_for(lambda: len(out_file.read_text().splitlines()) == 3 if out_file.exists() else False)
    assert out_file.read_text().splitlines() == ["v=w", str(tmp_path), "30 100"]


def test_wait_blocks_until_the_program_exits(cli: Cli, tmp_path: Path) -> None:
    go = tmp_path / "go"
    sid = cli.new("sh", "-c", f"while [ ! -e {go} ]; do sleep 0.05; done; exit 7")
    waiter = subprocess.Popen(cli.argv("wait", str(sid)), env=cli.env)
    try:
        time.sleep(0.3)  # the waiter must still be waiting (it has nothing to wait on but this)
        assert waiter.poll() is None
        go.touch()
        assert waiter.wait(timeout=20) == 7
    finally:
        waiter.kill()
        waiter.wait()


def attach_imports(cli: Cli, *line: str) -> set[str]:
    """Attach under a real PTY with import timing on, detach: what the client imported."""
    import io

    cli.env["PYTHONPROFILEIMPORTTIME"] = "1"
    try:
        child = cli.spawn(*line)
    finally:
        del cli.env["PYTHONPROFILEIMPORTTIME"]
    child.logfile_read = io.BytesIO()  # nothing is read before this: it gets every byte
    child.expect_exact("READY")
    child.send(b"\x10\x11")
    child.expect_exact("[detached from session 1]")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    said = child.logfile_read.getvalue().decode(errors="replace")
    return imported_by(said.replace("\r", "").split("\n"))


@pytest.mark.parametrize("line", [["attach", "1"], ["attach", "-r", "1"], ["a", "1"]])
def test_a_direct_attach_stays_light(cli: Cli, line: list[str]) -> None:
    cli.new("sh", "-c", "echo READY; exec sleep 1000")
    cli.env["TMUXISH_ATTACH_MODE"] = "direct"
    imported = attach_imports(cli, *line) - site_imports(cli)
    assert "tmuxish.quick" in imported and "tmuxish.client.attach" in imported
    # The event loop is imported once the attach request is answered (client/attach.py
    # _run_relay says why), and asyncio brings typing: light means no argparse, pathlib, re or
    # dataclasses, and no full CLI.
    heavy = HEAVY - {"asyncio", "uvloop", "typing"}
    assert not heavy & imported, sorted(heavy & imported)
    assert "tmuxish.client.commands" not in imported  # nor the full CLI


def test_a_relay_attach_is_the_full_clis(cli: Cli) -> None:
    cli.new("sh", "-c", "echo READY; exec sleep 1000")
    cli.env["TMUXISH_ATTACH_MODE"] = "relay"
    imported = attach_imports(cli, "attach", "1")
    assert "tmuxish.client.commands" in imported and "asyncio" in imported


def test_attaching_to_no_such_session_is_one_line(cli: Cli) -> None:
    cli.new("sleep", "1000")
    child = cli.spawn("attach", "nosuch")
    child.expect(pexpect.EOF)
    child.close()
    said = child.before.decode(errors="replace").strip()
    assert child.exitstatus == 1
    assert said == "tmuxish: no session named 'nosuch'", said


def test_detach_exits_at_once(cli: Cli) -> None:
    """The detach keys to the client's exit: no event loop or interpreter teardown to wait for."""
    cli.new("sh", "-c", "echo READY; exec sleep 1000")
    child = cli.spawn("attach", "1")
    child.expect_exact("READY")
    start = time.monotonic()
    child.send(b"\x10\x11")
    child.expect_exact("[detached from session 1]")
    child.expect(pexpect.EOF)
    took = time.monotonic() - start
    child.close()
    assert child.exitstatus == 0
    # Generous for a loaded machine; the bench measures the real figure (a few ms).
    assert took < 1.5, took


def test_a_fast_attach_rides_through_a_server_upgrade(cli: Cli) -> None:
    cli.env["PS1"] = "PROMPT> "
    cli.env["ENV"] = "/dev/null"
    sid = cli.new("sh")
    child = cli.spawn("attach", str(sid))
    child.expect_exact("PROMPT> ")
    wait_for(lambda: cli.session(sid)["clients"] == 1, what="client to attach")
    assert "generation 1" in cli.run("server", "upgrade").stdout
    # The client connected again by itself, handing the new server its terminal once more.
    wait_for(lambda: cli.session(sid)["clients"] == 1, what="client to reconnect")
    child.send("echo after-$((2*22))\r")
    child.expect_exact("after-44")
    child.send("exit 5\r")
    child.expect_exact(f"[session {sid} exited with code 5]")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 5


@pytest.mark.parametrize("fast", [True, False], ids=["fast-path", "full-cli"])
def test_arguments_and_environment_that_are_not_utf8_reach_the_program(
    cli: Cli, tmp_path: Path, fast: bool
) -> None:
    """Failed before: `tmuxish: internal error: UnicodeEncodeError: ... surrogates not allowed`.
    tmux and a shell pass such bytes through; so does the wire now (surrogateescape)."""
    seen = tmp_path / "seen"
    env = {**cli.env, "ODD": os.fsdecode(b"caf\xe9")}
    script = 'printf "%s|%s" "$ODD" "$1" > "$2"'
    # `-A` is not on the fast path: the same request then comes from the full CLI.
    options = ["-d"] if fast else ["-d", "-A", "-s", "odd"]
    argv = cli.argv("new", *options, "--", "sh", "-c", script, "sh", os.fsdecode(b"\xff\xfe"))
    proc = subprocess.run([*argv, str(seen)], env=env, capture_output=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    wait_for(lambda: seen.exists() and seen.stat().st_size >= 7, what="the program's output")
    assert seen.read_bytes() == b"caf\xe9|\xff\xfe"
    listing = subprocess.run(cli.argv("ls"), env=env, capture_output=True, timeout=30)
    assert listing.returncode == 0, listing.stderr
    assert b"sh" in listing.stdout


def test_run_stays_light_and_does_the_whole_job(cli: Cli, tmp_path: Path) -> None:
    """Issue 15 lists `run` with the commands that start as light as `ls`."""
    import shutil

    if shutil.which("bash") is None:
        pytest.skip("bash is not installed")
    cli.env.update({"HOME": str(tmp_path), "PS1": "P> "})
    sid = cli.new("bash")
    env = {**cli.env, "PYTHONPROFILEIMPORTTIME": "1"}
    argv = cli.argv(
        "run",
        "-t",
        str(sid),
        "--timeout",
        "30",
        "--",
        "echo hi; exit_with() { return $1; }; exit_with 3",
    )
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 3, proc.stderr[-500:]
    assert proc.stdout == "hi\n"
    imported = imported_by(proc.stderr.splitlines()) - site_imports(cli)
    assert "tmuxish.quick" in imported
    assert not HEAVY & imported, sorted(HEAVY & imported)
    assert "tmuxish.client.commands" not in imported
