"""Input flow control in the server: a program that does not read holds up its input sources
instead of losing their bytes (issue 12), and a connection is a peer or an attachment."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest
from helpers import DEADLINE, proto_connect

from tmuxish import protocol
from tmuxish.server.attachment import ClientAttachment
from tmuxish.server.daemon import Server
from tmuxish.server.session import INPUT_HIGH

#: Raw mode; read nothing until the file argv[1] exists; then count input until 1 s of quiet.
LATE_READER = """
import os, select, sys, time, tty
tty.setraw(0)
sys.stdout.write("READY\\r\\n"); sys.stdout.flush()
while not os.path.exists(sys.argv[1]):
    time.sleep(0.01)
n = 0
while select.select([0], [], [], 1.0)[0]:
    n += len(os.read(0, 65536))
sys.stdout.write(f"COUNT {n}\\r\\n"); sys.stdout.flush()
time.sleep(1000)
"""


async def test_send_and_clients_wait_for_a_program_that_does_not_read(
    server: Server, tmp_path: Path
) -> None:
    go = tmp_path / "go"
    c = await proto_connect(server.socket_path)
    await c.request("new", command=[sys.executable, "-c", LATE_READER, str(go)])
    watcher = await proto_connect(server.socket_path)
    await watcher.request("attach", target=1, cols=80, rows=24, readonly=True)
    await watcher.output_until(b"READY")
    data = b"x" * (2 * INPUT_HIGH)
    sender = await proto_connect(server.socket_path)
    reply = asyncio.ensure_future(sender.request("send", target=1, data=data))
    # The reply waits while the program reads nothing (the deadline is the point here).
    done, _ = await asyncio.wait([reply], timeout=0.5)
    assert not done
    # A client that attaches meanwhile is held too: its input would have nowhere to go.
    late = await proto_connect(server.socket_path)
    await late.request("attach", target=1, cols=80, rows=24)
    [held] = [a for a in server.registry.get(1).clients if not a.readonly]
    assert isinstance(held, ClientAttachment) and held._input_holds == 1
    # A read-only client's input goes nowhere anyway: it is not held (its detach keys work).
    [free] = [a for a in server.registry.get(1).clients if a.readonly]
    assert isinstance(free, ClientAttachment) and free._input_holds == 0
    go.touch()
    assert await asyncio.wait_for(reply, DEADLINE) == len(data)
    assert held._input_holds == 0
    await watcher.output_until(f"COUNT {len(data)}".encode())
    for client in (c, watcher, sender, late):
        client.close()


#: Like LATE_READER, but it asks for the cursor position before it reads: the answer (from the
#: server's screen model, no writable client being attached) must arrive after the input held up.
LATE_ASKER = (
    LATE_READER.replace(
        "n = 0\n",
        "sys.stdout.write('\\x1b[6n'); sys.stdout.flush()\nn = 0\ntail = b''\n",
    )
    .replace(
        "    n += len(os.read(0, 65536))\n",
        "    data = os.read(0, 65536)\n    n += len(data)\n    tail = (tail + data)[-32:]\n",
    )
    .replace('f"COUNT {n}', 'f"TAIL {tail!r} COUNT {n}')
)


async def test_an_emulator_answer_is_never_lost_behind_held_input(
    server: Server, tmp_path: Path
) -> None:
    go = tmp_path / "go"
    c = await proto_connect(server.socket_path)
    await c.request("new", command=[sys.executable, "-c", LATE_ASKER, str(go)], cols=80, rows=24)
    watcher = await proto_connect(server.socket_path)
    await watcher.request("attach", target=1, cols=80, rows=24, readonly=True)
    await watcher.output_until(b"READY")
    data = b"y" * (6 * INPUT_HIGH)
    reply = asyncio.ensure_future(c.request("send", target=1, data=data))
    done, _ = await asyncio.wait([reply], timeout=0.5)
    assert not done
    go.touch()
    assert await asyncio.wait_for(reply, DEADLINE) == len(data)
    answer = b"\x1b[2;1R"  # the cursor is on row 2 after READY\r\n
    seen = await watcher.output_until(b"COUNT")
    while not seen.endswith(b"\r\n"):
        seen += await watcher.output_until(b"\n")
    assert f"TAIL {(data + answer)[-32:]!r} COUNT {len(data) + len(answer)}".encode() in seen
    c.close()
    watcher.close()


async def test_an_attached_connection_takes_no_requests_until_it_detaches(
    server: Server,
) -> None:
    c = await proto_connect(server.socket_path)
    await c.request("new", command=["sleep", "1000"])
    await c.request("attach", target=1, cols=80, rows=24)
    with pytest.raises(RuntimeError, match="attached to session 1"):
        await c.request("ls")
    c.writer.write(protocol.encode([protocol.DETACH]))
    while True:
        message = await c.recv()
        assert message is not None
        if message[0] == protocol.DETACHED:
            break
    [info] = await c.request("ls")
    assert info["id"] == 1 and info["clients"] == 0
    c.close()
