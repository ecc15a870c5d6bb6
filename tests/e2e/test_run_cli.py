"""`tmuxish run` through the real CLI against real bash, zsh and dash sessions."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

import pytest
from helpers import Cli

SHELLS = ["bash", "zsh", "dash"]


def session(cli: Cli, shell: str, home: Path) -> int:
    if shutil.which(shell) is None:
        pytest.skip(f"{shell} is not installed")
    (home / ".zshrc").write_text("")  # no zsh new-user menu
    cli.env.update({"HOME": str(home), "PS1": "P> ", "ENV": "/dev/null"})
    return cli.new(shell)


@pytest.mark.parametrize("shell", SHELLS)
def test_run_exit_codes_and_output(cli: Cli, tmp_path: Path, shell: str) -> None:
    sid = session(cli, shell, tmp_path)
    t = str(sid)
    ok = cli.run("run", "-t", t, "--", "echo", "hello", "world")
    assert (ok.returncode, ok.stdout) == (0, "hello world\n")
    # Words are joined into one line for the shell, as ssh does.
    joined = cli.run("run", "-t", t, "--", "cd /tmp && pwd; echo $((40+2))")
    assert joined.stdout == "/tmp\n42\n"
    assert cli.run("run", "-t", t, "--", "pwd").stdout == "/tmp\n"  # the state stays
    assert cli.run("run", "-t", t, "--", "false", check=False).returncode == 1
    missing = cli.run("run", "-t", t, "--", "no-such-command-xyz", check=False)
    assert missing.returncode == 127 and "no-such-command-xyz" in missing.stdout
    killed = cli.run("run", "-t", t, "--", "sh -c 'kill -INT $$'", check=False)
    assert killed.returncode == 130
    assert cli.run("run", "-t", t, "--", "true").stdout == ""


@pytest.mark.parametrize("shell", SHELLS)
def test_run_of_an_incomplete_line_exits_2(cli: Cli, tmp_path: Path, shell: str) -> None:
    t = str(session(cli, shell, tmp_path))
    bad = cli.run("run", "-t", t, "--timeout", "15", "--", "echo 'open quote", check=False)
    assert bad.returncode == 2 and bad.stdout.count("\n") <= 1
    # bash and zsh: tmuxish says so; dash: the shell's own syntax error, in the output.
    said = bad.stderr if shell != "dash" else bad.stdout
    assert "incomplete" in said or "Unterminated" in said, bad
    assert cli.run("run", "-t", t, "--", "echo next").stdout == "next\n"


@pytest.mark.parametrize("shell", ["bash", "dash"])
def test_run_timeout_keeps_the_session_and_busy_is_refused(
    cli: Cli, tmp_path: Path, shell: str
) -> None:
    sid = session(cli, shell, tmp_path)
    t = str(sid)
    late = cli.run("run", "-t", t, "--timeout", "1", "--", "echo begun; sleep 60", check=False)
    assert late.returncode == 124
    assert late.stdout == "begun\n"
    assert "still running" in late.stderr and f"session {sid}" in late.stderr
    assert cli.session(sid)["status"] == "running"
    busy = cli.run("run", "-t", t, "--", "echo no", check=False)
    assert busy.returncode == 1 and "still running a command" in busy.stderr
    assert busy.stdout == ""
    cli.run("send", t, "C-c")
    from helpers import wait_for

    def runs() -> bool:
        r = cli.run("run", "-t", t, "--", "echo again", check=False)
        return r.returncode == 0 and r.stdout == "again\n"

    wait_for(runs, what="the session to take a command again")


def test_run_streams_as_it_comes_and_in_order(cli: Cli, tmp_path: Path) -> None:
    sid = session(cli, "bash", tmp_path)
    proc = subprocess.Popen(
        cli.argv("run", "-t", str(sid), "--", "echo first; read _; echo second"),
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        env=cli.env,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"first\n"
        assert proc.poll() is None  # printed while the command still runs
        cli.run("send", str(sid), "Enter")
        # The terminal echoes what is typed to the command (the Enter), as it would on screen.
        assert proc.stdout.read() == b"\nsecond\n"
        assert proc.wait(10) == 0
    finally:
        proc.kill()
        proc.wait()
    big = subprocess.run(
        cli.argv("run", "-t", str(sid), "--", "seq 1 1400000"),
        capture_output=True,
        env=cli.env,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    expected = "".join(f"{i}\n" for i in range(1, 1400001)).encode()
    assert big.returncode == 0 and len(big.stdout) == len(expected)
    assert hashlib.sha256(big.stdout).digest() == hashlib.sha256(expected).digest()


def test_run_stdin(cli: Cli, tmp_path: Path) -> None:
    sid = session(cli, "bash", tmp_path)
    proc = subprocess.run(
        cli.argv("run", "--stdin", "-t", str(sid), "--", 'read l; echo "[$l]"'),
        input=b"piped\n",
        capture_output=True,
        env=cli.env,
        timeout=30,
    )
    assert proc.returncode == 0 and proc.stdout.endswith(b"[piped]\n")


def test_run_after_a_server_upgrade(cli: Cli, tmp_path: Path) -> None:
    """An integrated shell sitting at its prompt draws no new one for the upgraded server: the
    prompt state travels with the session (else run would wait for a prompt that never comes)."""
    sid = session(cli, "bash", tmp_path)
    t = str(sid)
    assert cli.run("run", "-t", t, "--", "X=before").returncode == 0
    cli.run("server", "upgrade")
    after = cli.run("run", "-t", t, "--timeout", "10", "--", 'echo "$X after"', check=False)
    assert (after.returncode, after.stdout) == (0, "before after\n")


def test_ctrl_c_on_run_interrupts_the_command_in_the_session(cli: Cli, tmp_path: Path) -> None:
    """As the full CLI did: Ctrl-C reaches the command, the client exits 130, the shell is
    free for the next run."""
    import signal

    from helpers import wait_for

    sid = session(cli, "bash", tmp_path)
    started = tmp_path / "started"
    run = subprocess.Popen(
        cli.argv("run", "-t", str(sid), "--", f"touch {started}; sleep 100; echo not-interrupted"),
        env=cli.env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        wait_for(started.exists, what="the command to start")
        run.send_signal(signal.SIGINT)
        out, err = run.communicate(timeout=20)
    finally:
        if run.poll() is None:
            run.kill()
            run.communicate()
    assert run.returncode == 130, err
    assert b"not-interrupted" not in out
    after = cli.run("run", "-t", str(sid), "--", "echo", "free")
    assert after.stdout == "free\n"


def test_run_whose_output_is_closed_or_full(cli: Cli, tmp_path: Path) -> None:
    sid = str(session(cli, "bash", tmp_path))
    # `| head -1`: 141, as for a command killed by SIGPIPE; no traceback; the command ends.
    ended = tmp_path / "ended"
    run = cli.argv("run", "-t", sid, "--", f"seq 1 10000000; echo done > {ended}")
    piped = subprocess.run(
        ["bash", "-c", '"$@" | head -1; echo "${PIPESTATUS[0]}"', "bash", *run],
        env=cli.env,
        capture_output=True,
        timeout=60,
    )
    assert piped.stdout == b"1\n141\n" and piped.stderr == b"", piped
    with open("/dev/full", "wb") as full:
        cp = subprocess.run(
            cli.argv("run", "-t", sid, "--", "seq 1 100000"),
            env=cli.env,
            stdout=full,
            stderr=subprocess.PIPE,
            timeout=60,
        )
    assert cp.returncode == 1
    assert cp.stderr.decode().splitlines() == [
        "tmuxish: cannot write output: No space left on device"
    ]
    assert cli.run("run", "-t", sid, "--", "echo", "free").stdout == "free\n"
    assert not ended.exists()  # interrupted, as ssh's remote command is


@pytest.mark.parametrize("shell", ["dash", "bash --posix", "busybox sh"])
def test_run_leaves_the_users_int_trap_alone(cli: Cli, tmp_path: Path, shell: str) -> None:
    """Failed before: the wrapper for shells without the OSC 133 integration ended with
    `trap - INT`, wiping a trap the user had set at the prompt."""
    from helpers import wait_for

    program, *args = shell.split()
    if shutil.which(program) is None:
        pytest.skip(f"{program} is not installed")
    cli.env.update({"HOME": str(tmp_path), "PS1": "P> ", "ENV": "/dev/null"})
    sid = str(cli.new(program, *args))
    shown = tmp_path / "traps"
    cli.run("send", sid, "trap 'echo caught' INT", "Enter")
    assert cli.run("run", "-t", sid, "--", "echo", "between").stdout == "between\n"
    interrupted = cli.run("run", "-t", sid, "--", "sh -c 'kill -INT $$'", check=False)
    assert interrupted.returncode == 130  # the wrapper still sees the interrupt
    cli.run("send", sid, f"trap > {shown}", "Enter")
    wait_for(lambda: shown.exists() and shown.stat().st_size > 0, what="the trap listing")
    traps = shown.read_text()
    assert "echo caught" in traps and "INT" in traps, traps
    kept = Path(f"{cli.socket_path}.shell") / f"traps.{sid}"
    assert kept.exists()
    cli.run("kill", sid)
    wait_for(lambda: not kept.exists(), what="the saved traps to go with the session")
