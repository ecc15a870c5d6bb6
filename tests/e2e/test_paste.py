"""Input is never dropped: a 10 MiB paste into a program that starts reading late arrives intact.

When the program does not read, the server stops reading the user's terminal (direct attach),
the client's connection (relay) or answering `send`, instead of discarding input (issue 12).
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import sys
import threading
from pathlib import Path

import pytest
from helpers import Cli, detach, wait_for

from tmuxish.client.api import SyncClient

TOTAL = 10 * 1024 * 1024

#: Raw mode, then one second of not reading, then read TOTAL bytes (or until 5 s of quiet) and
#: report how many arrived and their sha256, on the terminal and in the file argv[1].
READER = f"""
import hashlib, os, select, sys, time, tty
tty.setraw(0)
sys.stdout.write("READY\\r\\n"); sys.stdout.flush()
time.sleep(1)
h, n = hashlib.sha256(), 0
while n < {TOTAL}:
    if not select.select([0], [], [], 5.0)[0]:
        break
    data = os.read(0, 65536)
    if not data:
        break
    h.update(data)
    n += len(data)
result = f"GOT {{n}} {{h.hexdigest()}}"
with open(sys.argv[1], "w") as f:
    f.write(result)
sys.stdout.write(result + "\\r\\n"); sys.stdout.flush()
time.sleep(1000)
"""


def paste_data() -> bytes:
    """TOTAL bytes of base64 text: no detach key, no escape sequence, nothing a tty translates."""
    return base64.b64encode(os.urandom(TOTAL * 3 // 4))[:TOTAL]


def result(path: Path) -> tuple[int, str]:
    text = wait_for(lambda: path.exists() and path.read_text(), 60, "the reader's result")
    match = re.fullmatch(r"GOT (\d+) ([0-9a-f]{64})", text)
    assert match, text
    return int(match.group(1)), match.group(2)


@pytest.mark.parametrize("mode", ["direct", "relay"])
def test_big_paste_into_a_late_reader_arrives_whole(cli: Cli, tmp_path: Path, mode: str) -> None:
    cli.env["TMUXISH_ATTACH_MODE"] = mode
    out = tmp_path / "result"
    sid = cli.new(sys.executable, "-c", READER, str(out))
    child = cli.spawn("attach", str(sid))
    child.expect_exact("READY")
    data = paste_data()

    def paste() -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(child.child_fd, view) :]

    writer = threading.Thread(target=paste, daemon=True)
    writer.start()
    try:
        count, digest = result(out)
        assert count == TOTAL
        assert digest == hashlib.sha256(data).hexdigest()
    finally:
        writer.join(30)
    assert not writer.is_alive()
    # The detach keys work again once the program reads its input.
    detach(child)


def test_big_send_into_a_late_reader_arrives_whole(cli: Cli, tmp_path: Path) -> None:
    out = tmp_path / "result"
    sid = cli.new(sys.executable, "-c", READER, str(out))
    wait_for(lambda: "READY" in cli.run("capture", str(sid)).stdout, what="raw mode")
    data = paste_data()
    chunk = 1024 * 1024
    with SyncClient(cli.socket_path, autostart=False, timeout=60) as client:
        for start in range(0, TOTAL, chunk):
            assert client.send(sid, data[start : start + chunk]) == chunk
    count, digest = result(out)
    assert count == TOTAL
    assert digest == hashlib.sha256(data).hexdigest()
