"""The Python API (tmuxish.Client, tmuxish.SyncClient) against a real server on a private socket.

Async tests run under asyncio and uvloop (see conftest). Interactive programs are driven with
``wait_for_text``: no sleeps anywhere.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import time
from typing import Any

import pytest
from helpers import Cli, wait_for

import tmuxish
from tmuxish import Client, SyncClient
from tmuxish.client.api import SessionInfo
from tmuxish.errors import (
    NameInUse,
    ProgramNotFound,
    ServerNotRunning,
    SessionExited,
    SessionNotFound,
    SessionRunning,
)

SH_ENV = {"PS1": "P> ", "ENV": "/dev/null"}


def shell(c: SyncClient, name: str | None = None) -> SessionInfo:
    s = c.new(["sh"], name=name, env=SH_ENV)
    c.wait_for_text(s.id, "^P>", timeout=10)
    return s


# -- SyncClient ------------------------------------------------------------------------------------


def test_sync_lifecycle(cli: Cli) -> None:
    with SyncClient(cli.socket_path) as c:
        assert c.sessions() == []  # no server yet: like `tmuxish ls`, not an error
        with pytest.raises(ServerNotRunning):
            c.get(1)
        s = c.new(["sh"], name="calc", cols=100, rows=30, env=SH_ENV)  # starts the server
        assert isinstance(s, SessionInfo)
        assert (s.id, s.name, s.command, s.status, s.running) == (
            1,
            "calc",
            ("sh",),
            "running",
            True,
        )
        assert (s.cols, s.rows, s.exit_code, s.clients) == (100, 30, None, 0)
        assert s.created.tzinfo is not None
        assert c.get("calc").id == c.get(1).id == c.get("1").id == 1
        assert [x.id for x in c.sessions()] == [1]

        assert c.rename(1, "adder").name == "adder"
        with pytest.raises(SessionNotFound):
            c.get("calc")

        # Typed before sh has printed its prompt, the line would be echoed above it and the
        # answer would follow the prompt ("P> 5"): wait for the prompt first.
        c.wait_for_text("adder", "^P>", timeout=10)
        c.send("adder", ["echo $((2+3))", "Enter"])
        match = c.wait_for_text("adder", r"^5$")
        assert match.group(0) == "5"
        assert "echo $((2+3))" in c.capture(1)

        assert c.kill(1, signal="SIGKILL").id == 1  # an interactive sh ignores TERM
        assert c.wait(1, timeout=10) == 128 + 9
        gone = c.get(1)
        assert (gone.status, gone.exit_code, gone.running) == ("exited", 137, False)
        assert c.rm(1).id == 1
        assert c.sessions() == []
        with pytest.raises(SessionNotFound):
            c.get(1)


def test_sync_send_forms_and_capture(cli: Cli) -> None:
    with SyncClient(cli.socket_path) as c:
        s = shell(c)
        assert c.send(s.id, "echo text-$((1+1))\r") == len("echo text-$((1+1))\r")  # str: text
        c.wait_for_text(s.id, r"^text-2$")
        c.send(s.id, b"echo bytes-$((2+2))\r")  # bytes as they are
        c.wait_for_text(s.id, r"^bytes-4$")
        c.send(s.id, ["echo", "Space", "keys-$((3+3))", "Enter"])  # key names, like send-keys
        c.wait_for_text(s.id, r"^keys-6$")
        c.send(s.id, ["echo literal-Enter", "Enter"], literal=False)
        c.wait_for_text(s.id, r"^literal-Enter$")

        c.send(s.id, ["printf '\\033[31mred\\033[0m-%s\\n' ok", "Enter"])
        c.wait_for_text(s.id, r"^red-ok$")
        assert "\x1b[" not in c.capture(s.id)
        assert re.search(r"\x1b\[[0-9;]*m\s*red", c.capture(s.id, escapes=True))

        c.send(s.id, ["i=0; while [ $i -lt 60 ]; do echo line-$i; i=$((i+1)); done", "Enter"])
        c.wait_for_text(s.id, r"^line-59$")
        assert "line-0\n" not in c.capture(s.id)
        assert "line-0\n" in c.capture(s.id, history=True)
        c.wait_for_text(s.id, r"^line-0$", history=True)


def test_sync_errors(cli: Cli) -> None:
    with SyncClient(cli.socket_path, autostart=False) as c, pytest.raises(ServerNotRunning):
        c.new(["sh"])
    with SyncClient(cli.socket_path) as c:
        c.new(["cat"], name="dup")
        with pytest.raises(NameInUse):
            c.new(["cat"], name="dup")
        with pytest.raises(ProgramNotFound):
            c.new(["/nonexistent/program"])
        with pytest.raises(ProgramNotFound):
            c.new("no-such-program-here --flag")
        with pytest.raises(SessionNotFound):
            c.kill("nope")
        with pytest.raises(SessionRunning):
            c.rm("dup")
        assert c.rm("dup", force=True).name == "dup"
        with pytest.raises(tmuxish.errors.UsageError):
            c.new([])
        with pytest.raises(tmuxish.errors.UsageError):
            c.new(["cat"], cols=0)


def test_sync_wait_for_text_timeout_and_exit(cli: Cli) -> None:
    with SyncClient(cli.socket_path) as c:
        s = shell(c)
        start = time.monotonic()
        with pytest.raises(TimeoutError) as info:
            c.wait_for_text(s.id, "never-printed", timeout=0.3)
        assert time.monotonic() - start < 5
        assert "never-printed" in str(info.value) and "P>" in str(info.value)
        # The connection is still good after a timeout.
        assert c.get(s.id).running

        c.send(s.id, ["echo bye; exit 4", "Enter"])
        with pytest.raises(SessionExited):
            c.wait_for_text(s.id, "not-there", timeout=30)
        assert c.wait(s.id, timeout=10) == 4
        # An exited session still has its last screen.
        assert c.wait_for_text(s.id, r"^bye$", timeout=5).group(0) == "bye"


def test_sync_wait_timeout_keeps_connection_usable(cli: Cli) -> None:
    with SyncClient(cli.socket_path) as c:
        s = c.new(["cat"])
        with pytest.raises(TimeoutError):
            c.wait(s.id, timeout=0.2)
        # The late reply of the abandoned wait is recognised by its id and dropped.
        assert c.get(s.id).running
        c.kill(s.id)
        assert c.wait(s.id, timeout=10) == 128 + 1
        assert c.get(s.id).exit_code == 129


def test_sync_attach_stream(cli: Cli) -> None:
    with SyncClient(cli.socket_path) as c:
        s = shell(c)
        with c.attach(s.id, cols=90, rows=20) as stream:
            assert stream.session.id == s.id
            first = stream.read(timeout=5)
            assert first is not None and b"P> " in first  # the repaint comes first
            assert c.get(s.id).clients == 1
            assert (c.get(s.id).cols, c.get(s.id).rows) == (90, 20)
            stream.write("echo streamed-$((5*5))\r")
            seen = b""
            while b"streamed-25" not in seen:
                chunk = stream.read(timeout=10)
                assert chunk is not None
                seen += chunk
            stream.resize(70, 15)
            wait_for(lambda: c.get(s.id).cols == 70, what="resize through the stream")
        # Leaving the with-block detached; the session goes on.
        wait_for(lambda: c.get(s.id).clients == 0, what="detach")
        assert c.get(s.id).running
        assert stream.exit_code is None and stream.detach_reason == "detached"

        stream = c.attach(s.id, repaint=False)
        stream.write(b"exit 9\n")
        output = b"".join(stream)
        assert stream.exit_code == 9
        assert b"exit 9" in output
        stream.close()
        assert c.wait(s.id, timeout=10) == 9


def test_sync_resize_and_new_options(cli: Cli) -> None:
    with SyncClient(cli.socket_path) as c:
        s = c.new(
            ["sh", "-c", 'echo "cwd=$(pwd) v=$MYVAR"; stty size; exec cat'],
            cwd="/tmp",
            env={"MYVAR": "hello"},
            cols=60,
            rows=10,
        )
        c.wait_for_text(s.id, r"^cwd=/tmp v=hello$")
        c.wait_for_text(s.id, r"^10 60$")
        info = c.resize(s.id, 120, 40)
        assert (info.cols, info.rows) == (120, 40)

        p = c.new("sh -c 'echo split-ok; exec cat'", window_size="smallest")
        assert p.command == ("sh", "-c", "echo split-ok; exec cat")
        assert p.policy == "smallest"
        c.wait_for_text(p.id, "^split-ok$")
        no_env = c.new(["/bin/sh", "-c", 'echo "home=[$HOME]"; exec cat'], inherit_env=False)
        c.wait_for_text(no_env.id, r"^home=\[\]$")


def test_sync_default_socket_from_env(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TMUXISH_SOCKET", str(cli.socket_path))
    with SyncClient() as c:
        assert c.socket_path == cli.socket_path
        sid = c.new(["cat"]).id
    assert [s["id"] for s in cli.sessions()] == [sid]


def test_cli_and_api_agree(cli: Cli) -> None:
    with SyncClient(cli.socket_path) as c:
        c.new(["cat"], name="one")
        c.new(["sh", "-c", "exit 3"])
        c.wait(2, timeout=10)
        api = [s.to_dict() for s in c.sessions()]
    assert json.loads(cli.run("ls", "--json").stdout) == api
    assert [SessionInfo.from_dict(d) for d in api] == SyncClient(cli.socket_path).sessions()


def test_sync_hundred_sessions_on_one_connection(cli: Cli) -> None:
    with SyncClient(cli.socket_path) as c:
        c.new(["cat"])  # the server is up before the clock starts
        start = time.perf_counter()
        for _ in range(100):
            c.new(["cat"])
        elapsed = time.perf_counter() - start
        assert len(c.sessions()) == 101
    sys.stderr.write(f"100 x SyncClient.new: {elapsed:.3f}s\n")
    # tmux `new -d` x100 takes about 1 s here; leave room for a loaded CI machine.
    assert elapsed < 20


def test_import_tmuxish_stays_cheap() -> None:
    code = (
        "import sys, tmuxish; tmuxish.SyncClient; import tmuxish.client.commands; "
        "print('asyncio' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-P", "-c", code], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "False"


# -- Client (asyncio and uvloop) -------------------------------------------------------------------


async def test_async_drive_shell(cli: Cli) -> None:
    async with Client(cli.socket_path) as c:
        assert await c.sessions() == []
        s = await c.new(["sh"], name="calc", env=SH_ENV)
        await c.wait_for_text(s.id, "^P>")
        await c.send("calc", ["echo $((2+3))", "Enter"])
        match = await c.wait_for_text("calc", re.compile(r"^5$", re.M), timeout=10)
        assert match.group(0) == "5"
        # Requests on one connection run concurrently and are matched by id.
        screen, sessions, info = await asyncio.gather(c.capture(s.id), c.sessions(), c.get("calc"))
        assert "echo $((2+3))" in screen
        assert [x.name for x in sessions] == ["calc"]
        assert info.id == s.id
        assert (await c.rename(s.id, "sum")).name == "sum"
        assert (await c.resize("sum", 100, 30)).cols == 100


async def test_async_wait_runs_beside_other_requests(cli: Cli) -> None:
    async with Client(cli.socket_path) as c:
        s = await c.new(["sh"], env=SH_ENV)
        await c.wait_for_text(s.id, "^P>")
        waiter = asyncio.ensure_future(c.wait(s.id))
        await c.send(s.id, ["echo still-answering", "Enter"])
        await c.wait_for_text(s.id, "^still-answering$")
        assert not waiter.done()
        await c.send(s.id, ["exit 5", "Enter"])
        assert await asyncio.wait_for(waiter, 10) == 5
        with pytest.raises(TimeoutError):
            await c.wait((await c.new(["cat"])).id, timeout=0.2)
        assert len(await c.sessions()) == 2


async def test_async_attach_stream(cli: Cli) -> None:
    async with Client(cli.socket_path) as c:
        s = await c.new(["sh"], env=SH_ENV)
        await c.wait_for_text(s.id, "^P>")
        stream = await c.attach(s.id, cols=90, rows=20)
        async with stream:
            assert stream.session.id == s.id
            assert (await c.get(s.id)).clients == 1
            await stream.write(b"echo async-$((6*7))\r")
            seen = b""
            async for chunk in stream:
                seen += chunk
                if b"async-42" in seen:
                    break
            assert b"P> " in seen  # the repaint came first
            await stream.resize(70, 15)
            await c.wait_for_text(s.id, "async-42")  # requests beside an attachment
            assert (await c.get(s.id)).cols == 70
        assert stream.detach_reason == "detached" and stream.exit_code is None
        assert (await c.get(s.id)).clients == 0

        stream = await c.attach(s.id, repaint=False)
        await stream.write("exit 3\n")
        output = b"".join([chunk async for chunk in stream])
        assert b"exit 3" in output
        assert stream.exit_code == 3
        await stream.close()
        assert await c.wait(s.id, timeout=10) == 3


async def test_async_wait_for_text_timeout_and_exit(cli: Cli) -> None:
    async with Client(cli.socket_path) as c:
        s = await c.new(["sh"], env=SH_ENV)
        await c.wait_for_text(s.id, "^P>")
        with pytest.raises(TimeoutError, match="never-printed"):
            await c.wait_for_text(s.id, "never-printed", timeout=0.3)
        await c.send(s.id, ["exit 2", "Enter"])
        with pytest.raises(SessionExited):
            await c.wait_for_text(s.id, "not-there", timeout=30)
        assert await c.wait(s.id, timeout=10) == 2


async def test_async_errors(cli: Cli) -> None:
    async with Client(cli.socket_path, autostart=False) as c:
        with pytest.raises(ServerNotRunning):
            await c.new(["cat"])
        with pytest.raises(ServerNotRunning):
            await c.attach(1)
    async with Client(cli.socket_path) as c:
        await c.new(["cat"], name="dup")
        with pytest.raises(NameInUse):
            await c.new(["cat"], name="dup")
        with pytest.raises(SessionNotFound):
            await c.get(99)
        with pytest.raises(SessionNotFound):
            await c.attach("nope")
        with pytest.raises(SessionNotFound):
            await c.wait_for_text("nope", "x", timeout=1)
        with pytest.raises(ProgramNotFound):
            await c.new(["/nonexistent/program"])
        # The connection survives every error.
        assert [s.name for s in await c.sessions()] == ["dup"]


async def test_async_kill_server_and_reconnect(cli: Cli) -> None:
    async with Client(cli.socket_path) as c:
        first = await c.new(["cat"])
        pid = c.server_info["pid"]
        await c.kill_server()
        assert await c.sessions() == []
        second = await c.new(["cat"])  # a fresh server, started on demand
        assert c.server_info["pid"] != pid
        assert first.id == second.id == 1


async def test_async_many_concurrent_new(cli: Cli) -> None:
    async with Client(cli.socket_path) as c:
        sessions = await asyncio.gather(*(c.new(["cat"], name=f"s{i}") for i in range(20)))
        assert sorted(s.id for s in sessions) == list(range(1, 21))
        assert len(await c.sessions()) == 20


# -- across a server upgrade -----------------------------------------------------------------------


@pytest.mark.parametrize("keeper", ["0", "1"], ids=["exec", "keeper"])
def test_sync_wait_survives_a_server_upgrade(
    cli: Cli, keeper: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Failed before: the upgrade notice on the connection ended wait with "unexpected stream data".
    import threading

    monkeypatch.setenv("TMUXISH_KEEPER", keeper)
    cli.env["TMUXISH_KEEPER"] = keeper

    with SyncClient(cli.socket_path) as c:
        s = c.new(["sh", "-c", "read x; exit 7"])
        conn = c.connection()
        sent = threading.Event()
        send_request = conn.send_request

        def noting(command: str, args: dict[str, object]) -> int:
            try:
                return send_request(command, args)
            finally:
                sent.set()

        conn.send_request = noting  # type: ignore[method-assign]
        result: list[object] = []
        waiter = threading.Thread(target=lambda: result.append(_outcome(c.wait, s.id)))
        waiter.start()
        try:
            assert sent.wait(10)
            before = cli.server_pid()
            assert "1 sessions kept" in cli.run("server", "upgrade").stdout
            if keeper == "0":
                assert cli.server_pid() == before  # re-executed in place
            else:
                assert cli.server_pid() != before  # the keeper started the installed server
            cli.run("send", str(s.id), "go", "Enter")
        finally:
            waiter.join(20)
        assert result == [7]


async def test_async_wait_survives_a_server_upgrade(cli: Cli) -> None:
    async with Client(cli.socket_path) as c:
        s = await c.new(["sh", "-c", "read x; exit 7"])
        waiter = asyncio.ensure_future(c.wait(s.id, timeout=30))
        channel = c._channel
        assert channel is not None
        await asyncio.wait_for(_until(lambda: bool(channel._futures)), 10)
        upgrade = await asyncio.create_subprocess_exec(
            *cli.argv("server", "upgrade"), env=cli.env, stdout=asyncio.subprocess.PIPE
        )
        out, _ = await upgrade.communicate()
        assert b"1 sessions kept" in out
        await asyncio.wait_for(_until(lambda: channel.closed is not None), 10)
        assert not waiter.done()
        await c.send(s.id, ["go", "Enter"])  # on the new server's connection
        assert await asyncio.wait_for(waiter, 20) == 7


def _outcome(call: Any, *args: Any) -> object:
    try:
        return call(*args)
    except Exception as exc:
        return exc


async def _until(condition: Any) -> None:
    while not condition():
        await asyncio.sleep(0.01)
