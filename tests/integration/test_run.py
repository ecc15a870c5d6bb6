"""Running commands in a session (``run``), output marks (``send`` -> ``expect since``), handles,
``wait_idle`` and ``wait_for_prompt``, through the API against real bash, zsh and dash sessions.

bash and zsh get tmuxish's shell integration (OSC 133 marks); dash gets the fallback wrapper.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import Cli, wait_for

from tmuxish import Client, SyncClient
from tmuxish.client.handle import AsyncSessionHandle, SessionHandle
from tmuxish.client.run import CommandTimeout, RunResult, Sent
from tmuxish.errors import SessionBusy, SessionExited

SHELLS = ["bash", "zsh", "dash"]


@pytest.fixture
def home(tmp_path: Path) -> Path:
    # An empty .zshrc: without one zsh starts its new-user menu.
    (tmp_path / ".zshrc").write_text("")
    return tmp_path


def shell_env(home: Path) -> dict[str, str]:
    """A clean environment: no PROMPT_COMMAND or rc files of whoever runs the tests."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "TERM": "xterm-256color",
        "PS1": "P> ",
        "ENV": "/dev/null",
        "LANG": "C.UTF-8",
    }


@pytest.fixture
def client(cli: Cli) -> Iterator[SyncClient]:
    with SyncClient(cli.socket_path) as c:
        yield c


def start(c: SyncClient, shell: str, home: Path) -> SessionHandle:
    if shutil.which(shell) is None:
        pytest.skip(f"{shell} is not installed")
    return c.new([shell], env=shell_env(home), inherit_env=False)


@pytest.mark.parametrize("shell", SHELLS)
def test_exit_codes_output_and_state(client: SyncClient, home: Path, shell: str) -> None:
    s = start(client, shell, home)
    assert (s.extra.get("shell_integration") is not None) == (shell != "dash")
    ok = s.run("echo hello")
    assert (ok.exit_code, ok.output) == (0, b"hello\n")
    assert s.run(["false"]).exit_code == 1
    missing = s.run("no-such-command-xyz")
    assert missing.exit_code == 127 and b"no-such-command-xyz" in missing.output
    assert s.run("exit_with() { return $1; }; exit_with 42").exit_code == 42
    # The shell's state stays: cwd and variables carry over to the next run.
    assert s.run(["cd", str(home), "&&", "X=kept"]).exit_code == 0
    assert s.run('echo "$PWD $X"').output == f"{home} kept\n".encode()
    # Nothing printed: nothing, not the prompt and not the echo.
    assert s.run("true").output == b""
    assert s.run("printf 'no newline'").output == b"no newline"


@pytest.mark.parametrize("shell", SHELLS)
def test_output_that_looks_like_marks_prompt_and_command(
    client: SyncClient, home: Path, shell: str
) -> None:
    s = start(client, shell, home)
    # The marker text without its ESC, the prompt text, and the command line itself.
    line = r"printf '133;D;0\n]133;C\nP> \n%s\n' 'echo the-command-itself'"
    result = s.run(line)
    assert result.exit_code == 0
    assert result.output == b"133;D;0\n]133;C\nP> \necho the-command-itself\n"
    assert s.run("echo after").output == b"after\n"


@pytest.mark.parametrize("shell", SHELLS)
def test_an_incomplete_line_is_refused_not_left_for_the_next_run(
    client: SyncClient, home: Path, shell: str
) -> None:
    s = start(client, shell, home)
    # An open quote, an `if` without `fi`, an open arithmetic: the shell would wait for more
    # (bash and zsh: a continuation prompt) or drop the rest of the typed line (dash: a syntax
    # error in eval). Either way the run ends with 2, as `sh -c` does, and nothing runs.
    for line in ("echo 'open; touch made-1", "if true; then touch made-2", "echo $((1+"):
        result = s.run(line, timeout=15)
        assert result.exit_code == 2, (line, result)
        assert result.incomplete == (shell != "dash")
        # The next run is not appended to the cancelled line: it runs on its own.
        assert s.run("echo next", timeout=15).output == b"next\n"
    assert not list(home.glob("made-*"))
    # A line that holds no command at all (bash, dash: a comment) ends at the next prompt.
    if shell != "zsh":  # zsh without interactive_comments runs a command named '#'
        assert s.run("# only a comment", timeout=15).exit_code == 0


@pytest.mark.parametrize("shell", SHELLS)
def test_a_long_command_line_arrives_whole(client: SyncClient, home: Path, shell: str) -> None:
    s = start(client, shell, home)
    # dash reads in canonical mode, where a terminal line stops at 4095 bytes: cut there, the
    # command would run truncated or never end. Quotes make the typed text longer still.
    words = " ".join(f"'w{i}'" for i in range(2000))
    result = s.run(f"for w in {words}; do echo $w; done | wc -l; echo end", timeout=30)
    assert (result.exit_code, result.output) == (0, b"2000\nend\n")


