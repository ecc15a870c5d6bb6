"""Nothing a user started is lost across a crash of the server or a `server upgrade`: a
recording goes on in the same file after `kill -9` of the server (the keeper starts a new one),
and input the server had queued for a slow program is written by the next server."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest
from helpers import Cli, pid_alive, server_info, stop_server, wait_for

from tmuxish import asciicast
from tmuxish.server.recording import CRASH_MARKER, Recording


def crash(cli: Cli) -> None:
    """kill -9 the server; wait for the one its keeper starts."""
    old = server_info(cli)["pid"]
    os.kill(old, signal.SIGKILL)
    wait_for(lambda: cli.server_pid() not in (None, old), 10, "a new server")


def read_cast(path: Path) -> tuple[dict[str, Any], list[tuple[float, str, str]]]:
    header, events = asciicast.read(path.read_text().splitlines())
    return header, list(events)


def has_text(path: Path, text: str) -> bool:
    try:
        return text in "".join(d for _, c, d in read_cast(path)[1] if c == "o")
    except (OSError, ValueError, StopIteration):
        return False  # not written yet, or a line still being written


@pytest.mark.parametrize("how", ["new", "record"])
@pytest.mark.parametrize("fmt", ["v2", "v3"])
def test_a_recording_goes_on_after_a_crash(kept: Cli, tmp_path: Path, fmt: str, how: str) -> None:
    """Same file, one header, every line an event, a marker at the crash, times that keep
    counting, and (v3) the exit code at the end. Failed before: the recording ended."""
    cli = kept
    cast = tmp_path / "crash.cast"
    script = "echo before-crash; read x; echo after-crash-$x; exit 4"
    if how == "new":
        opts = ["--record", str(cast), "--record-format", fmt]
        sid = int(cli.run("new", "-d", *opts, "--", "sh", "-c", script).stdout)
    else:
        sid = cli.new("sh", "-c", f"read y; {script}")
        cli.run("record", "--format", fmt, str(sid), str(cast))
        cli.run("send", str(sid), "start", "Enter")
    wait_for(lambda: has_text(cast, "before-crash"), what="output before the crash")
    crash(cli)
    assert cli.session(sid)["recording"] == str(cast)
    cli.run("send", str(sid), "go", "Enter")
    assert cli.run("wait", str(sid), check=False).returncode == 4
    wait_for(lambda: has_text(cast, "after-crash-go"), what="output after the crash")
    assert "recording" not in cli.session(sid)  # it ended with the session
    if fmt == "v3":
        wait_for(lambda: cast.read_text().rstrip().endswith('"x", "4"]'), what="exit event")
    lines = cast.read_text().splitlines()
    assert sum(line.startswith("{") for line in lines) == 1
    for line in lines:
        json.loads(line)
    header, events = read_cast(cast)
    assert header["version"] == int(fmt[1])
    times = [t for t, _, _ in events]
    assert times == sorted(times)
    t_before = next(t for t, c, d in events if "before-crash" in d)
    t_marker = next(t for t, c, d in events if c == "m" and d == CRASH_MARKER)
    t_after = next(t for t, c, d in events if "after-crash-go" in d)
    assert t_before <= t_marker <= t_after
    if fmt == "v3":
        assert events[-1][1:] == ("x", "4")


def test_a_recording_stopped_before_a_crash_stays_stopped(kept: Cli, tmp_path: Path) -> None:
    cli = kept
    cast = tmp_path / "stopped.cast"
    sid = cli.new("sh")
    cli.run("record", str(sid), str(cast))
    cli.run("record", "--stop", str(sid))
    crash(cli)
    assert "recording" not in cli.session(sid)
    size = cast.stat().st_size
    cli.run("send", str(sid), "echo more", "Enter")
    wait_for(lambda: "more" in cli.run("capture", str(sid)).stdout, what="output after the crash")
    assert cast.stat().st_size == size


@pytest.mark.parametrize("fmt", ["v2", "v3"])
def test_a_line_cut_short_by_a_crash_is_cut_off(tmp_path: Path, fmt: str) -> None:
    """A crash in the middle of a write leaves half an event: the next server cuts it off,
    and v3 intervals go on from the last whole event."""
    path = tmp_path / "cut.cast"
    clock = [100.0]
    first = Recording(str(path), 80, 24, fmt=fmt, clock=lambda: clock[0])
    live = first.live_state()
    assert live is not None
    clock[0] = 101.5
    first.output(b"whole\n")
    first.close()
    assert first.join(5)
    with open(path, "a") as f:
        f.write('[0.25, "o", "half an ev')
    clock[0] = 110.0
    second = Recording(str(path), 80, 24, fmt=fmt, resume=live, clock=lambda: clock[0])
    clock[0] = 111.0
    second.output(b"after\n")
    second.close(3)
    assert second.join(5)
    lines = path.read_text().splitlines()
    assert sum(line.startswith("{") for line in lines) == 1
    assert not any("half an ev" in line for line in lines)
    _, events = read_cast(path)
    assert [(round(t, 3), c, d) for t, c, d in events] == [
        (1.5, "o", "whole\n"),
        (10.0, "m", CRASH_MARKER),
        (11.0, "o", "after\n"),
        *([(11.0, "x", "3")] if fmt == "v3" else []),
    ]


def test_a_file_a_crash_left_empty_gets_a_header(tmp_path: Path) -> None:
    path = tmp_path / "empty.cast"
    path.write_text('{"version": 2, "wid')
    live = {"path": str(path), "format": "v2", "input": False, "start": 0.0, "cols": 80, "rows": 24}
    rec = Recording(str(path), 80, 24, resume=live, clock=lambda: 5.0)
    rec.output(b"x")
    rec.close()
    assert rec.join(5)
    header, events = read_cast(path)
    assert header["version"] == 2 and header["width"] == 80
    assert [c for _, c, _ in events] == ["m", "o"]


# Reads nothing until the gate file exists (raw mode: no line limit, no echo), then reads
# exactly N bytes and writes their length and digest.
SLOW_READER = (
    "import hashlib, os, sys, time, tty\n"
    "tty.setraw(0)\n"
    "gate, out, n = sys.argv[1], sys.argv[2], int(sys.argv[3])\n"
    "print('ready', flush=True)\n"
    "while not os.path.exists(gate): time.sleep(0.02)\n"
    "data = b''\n"
    "while len(data) < n:\n"
    "    chunk = os.read(0, n - len(data))\n"
    "    if not chunk: break\n"
    "    data += chunk\n"
    "digest = hashlib.sha256(data).hexdigest()\n"
    "with open(out + '.tmp', 'w') as f: f.write(f'{len(data)} {digest}')\n"
    "os.rename(out + '.tmp', out)\n"
)


@pytest.mark.parametrize("how", ["upgrade", "exec-upgrade"])
def test_queued_input_is_written_after_an_upgrade(cli: Cli, tmp_path: Path, how: str) -> None:
    """A paste the program had not read yet (queued in the server, as the PTY's own buffer
    is full) reaches it whole after `server upgrade`. Failed before: only the ~4 KiB the PTY
    had taken arrived."""
    import hashlib

    from tmuxish.client.api import SyncClient

    if how == "exec-upgrade":
        cli.env["TMUXISH_KEEPER"] = "0"
    else:
        cli.env.pop("TMUXISH_KEEPER", None)
    gate, out = tmp_path / "gate", tmp_path / "out"
    size = 300_000
    text = bytes(ord("a") + i % 26 for i in range(size))
    sid = cli.new("python3", "-c", SLOW_READER, str(gate), str(out), str(size))
    keeper = server_info(cli).get("keeper")
    try:
        with SyncClient(cli.socket_path) as client:
            client.wait_for_text(sid, "ready")
            assert client.send(sid, text) == size
        assert "1 session" in cli.run("server", "upgrade").stdout
        gate.touch()
        wait_for(out.exists, 20, "the program to read it all")
        assert out.read_text() == f"{size} {hashlib.sha256(text).hexdigest()}"
    finally:
        if keeper is not None:
            stop_server(cli)
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(keeper), signal.SIGTERM)
            wait_for(lambda: not pid_alive(int(keeper)), 15, "the keeper to exit")


@pytest.mark.parametrize("how", ["crash", "upgrade"])
def test_the_events_stream_survives_and_marks_the_gap(kept: Cli, how: str) -> None:
    """`tmuxish events` follows the server through a crash its keeper recovers from and an
    upgrade, and says where it reconnected (events in the gap may be missing). Failed before
    for the crash: the stream ended at the kill -9, silently."""
    cli = kept
    events = subprocess.Popen(
        cli.argv("events", "--json"),
        env=cli.env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    import queue
    import threading

    got: queue.Queue[dict[str, object]] = queue.Queue()

    def read() -> None:
        assert events.stdout is not None
        for line in events.stdout:
            got.put(json.loads(line))

    threading.Thread(target=read, daemon=True).start()
    lines: list[dict[str, object]] = []
    try:
        # The stream is subscribed once an event comes through (no sleep: probe until one does).
        for n in range(100):
            cli.new("sleep", "1000", name=f"probe{n}")
            try:
                got.get(timeout=0.2)
                break
            except queue.Empty:
                continue
        while not got.empty():
            got.get()
        cli.new("sleep", "1000", name="before")
        lines.append(got.get(timeout=10))
        if how == "crash":
            crash(cli)
        else:
            cli.run("server", "upgrade")
        lines.append(got.get(timeout=20))
        cli.new("sleep", "1000", name="after")
        lines.append(got.get(timeout=10))
    finally:
        events.kill()
        events.communicate(timeout=10)
    assert [(e["type"], e.get("name")) for e in lines] == [
        ("session-created", "before"),
        ("stream-reconnected", None),
        ("session-created", "after"),
    ]
    assert lines[1]["cause"] == how
