"""Garbage on the socket: the offending connection gets an error or is closed, nobody else notices.

One real server per test; a session (`cat` in raw mode, so no byte can signal it) stays attached
by a well-behaved client throughout, and must still echo afterwards. Server RSS is sampled the
whole time.
"""

from __future__ import annotations

import array
import contextlib
import os
import random
import socket
import time

import msgpack
import pytest
from hardkit import CAT, MIB, Kit, RssSampler, echo_check, fd_count, rss_mib, settle_rss
from helpers import pid_alive, wait_for

from tmuxish import protocol

HELLO = protocol.hello({"pid": 1})


def exchange(
    path: str, payload: bytes, *, half_close: bool = True, timeout: float = 10.0
) -> tuple[list[protocol.Message], bool]:
    """Send ``payload`` on a fresh connection; return what the server said and whether it closed.

    Everything the server sends must decode: it never answers garbage with garbage.
    """
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(path)
    try:
        # The server may give up on us before we finish: that is an answer too.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            s.sendall(payload)
        if half_close:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_WR)
        decoder = protocol.Decoder()
        messages: list[protocol.Message] = []
        while True:
            try:
                data = s.recv(65536)
            except ConnectionResetError:
                return messages, True
            except TimeoutError:
                return messages, False
            if not data:
                return messages, True
            messages.extend(decoder.feed(data))
    finally:
        s.close()


def _cases() -> list[tuple[str, bytes, str | None]]:
    rnd = random.Random(1234)
    big = b"x" * (12 * MIB)
    return [
        # (name, bytes, an error text the reply must contain, or None for "error or close")
        ("random-bytes", rnd.randbytes(65536), None),
        ("random-after-hello", HELLO + rnd.randbytes(65536), None),
        ("http", b"GET / HTTP/1.1\r\nHost: localhost\r\nUser-Agent: curl\r\n\r\n", None),
        ("http-post", b"POST /x HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello", None),
        ("ssh-banner", b"SSH-2.0-OpenSSH_9.2\r\n", None),
        ("tls-hello", bytes.fromhex("16030100a5010000a10303") + rnd.randbytes(160), None),
        ("empty", b"", None),
        ("truncated-hello", HELLO[:3], None),
        ("truncated-request", HELLO + protocol.request(1, "ls", {})[:-2], None),
        ("no-hello", protocol.request(1, "ls", {}), "HELLO"),
        ("hello-twice", HELLO + HELLO, None),
        # Served for the frozen requests only (protocol.VERSIONLESS_COMMANDS): ls is refused.
        (
            "wrong-version",
            protocol.encode([protocol.HELLO, 999, {}]) + protocol.request(1, "ls", {}),
            "version",
        ),
        ("hello-bad-shape", protocol.encode([protocol.HELLO, "1", []]), None),
        ("not-an-array", HELLO + msgpack.packb({"a": 1}), "array"),
        ("nil", HELLO + b"\xc0", None),
        ("empty-array", HELLO + b"\x90", None),
        ("float-type", HELLO + msgpack.packb([1.5, 2]), None),
        ("ext-type", HELLO + b"\xd4\x01\x00", None),
        ("bad-utf8-str", HELLO + b"\x93\x01\x01\xa2\xff\xfe", None),
        (
            "map-int-keys",
            HELLO + protocol.encode([protocol.REQUEST, 1, "ls", {}])[:-1] + b"\x81\x01\x02",
            None,
        ),
        ("gigabyte-bin", HELLO + b"\xc6\xff\xff\xff\xf0" + big, "too large"),
        ("gigabyte-str", HELLO + b"\xdb\xff\xff\xff\xf0" + big, "too large"),
        ("gigabyte-input", HELLO + b"\x92\x0a\xc6\xff\xff\xff\xf0" + big, "too large"),
        ("gigabyte-array", HELLO + b"\xdd\xff\xff\xff\xff", None),
        ("gigabyte-map", HELLO + b"\xdf\xff\xff\xff\xff", None),
        ("nested-arrays", HELLO + b"\x91" * 200_000, None),
        ("nested-maps", HELLO + b"\x81\xa1a" * 100_000, None),
        ("nested-in-request", HELLO + b"\x94\x01\x01\xa2ls\x81\xa1a" + b"\x91" * 100_000, None),
        ("unknown-type", HELLO + protocol.encode([99, 1, 2]), "unknown message type"),
        ("negative-type", HELLO + protocol.encode([-1]), None),
        ("huge-type", HELLO + protocol.encode([2**64 - 1]), None),
        ("server-only-output", HELLO + protocol.output(b"hi"), None),
        ("server-only-exited", HELLO + protocol.encode([protocol.EXITED, 0]), None),
        ("reply-from-client", HELLO + protocol.encode([protocol.REPLY, 1, None]), None),
        ("input-before-attach", HELLO + protocol.input_frame(b"rm -rf /\r"), "not attached"),
        ("resize-before-attach", HELLO + protocol.resize(80, 24), "not attached"),
        ("detach-before-attach", HELLO + protocol.encode([protocol.DETACH]), "not attached"),
        ("resize-out-of-range", HELLO + protocol.encode([protocol.RESIZE, -1, 2**40]), None),
        ("request-bad-shape", HELLO + protocol.encode([protocol.REQUEST, "1", 2, 3]), None),
        ("request-args-list", HELLO + protocol.encode([protocol.REQUEST, 1, "ls", [1]]), None),
        (
            "request-huge-id",
            HELLO + protocol.encode([protocol.REQUEST, 2**64 - 1, "nope", {}]),
            None,
        ),
    ]