@pytest.mark.parametrize("shell", SHELLS)
def test_output_with_real_marks_does_not_end_the_run(
    client: SyncClient, home: Path, shell: str
) -> None:
    s = start(client, shell, home)
    # Real ESC bytes this time: the marks a nested shell with its own integration prints, or a
    # file that holds some. They are the command's output, not the end of it.
    marks = r"\033]133;D;0\007\033]133;A\007\033]133;A;k=s\007\033]133;C\007"
    result = s.run(f"printf '{marks}x\\n'; sleep 0.2; echo after; (exit 5)", timeout=15)
    assert result.exit_code == 5
    assert result.output.endswith(b"x\nafter\n") and result.output.count(b"\x1b]133;") == 4
    assert s.run("echo next", timeout=15).output == b"next\n"


@pytest.mark.parametrize("shell", SHELLS)
def test_interrupted_command_is_130(client: SyncClient, home: Path, shell: str) -> None:
    s = start(client, shell, home)
    started = threading.Event()
    results: list[RunResult] = []

    def sink(data: bytes) -> None:
        if b"started" in data:
            started.set()

    runner = threading.Thread(
        target=lambda: results.append(s.run("echo started; sleep 30", output=sink, timeout=20))
    )
    runner.start()
    try:
        assert started.wait(10), "the command did not start"
        with pytest.raises(SessionBusy):
            client.run(s, "echo no")
        # A ^C between `echo` and `sleep` reaches the shell, not the command: wait for sleep.
        assert s.pid is not None
        wait_for(lambda: child_named(s.pid, "sleep"), what="sleep to run")
        client.send(s, "\x03")
    finally:
        runner.join(25)
    assert len(results) == 1 and results[0].exit_code == 130
    assert s.run("echo next").output == b"next\n"


@pytest.mark.parametrize("shell", SHELLS)
def test_busy_timeout_and_session_kept(client: SyncClient, home: Path, shell: str) -> None:
    s = start(client, shell, home)
    with pytest.raises(CommandTimeout) as info:
        s.run("echo started; sleep 30", timeout=1)
    assert b"started" in info.value.output
    assert "still running" in str(info.value)
    # The command goes on; the session is kept, and refuses another command meanwhile.
    assert client.get(s).running
    with pytest.raises(SessionBusy, match="still running a command"):
        s.run("echo no")
    client.send(s, "\x03")
    client.wait_for_prompt(s, timeout=10)
    assert s.run("echo yes", timeout=10).output == b"yes\n"


@pytest.mark.parametrize("shell", SHELLS)
def test_a_command_someone_typed_makes_run_refuse(
    client: SyncClient, home: Path, shell: str
) -> None:
    s = start(client, shell, home)
    assert s.run("true").exit_code == 0
    # Typed at the prompt by someone else: no run's marks around it, and it reads the terminal
    # (the run's line would be its input). dash has no integration: the terminal's foreground
    # process group tells.
    client.send(s, "cat\r")
    assert s.pid is not None
    wait_for(lambda: child_named(s.pid, "cat"), what="cat to run")
    with pytest.raises(SessionBusy, match="still running a command"):
        s.run("echo no", timeout=5)
    client.send(s, "\x04")  # end of file: cat ends
    wait_for(lambda: not child_named(s.pid, "cat"), what="cat to end")
    assert s.run("echo yes", timeout=10).output == b"yes\n"


@pytest.mark.parametrize("shell", SHELLS)
def test_wait_for_prompt_waits_for_a_typed_command(
    client: SyncClient, home: Path, shell: str
) -> None:
    s = start(client, shell, home)
    s.wait_for_prompt(timeout=10)
    flag = home / "finished"
    client.send(s, f"sleep 1; touch {flag}\r")
    assert s.pid is not None
    wait_for(lambda: child_named(s.pid, "sleep"), what="sleep to run")
    # dash has no marks: the job that holds the terminal tells that it is not at its prompt.
    s.wait_for_prompt(timeout=10)
    assert flag.exists()


@pytest.mark.parametrize("shell", ["bash", "dash"])
def test_ten_megabytes_in_order(client: SyncClient, home: Path, shell: str) -> None:
    s = start(client, shell, home)
    digest = hashlib.sha256()
    size = 0
    chunks = 0

    def sink(data: bytes) -> None:
        nonlocal size, chunks
        digest.update(data)
        size += len(data)
        chunks += 1

    # 1..1400000 is 9.7 MB of digits and newlines.
    result = s.run("seq 1 1400000", output=sink, timeout=60)
    expected = "".join(f"{i}\n" for i in range(1, 1400001)).encode()
    assert result.exit_code == 0 and result.output == b""
    assert size == len(expected) > 9_000_000
    assert digest.hexdigest() == hashlib.sha256(expected).hexdigest()
    assert chunks > 1  # streamed as it came, not in one piece


@pytest.mark.parametrize("shell", ["bash", "dash"])
def test_stdin_and_full_screen_program(client: SyncClient, home: Path, shell: str) -> None:
    s = start(client, shell, home)
    result = s.run("read line; echo got:$line", input="typed\r")
    assert result.exit_code == 0 and result.output.endswith(b"got:typed\n")
    # A program that switches to the alternate screen and back.
    full = s.run(r"printf '\033[?1049hFULL\033[?1049l'; echo done")
    assert full.exit_code == 0 and full.output == b"\x1b[?1049hFULL\x1b[?1049ldone\n"


