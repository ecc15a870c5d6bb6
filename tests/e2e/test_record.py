"""Recordings through the real CLI: `new --record FILE` and `tmuxish record TARGET FILE`, read back
by our parser and played by Debian's `asciinema cat` (asciinema 2.2 reads asciicast v2)."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import pexpect
import pytest
from helpers import Cli, wait_for

from tmuxish import asciicast
from tmuxish.client.api import SyncClient
from tmuxish.errors import TmuxishError

needs_asciinema = pytest.mark.skipif(
    shutil.which("asciinema") is None, reason="asciinema is not installed (apt install asciinema)"
)


def read_cast(path: Path) -> tuple[dict[str, Any], list[tuple[float, str, str]]]:
    header, events = asciicast.read(path.read_text().splitlines())
    return header, list(events)


def output_of(path: Path) -> str:
    return "".join(data for _, code, data in read_cast(path)[1] if code == "o")


def has_text(path: Path, text: str) -> bool:
    try:
        return text in output_of(path)
    except (OSError, ValueError, StopIteration):
        return False  # not written yet, or a line still being written


def asciinema_cat(path: Path) -> bytes:
    """What `asciinema cat` prints (it insists on a terminal, so it gets a PTY)."""
    child = pexpect.spawn("asciinema", ["cat", str(path)], timeout=20)
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0, child.before
    return bytes(child.before)


@needs_asciinema
def test_new_record_is_played_by_asciinema(cli: Cli, tmp_path: Path) -> None:
    cast = tmp_path / "new.cast"
    # The é is split across two writes (and two reads): it must not come out mangled.
    script = "printf 'rec-h\\303'; sleep 0.2; printf '\\251llo\\n'; exit 3"
    out = cli.run(
        "new", "-d", "-x", "60", "-y", "10", "--record", str(cast), "--", "sh", "-c", script
    )
    sid = out.stdout.strip()
    assert cli.run("wait", sid, check=False).returncode == 3
    wait_for(lambda: has_text(cast, "rec-héllo\r\n"), what="the recording to be written")
    header, events = read_cast(cast)
    assert header["version"] == 2
    assert (header["width"], header["height"]) == (60, 10)
    assert header["env"]["TERM"] == "xterm-256color"
    assert "sh -c" in header["command"]
    assert {code for _, code, _ in events} == {"o"}
    assert [t for t, _, _ in events] == sorted(t for t, _, _ in events)
    assert "\ufffd" not in output_of(cast)
    played = asciinema_cat(cast)
    assert b"rec-h\xc3\xa9llo\r\n" in played
    assert played == output_of(cast).encode()


@needs_asciinema
def test_record_a_running_session_from_its_screen(cli: Cli, tmp_path: Path) -> None:
    """The first event repaints what is on the screen; resizes and (asked for) input follow;
    `record --stop` returns once the file is complete."""
    cast = tmp_path / "run.cast"
    sid = cli.new("sh", "-c", "echo before-recording; read x; echo got-$x; sleep 100")
    with SyncClient(cli.socket_path) as client:
        client.wait_for_text(sid, "before-recording")
        cli.run("record", "--input", str(sid), str(cast))
        assert cli.session(sid)["recording"] == str(cast)
        client.resize(sid, 70, 12)
        wait_for(lambda: has_text(cast, "before-recording"), what="the repaint")
        client.send(sid, ["hi", "Enter"])
        client.wait_for_text(sid, "got-hi")
    wait_for(lambda: has_text(cast, "got-hi"), what="the output after the input")
    cli.run("record", "--stop", str(sid))
    assert "recording" not in cli.session(sid)
    header, events = read_cast(cast)
    assert (header["width"], header["height"]) == (80, 24)
    first_time, first_code, first_data = events[0]
    assert (first_time, first_code) == (0.0, "o") and "before-recording" in first_data
    codes = [code for _, code, _ in events]
    assert "r" in codes and events[codes.index("r")][2] == "70x12"
    typed = "".join(data for _, code, data in events if code == "i")
    assert typed == "hi\r"
    assert codes.index("i") < max(i for i, (_, c, d) in enumerate(events) if "got-hi" in d)
    played = asciinema_cat(cast)
    assert b"before-recording" in played and b"got-hi" in played
    assert played == output_of(cast).encode()  # input events are not played as output
    # Stopped means stopped: later output is not in the file.
    size = cast.stat().st_size
    cli.run("send", str(sid), "more", "Enter")
    with SyncClient(cli.socket_path) as client:
        client.wait_for_text(sid, "more")
    assert cast.stat().st_size == size


def test_input_is_not_recorded_unless_asked(cli: Cli, tmp_path: Path) -> None:
    cast = tmp_path / "noinput.cast"
    sid = cli.new("sh", "-c", "stty -echo; echo ready; read x; echo got-$x; sleep 100")
    with SyncClient(cli.socket_path) as client:
        client.wait_for_text(sid, "ready")
        cli.run("record", str(sid), str(cast))
        client.send(sid, ["secret", "Enter"])
        client.wait_for_text(sid, "got-secret")
    cli.run("record", "--stop", str(sid))
    _, events = read_cast(cast)
    assert "i" not in {code for _, code, _ in events}
    assert "got-secret" in output_of(cast)
    assert cast.read_text().count("secret") == 1  # echo is off: only the program's line


def test_v3_recording_ends_with_the_exit_code(cli: Cli, tmp_path: Path) -> None:
    cast = tmp_path / "v3.cast"
    cli.run(
        "new", "-d", "--record", str(cast), "--record-format", "v3",
        "--", "sh", "-c", "echo one; sleep 0.3; echo two; exit 5",
    )  # fmt: skip
    assert cli.run("wait", "1", check=False).returncode == 5

    def ended() -> bool:
        lines = cast.read_text().splitlines() if cast.exists() else []
        return bool(lines) and lines[-1].startswith("[") and json.loads(lines[-1])[1] == "x"

    wait_for(ended, what="the exit event")
    header, events = read_cast(cast)
    assert header["version"] == 3 and header["term"]["cols"] == 80
    assert events[-1][1:] == ("x", "5")
    assert "one\r\n" in output_of(cast) and "two\r\n" in output_of(cast)
    intervals = [json.loads(line)[0] for line in cast.read_text().splitlines()[1:]]
    assert min(intervals) >= 0
    t_one = next(t for t, c, d in events if c == "o" and "one" in d)
    t_two = next(t for t, c, d in events if c == "o" and "two" in d)
    assert t_two - t_one >= 0.25  # times are relative on disk, absolute once added up


def test_record_errors_are_one_line(cli: Cli, tmp_path: Path) -> None:
    sid = str(cli.new("sleep", "100"))
    cast = tmp_path / "a.cast"

    def error(*args: str) -> str:
        proc = cli.run(*args, check=False)
        assert proc.returncode != 0 and proc.stderr.count("\n") == 1, proc.stderr
        return proc.stderr

    assert "not being recorded" in error("record", "--stop", sid)
    assert "needs a TARGET and a FILE" in error("record", sid)
    assert "session-that-is-not" in error("record", "session-that-is-not", str(cast))
    cli.run("record", sid, str(cast))
    assert "already recording to" in error("record", sid, str(tmp_path / "b.cast"))
    cli.run("record", "--stop", sid)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    start = time.monotonic()
    assert "cannot record to" in error("record", sid, str(fifo))  # no reader: never blocks
    assert time.monotonic() - start < 10
    assert "not a regular file" in error("record", sid, "/dev/null")
    assert "cannot record to" in error("record", sid, str(tmp_path / "no" / "such.cast"))
    # A `new` whose recording cannot be opened leaves no session behind.
    before = len(cli.sessions())
    assert "cannot record to" in error("new", "-d", "--record", str(tmp_path), "--", "true")
    assert len(cli.sessions()) == before
    assert "--record FILE" in error("new", "-d", "--record-input", "--", "true")


def test_a_relative_path_is_the_clients(cli: Cli, tmp_path: Path) -> None:
    sid = str(cli.new("sh", "-c", "echo here; sleep 100"))
    old = os.getcwd()
    os.chdir(tmp_path)  # the client resolves FILE against its own directory, not the server's
    try:
        cli.run("record", sid, "rel.cast")
    finally:
        os.chdir(old)
    cli.run("record", "--stop", sid)
    assert "here" in output_of(tmp_path / "rel.cast")


def test_malformed_record_requests_get_errors(cli: Cli, tmp_path: Path) -> None:
    sid = cli.new("sleep", "100")
    done = cli.new("true")
    cli.run("wait", str(done))
    good = str(tmp_path / "ok.cast")
    with SyncClient(cli.socket_path) as client:
        for command, args in (
            ("record", {"target": sid}),
            ("record", {"target": sid, "path": 5}),
            ("record", {"target": sid, "path": "relative.cast"}),
            ("record", {"target": sid, "path": good, "format": "v9"}),
            ("record", {"target": sid, "path": good, "format": ["v2"]}),
            ("record", {"target": 4242, "path": good}),
            ("record", {"target": done, "path": good}),
            ("record-stop", {"target": sid}),
            ("new", {"command": ["true"], "record": "relative.cast"}),
            ("new", {"command": ["true"], "record": good, "record_format": 3}),
        ):
            with pytest.raises(TmuxishError) as info:
                client.request(command, **args)
            assert info.value.code in ("bad-request", "session-not-found", "error"), info.value
            assert "\n" not in str(info.value)
        assert not os.path.exists(good)
        # The connection and the server are fine, and a good request works after all that.
        client.request("record", target=sid, path=good, term=7)
        info2 = client.request("record-stop", target=sid)
        assert info2["recording"]["path"] == good and info2["recording"]["error"] is None
        assert [s.id for s in client.sessions()] == [sid, done]


@pytest.mark.parametrize("fmt", ["v2", "v3"])
def test_a_recording_goes_on_across_a_server_upgrade(cli: Cli, tmp_path: Path, fmt: str) -> None:
    """One file, one header, times that keep counting, and (v3) the exit code at the end."""
    cast = tmp_path / "up.cast"
    script = "echo before-upgrade; read x; echo after-upgrade-$x; exit 4"
    cli.run("new", "-d", "--record", str(cast), "--record-format", fmt, "--", "sh", "-c", script)
    with SyncClient(cli.socket_path) as client:
        client.wait_for_text(1, "before-upgrade")
    wait_for(lambda: has_text(cast, "before-upgrade"), what="output before the upgrade")
    cli.run("server", "upgrade")
    assert cli.session(1)["recording"] == str(cast)
    cli.run("send", "1", "go", "Enter")
    assert cli.run("wait", "1", check=False).returncode == 4
    wait_for(lambda: has_text(cast, "after-upgrade-go"), what="output after the upgrade")
    assert "recording" not in cli.session(1)  # it ended with the session
    if fmt == "v3":
        wait_for(lambda: cast.read_text().rstrip().endswith('"x", "4"]'), what="exit event")
    lines = cast.read_text().splitlines()
    assert sum(line.startswith("{") for line in lines) == 1
    header, events = read_cast(cast)
    assert header["version"] == int(fmt[1])
    times = [t for t, _, _ in events]
    assert times == sorted(times)
    t_before = next(t for t, c, d in events if "before-upgrade" in d)
    t_after = next(t for t, c, d in events if "after-upgrade-go" in d)
    assert t_after > t_before
    if fmt == "v3":
        assert events[-1][1:] == ("x", "4")