@pytest.mark.timeout(180)
def test_garbage_closes_only_that_connection(kit: Kit) -> None:
    cli = kit.cli
    sid = cli.new(*CAT)
    other = cli.new(*CAT)
    pid = kit.server_pid()
    # A well-behaved client stays attached through all of it.
    watcher = kit.raw()
    watcher.attach(sid)
    drain = kit.drain(watcher)
    echo_check(kit, sid, b"warm-up")
    before = settle_rss(pid, rss_mib(pid))
    fds_before = fd_count(pid)
    failures: list[str] = []
    with RssSampler(pid) as sampler:
        for name, payload, want in _cases():
            t0 = time.monotonic()
            messages, closed = exchange(str(kit.path), payload)
            took = time.monotonic() - t0
            errors = [m for m in messages if m[0] == protocol.ERROR]
            if not closed:
                failures.append(f"{name}: the server kept the connection open")
            if any(not isinstance(m[3], str) or not m[3] for m in errors):
                failures.append(f"{name}: an error without text: {errors}")
            if want is not None and not any(want in m[3] for m in errors):
                failures.append(f"{name}: expected an error mentioning {want!r}, got {messages}")
            kinds = {m[0] for m in messages}
            if not kinds <= {protocol.HELLO, protocol.ERROR, protocol.REPLY}:
                failures.append(f"{name}: unexpected messages {messages}")
            if took > 5:
                failures.append(f"{name}: took {took:.1f}s")
            if not pid_alive(pid):
                pytest.fail(f"the server died on {name}")
    assert not failures, "\n".join(failures)
    # The others were never disturbed.
    assert drain.end is None and not drain.done.is_set(), drain.end
    watcher.send(protocol.input_frame(b"still-here"))
    wait_for(lambda: drain.nbytes >= len(b"warm-upstill-here"), 10, "echo to the watcher")
    echo_check(kit, sid, b"after-garbage")
    echo_check(kit, other, b"other-session")
    sessions = cli.sessions()
    assert [s["status"] for s in sessions] == ["running", "running"]
    # Memory: a frame is capped long before a "gigabyte" arrives, and is freed with its connection.
    # What stays is allocator retention (glibc raises its mmap threshold after big frees), at
    # most a couple of frames' worth: MAX_CLIENT_FRAME is 8 MiB.
    after = settle_rss(pid, before + 24)
    print(f"\ngarbage: RSS before {before:.1f} MiB, peak {sampler.peak:.1f}, after {after:.1f}")
    assert sampler.peak - before < 64, f"RSS jumped {sampler.peak - before:.1f} MiB"
    assert after - before < 24, f"RSS grew {after - before:.1f} MiB"
    wait_for(lambda: fd_count(pid) <= fds_before, 15, f"fds back to {fds_before}")


