"""The recording writer: the session's side never waits for the disk, and what it writes parses."""

from __future__ import annotations

import errno
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import wait_for

from tmuxish import asciicast
from tmuxish.server import recording
from tmuxish.server.recording import Recording, open_regular


def events(path: Path) -> tuple[dict[str, object], list[tuple[float, str, str]]]:
    header, evs = asciicast.read(path.read_text().splitlines())
    return header, list(evs)


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def cast_path(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "x.cast"


def test_events_in_order_with_times_from_the_session_side(cast_path: Path) -> None:
    clock = FakeClock()
    rec = Recording(str(cast_path), 80, 24, clock=clock, first=b"SCREEN", term="xterm")
    clock.now += 1.5
    rec.output(b"hello")
    clock.now += 0.5
    rec.resize(100, 30)
    rec.input(b"typed")  # not recorded: input was not asked for
    clock.now += 1.0
    rec.output(b"\xe2\x82")  # a character split across two reads
    rec.output(b"\xac!")
    rec.close(3)
    assert rec.join(5)
    header, evs = events(cast_path)
    assert header["version"] == 2 and header["width"] == 80 and header["height"] == 24
    assert header["env"] == {"TERM": "xterm"}
    assert evs == [
        (0.0, "o", "SCREEN"),
        (1.5, "o", "hello"),
        (2.0, "r", "100x30"),
        (3.0, "o", "€!"),
    ]
    assert rec.dropped_total == 0 and rec.failed is None
    assert rec.written == cast_path.stat().st_size
    assert cast_path.stat().st_mode & 0o777 == 0o600


def test_v3_input_when_asked_and_the_exit_code(cast_path: Path) -> None:
    clock = FakeClock()
    rec = Recording(str(cast_path), 80, 24, fmt="v3", record_input=True, clock=clock)
    clock.now += 1
    rec.input(b"ls\r")
    clock.now += 1
    rec.output(b"file\r\n")
    clock.now += 1
    rec.close(7)
    rec.output(b"after the end")  # ignored
    assert rec.join(5)
    header, evs = events(cast_path)
    assert header["version"] == 3 and header["term"] == {"cols": 80, "rows": 24}
    assert evs == [(1.0, "i", "ls\r"), (2.0, "o", "file\r\n"), (3.0, "x", "7")]
    # v3 times on disk are intervals.
    assert cast_path.read_text().splitlines()[-1] == '[1.0, "x", "7"]'


def test_a_stalled_disk_never_stalls_the_session_and_drops_are_marked(cast_path: Path) -> None:
    """The writer thread is stuck in write(); the session goes on queueing up to the bound, then
    drops, and the file says where once the disk is back."""
    stuck = threading.Event()
    release = threading.Event()

    def slow_write(fd: int, data: memoryview) -> int:
        stuck.set()
        release.wait(30)
        return os.write(fd, data)

    rec = Recording(str(cast_path), 80, 24, max_pending=64 * 1024, write=slow_write)
    assert stuck.wait(5)
    chunk = b"x" * 4096
    worst = 0.0
    for _ in range(1000):  # 4 MiB against a 64 KiB bound
        start = time.perf_counter()
        rec.output(chunk)
        worst = max(worst, time.perf_counter() - start)
    assert worst < 0.05, f"output() took {worst * 1000:.1f} ms with the disk stuck"
    queued = 64 * 1024 // len(chunk) * len(chunk)
    assert rec.dropped_total == 1000 * len(chunk) - queued
    release.set()
    wait_for(lambda: rec.backlog == 0, what="the writer to catch up")
    rec.output(b"back")
    rec.close()
    assert rec.join(10)
    _, evs = events(cast_path)
    outputs = "".join(d for _, c, d in evs if c == "o")
    assert outputs == "x" * queued + "back"
    markers = [d for _, c, d in evs if c == "m"]
    assert markers == [f"tmuxish: {rec.dropped_total} bytes of output dropped here"]
    assert rec.backlog == 0  # the budget is whole again: nothing counted twice or never
    assert [c for _, c, _ in evs][-2:] == ["m", "o"]


def test_a_full_disk_ends_the_recording_not_the_session(cast_path: Path) -> None:
    calls = 0

    def full(fd: int, data: memoryview) -> int:
        nonlocal calls
        calls += 1
        raise OSError(errno.ENOSPC, "No space left on device")

    rec = Recording(str(cast_path), 80, 24, write=full)
    assert rec.join(5)  # the header failed: the writer is done
    assert rec.failed == "No space left on device"
    for _ in range(100):
        rec.output(b"more")  # no error, nothing queued
        rec.resize(10, 10)
    rec.close(0)
    assert calls == 1


def test_finish_all_flushes_recordings_never_closed(cast_path: Path) -> None:
    rec = Recording(str(cast_path), 80, 24)
    rec.output(b"last words")
    recording.finish_all(5)
    assert rec.closed and rec.join(0)
    _, evs = events(cast_path)
    assert evs[-1][1:] == ("o", "last words")


def test_an_existing_file_is_replaced(cast_path: Path) -> None:
    cast_path.write_text("old content that is longer than the new header line\n" * 100)
    rec = Recording(str(cast_path), 80, 24)
    rec.close()
    assert rec.join(5)
    header, evs = events(cast_path)
    assert header["version"] == 2 and evs == []


def test_a_fifo_without_reader_fails_at_once_instead_of_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    start = time.monotonic()
    with pytest.raises(OSError) as info:
        open_regular(str(fifo))
    assert info.value.errno == errno.ENXIO
    assert time.monotonic() - start < 1


def test_a_fifo_with_a_reader_and_devices_are_refused(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        with pytest.raises(OSError, match="not a regular file"):
            open_regular(str(fifo))
    finally:
        os.close(reader)
    with pytest.raises(OSError, match="not a regular file"):
        open_regular("/dev/null")


def test_a_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        Recording(str(tmp_path), 80, 24)


def test_a_backlog_is_written_in_bounded_batches(cast_path: Path) -> None:
    """Encoding holds the GIL: a big backlog goes out a batch at a time, not in one piece."""
    release = threading.Event()
    sizes: list[int] = []

    def gated_write(fd: int, data: memoryview) -> int:
        release.wait(30)
        sizes.append(len(data))
        return os.write(fd, data)

    rec = Recording(str(cast_path), 80, 24, write=gated_write)
    chunk = b"y" * 65536
    for _ in range(64):  # 4 MiB, all queued behind the header
        rec.output(chunk)
    release.set()
    rec.close()
    assert rec.join(10)
    assert rec.dropped_total == 0
    assert len(sizes) >= 4 * 1024 * 1024 // recording.BATCH
    assert max(sizes) < recording.BATCH + len(chunk) + 1024
    assert output_len(cast_path) == 64 * len(chunk)


def output_len(path: Path) -> int:
    return sum(len(d) for _, c, d in events(path)[1] if c == "o")


def test_state_and_resume_continue_one_file(cast_path: Path) -> None:
    """What a server upgrade does: the old writer finishes, the new one appends, no new header,
    and v3 intervals go on from the last event the old one wrote."""
    clock = FakeClock()
    rec = Recording(str(cast_path), 80, 24, fmt="v3", clock=clock)
    clock.now += 1
    rec.output(b"one")
    clock.now += 1
    rec.resize(90, 30)
    assert rec.state() is None  # the writer still runs: nothing to carry yet
    recording.finish_all(5)
    state = rec.state()
    assert state is not None and state["cols"] == 90 and state["last"] == 2.0
    clock.now += 3
    again = Recording(str(cast_path), 1, 1, fmt="v3", clock=clock, resume=state)
    again.output(b"two")
    again.close(0)
    assert again.join(5)
    assert cast_path.read_text().count('"version"') == 1
    _, evs = events(cast_path)
    assert evs == [(1.0, "o", "one"), (2.0, "r", "90x30"), (5.0, "o", "two"), (5.0, "x", "0")]


def test_a_failed_recording_is_not_carried_over(cast_path: Path) -> None:
    def full(fd: int, data: memoryview) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    rec = Recording(str(cast_path), 80, 24, write=full)
    assert rec.join(5)
    assert rec.state() is None