@pytest.mark.parametrize("shell", SHELLS)
def test_expect_since_never_matches_old_text(client: SyncClient, home: Path, shell: str) -> None:
    s = start(client, shell, home)
    assert s.run("echo READY-1").output == b"READY-1\n"
    assert "READY-1" in s.capture()  # on screen before the send
    mark = s.send("sleep 0.5; echo READY-$((1+1))\r")
    assert isinstance(mark, Sent) and mark == len("sleep 0.5; echo READY-$((1+1))\r")
    # The echo of the typed line has "READY-$((1+1))", the old screen "READY-1": neither is it.
    assert s.expect(r"^READY-\d$", since=mark, timeout=10).group(0) == "READY-2"
    with pytest.raises(TimeoutError, match="READY-1"):
        client.wait_for_text(s, r"^READY-1$", since=mark, timeout=1)
    # Without since, the screen still decides (old behaviour).
    assert client.wait_for_text(s.id, r"^READY-1$", timeout=5).group(0) == "READY-1"


def test_handles_and_info_as_targets(client: SyncClient, home: Path) -> None:
    s = start(client, "bash", home)
    info = client.get(s.id)
    assert isinstance(s, SessionHandle) and s.id == info.id and s.command == ("bash",)
    assert client.get(info).id == s.id  # a SessionInfo passed back: no msgpack error
    assert client.get(s).id == s.id
    assert [x.id for x in client.sessions()] == [s.id]
    assert client.resize(info, 100, 30).cols == 100
    s.wait_for_prompt(timeout=10)
    s.send(["echo", "Space", "quiet", "Enter"])
    s.wait_idle(quiet=0.3, timeout=10)
    assert "quiet" in s.capture()
    assert s.kill("KILL").id == s.id
    assert s.wait(timeout=10) == 137
    assert s.refresh().status == "exited"


async def test_async_client_run_and_handle(cli: Cli, home: Path) -> None:
    async with Client(cli.socket_path) as c:
        s = await c.new(["bash"], env=shell_env(home), inherit_env=False)
        assert isinstance(s, AsyncSessionHandle)
        await s.wait_for_prompt(timeout=10)
        r = await s.run("echo async; false")
        assert (r.exit_code, r.output) == (1, b"async\n")
        seen: list[bytes] = []
        r = await c.run(s, ["printf", "'a\\nb\\n'"], output=seen.append)
        assert r.exit_code == 0 and b"".join(seen) == b"a\nb\n"
        mark = await s.send("echo MARK-$((6*7))\r")
        assert (await s.expect(r"^MARK-42$", since=mark)).group(0) == "MARK-42"
        with pytest.raises(CommandTimeout):
            await s.run("sleep 30", timeout=0.5)
        with pytest.raises(SessionBusy):
            await s.run("echo no")
        await s.send("\x03")
        await s.wait_for_prompt(timeout=10)
        await s.wait_idle(quiet=0.2, timeout=10)
        await s.kill("KILL")
        assert await s.wait(timeout=10) == 137


def child_named(pid: int, name: str) -> bool:
    """Whether a child of ``pid`` runs ``name``."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        if ppid == pid and comm == name:
            return True
    return False


def test_wait_for_prompt_times_out_and_sees_the_end(client: SyncClient, home: Path) -> None:
    s = start(client, "bash", home)
    s.wait_for_prompt(timeout=10)
    s.send("sleep 30\r")
    assert s.pid is not None
    wait_for(lambda: child_named(s.pid, "sleep"), what="sleep to run")
    with pytest.raises(TimeoutError, match=r"no prompt within 0\.5s"):
        s.wait_for_prompt(timeout=0.5)
    outcome: list[BaseException] = []

    def waiting() -> None:
        try:
            client2.wait_for_prompt(s, timeout=20)
        except BaseException as exc:
            outcome.append(exc)

    with SyncClient(client.socket_path) as client2:
        waiter = threading.Thread(target=waiting)
        waiter.start()
        s.kill("KILL")
        waiter.join(15)
    assert len(outcome) == 1 and isinstance(outcome[0], SessionExited), outcome


def test_a_run_or_a_watcher_is_not_an_attached_client(
    client: SyncClient, home: Path, tmp_path: Path
) -> None:
    """Failed before: `ls` said CLIENTS 1 while a command ran (and while expect watched), and
    the events stream reported client-attached/-detached for them. CLIENTS counts terminals,
    as tmux's and docker's do."""
    import threading

    s = start(client, "bash", home)
    started = tmp_path / "started"
    done = threading.Event()
    seen: list[int] = []

    def run() -> None:
        s.run(f"touch {started}; sleep 1", timeout=20)
        done.set()

    worker = threading.Thread(target=run)
    worker.start()
    try:
        wait_for(started.exists, what="the command to start")
        seen.append(client.get(s.id).clients)
    finally:
        worker.join(20)
    assert done.is_set()
    sent = s.send("sleep 0.3; echo WATCHED\r")
    s.expect("WATCHED", since=sent, timeout=10)
    assert seen == [0]
    assert client.get(s.id).clients == 0