def test_wrong_state_requests_get_errors_and_the_connection_goes_on(kit: Kit) -> None:
    sid = kit.cli.new(*CAT)
    c = kit.raw()
    for target in (4242, "no-such-name", [1, 2], {"a": 1}, -1, 2**63):
        try:
            c.request("attach", target=target, cols=80, rows=24)
        except Exception as exc:
            assert getattr(exc, "code", "") in ("session-not-found", "bad-request"), exc
        else:
            pytest.fail(f"attach to {target!r} succeeded")
    for command, args in (
        ("frobnicate", {}),
        ("attach", {"target": sid, "cols": "wide"}),
        ("attach", {"target": sid, "cols": 10**9}),
        ("attach", {"target": sid, "direct": {"keys": b"\x10"}}),  # no terminal was passed
        ("send", {"target": sid, "data": "not-bytes"}),
        ("resize", {"target": sid, "cols": -5}),
        ("kill", {"target": sid, "signal": "SIGNOPE"}),
        ("capture", {"target": 99}),
        ("new", {"command": []}),
        ("new", {"command": ["/nonexistent/program"]}),
        ("new", {"command": ["sh"], "cwd": "/nonexistent"}),
        ("new", {"command": ["sh"], "env": {"A": 1}}),
        ("rename", {"target": sid, "name": 5}),
    ):
        with pytest.raises(Exception) as info:
            c.request(command, **args)
        assert getattr(info.value, "code", None), f"{command} {args}: {info.value!r}"
        assert info.value.text, f"{command}: error without text"  # type: ignore[attr-defined]
    # The same connection still works, and nothing was attached or created by the bad requests.
    [s] = c.request("ls")
    assert s["id"] == sid and s["clients"] == 0 and s["status"] == "running"
    c.attach(sid)
    c.send(protocol.input_frame(b"ok?"))
    seen = b""
    while b"ok?" not in seen:
        m = c.recv(timeout=10)
        assert m is not None
        if m[0] == protocol.OUTPUT:
            seen += m[1]


def _send_with_fds(path: str, data: bytes, fds: list[int]) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(path)
    s.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))])
    return s


def test_passed_descriptors_that_are_not_terminals_are_refused_and_closed(kit: Kit) -> None:
    """A direct attach with a bogus descriptor (or too many) leaks nothing into the server."""
    sid = kit.cli.new(*CAT)
    pid = kit.server_pid()
    echo_check(kit, sid, b"warm")
    fds_before = fd_count(pid)
    devnull = os.open("/dev/null", os.O_RDWR)
    r, w = os.pipe()
    a, b = socket.socketpair()
    try:
        for fds in ([devnull], [r], [w], [a.fileno()], [devnull, r, w, a.fileno()]):
            s = _send_with_fds(str(kit.path), HELLO, fds)
            decoder = protocol.Decoder()
            hello: list[protocol.Message] = []
            while not hello:
                hello.extend(decoder.feed(s.recv(65536)))
            s.sendall(
                protocol.request(
                    1,
                    "attach",
                    {
                        "target": sid,
                        "cols": 80,
                        "rows": 24,
                        "direct": {"keys": b"\x10\x11", "timeout": 0.5},
                    },
                )
            )
            s.shutdown(socket.SHUT_WR)
            raw = b""
            while chunk := s.recv(65536):
                raw += chunk
            s.close()
            answers = list(decoder.feed(raw))
            assert any(m[0] == protocol.ERROR and "terminal" in m[3] for m in answers), (
                f"{len(fds)} fds: {answers}"
            )
        wait_for(
            lambda: fd_count(pid) <= fds_before,
            10,
            f"server fds back to {fds_before} (now {fd_count(pid)})",
        )
        assert kit.cli.session(sid)["clients"] == 0
        echo_check(kit, sid, b"fine")
    finally:
        for fd in (devnull, r, w):
            os.close(fd)
        a.close()
        b.close()


@pytest.mark.timeout(120)
def test_many_idle_and_half_open_connections_do_not_block_others(kit: Kit) -> None:
    """Hundreds of connections that never finish a message; others are served meanwhile."""
    sid = kit.cli.new(*CAT)
    pid = kit.server_pid()
    fds_before = fd_count(pid)
    socks = []
    try:
        for i in range(300):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(str(kit.path))
            if i % 3 == 1:
                s.sendall(HELLO[:2])  # half a handshake
            elif i % 3 == 2:
                s.sendall(HELLO + b"\xc6\x00\x10\x00\x00" + b"y" * 1000)  # half a 1 MiB frame
            socks.append(s)
        t0 = time.monotonic()
        echo_check(kit, sid, b"served")
        kit.cli.run("ls")
        print(f"\n300 stuck connections: echo + ls in {time.monotonic() - t0:.2f}s")
        assert pid_alive(pid)
    finally:
        for s in socks:
            s.close()
    wait_for(lambda: fd_count(pid) <= fds_before, 15, "fds released")
