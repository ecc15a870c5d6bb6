"""The pure parts of `tmuxish web`: frames, the flow window, the request guard, the options;
and the command's refusal to listen in the open without TLS."""

from __future__ import annotations

import socket
import subprocess
import sys
import zipfile
from http import HTTPStatus
from pathlib import Path

import pytest

pytest.importorskip("websockets", reason="the web extra (websockets) is not installed")

from helpers import Cli

from tmuxish.client.web import wire
from tmuxish.client.web.flow import FlowWindow
from tmuxish.client.web.gateway import WebOptions, check_options, parse_listen
from tmuxish.client.web.guard import Guard, host_names
from tmuxish.errors import UsageError


def test_frames_round_trip_exactly() -> None:
    every_byte = bytes(range(256))
    assert wire.parse(wire.input_frame(every_byte)) == wire.Input(every_byte)
    assert wire.parse(wire.resize_frame(132, 43)) == wire.Resize(132, 43)
    assert wire.parse(wire.ack_frame(1 << 40)) == wire.Ack(1 << 40)
    assert wire.output(every_byte) == b"\x01" + every_byte
    assert wire.exited(-1) == b"\x05\xff\xff\xff\xff"
    assert wire.error("né") == b"\x06n\xc3\xa9"


@pytest.mark.parametrize(
    "frame",
    [b"", "text", b"\x07", b"\x01output", b"\x03\x00\x50", b"\x03\x00\x00\x00\x18", b"\x04\x00"],
)
def test_frames_that_are_not_ours_are_refused(frame: bytes | str) -> None:
    with pytest.raises(wire.WireError):
        wire.parse(frame)


def test_window_queues_under_the_limit_and_drops_past_it() -> None:
    w = FlowWindow(limit=100)
    w.offer(b"a" * 60)
    assert w.take(25) == b"a" * 25 and w.take(1000) == b"a" * 35
    assert (w.sent, w.in_flight, w.behind) == (60, 60, False)
    w.offer(b"b" * 30)
    w.offer(b"c" * 20)  # 60 unacknowledged + 30 queued + 20 > 100
    assert w.behind and w.queued == 0 and w.dropped == 50
    w.offer(b"d" * 5)
    assert w.dropped == 55 and w.take(1000) == b""
    w.ack(30)
    assert not w.caught_up
    with pytest.raises(ValueError):
        w.ack(61)
    w.ack(60)
    assert w.caught_up
    w.resume(b"repaint")
    assert not w.behind and w.take(1000) == b"repaint"
    w.ack(10)  # an old ack never moves the count back
    assert w.acked == 60


def test_window_one_chunk_larger_than_the_window_is_caught_up_at_once() -> None:
    # Nothing is owed, so no acknowledgement will come: the tab must repaint on this alone.
    w = FlowWindow(limit=100)
    w.offer(b"x" * 101)
    assert w.behind and w.caught_up


def test_window_acknowledged_output_makes_room() -> None:
    w = FlowWindow(limit=100)
    for _ in range(10):
        w.offer(b"x" * 90)
        assert w.take(1000) == b"x" * 90
        w.ack(w.sent)
    assert not w.behind and w.dropped == 0


def test_guard_hosts_origins_and_queries() -> None:
    hosts = host_names("127.0.0.1", 8000)
    assert hosts == {"127.0.0.1:8000", "localhost:8000"}
    assert host_names("::1", 80) == {"[::1]:80", "localhost:80"}
    assert host_names("10.0.0.2", 443) == {"10.0.0.2:443"}
    assert host_names("box.example", 443) == {"box.example:443"}
    everywhere = host_names("0.0.0.0", 443)
    assert {"127.0.0.1:443", f"{socket.gethostname()}:443"} <= everywhere
    assert "0.0.0.0:443" not in everywhere and "evil.example:443" not in everywhere
    g = Guard(hosts, tls=False, token="secret-token", cookie="cookie-value")
    assert g.check_request("/", "127.0.0.1:8000", None, websocket=False) is None
    assert g.check_request("/ws", "localhost:8000", "http://localhost:8000", True) is None
    cases = [
        (("/", "127.0.0.1:8001", None, False), HTTPStatus.MISDIRECTED_REQUEST),
        (("/", None, None, False), HTTPStatus.MISDIRECTED_REQUEST),
        (("/", "127.0.0.1:8000", "http://127.0.0.1:8001", False), HTTPStatus.FORBIDDEN),
        (("/", "127.0.0.1:8000", "https://127.0.0.1:8000", False), HTTPStatus.FORBIDDEN),
        (("/ws", "127.0.0.1:8000", None, True), HTTPStatus.FORBIDDEN),
        (("/?token=x", "127.0.0.1:8000", None, False), HTTPStatus.BAD_REQUEST),
        (("/?a=secret-token", "127.0.0.1:8000", None, False), HTTPStatus.BAD_REQUEST),
    ]
    for args, status in cases:
        refusal = g.check_request(*args)
        assert refusal is not None and refusal.status == status, args
    assert g.token_ok("secret-token") and not g.token_ok("secret-tokeN") and not g.token_ok(None)
    assert g.cookie_ok("a=b; tmuxish_web=cookie-value")
    for header in (None, "", "tmuxish_web=other", "tmuxish_web", "\x00;=;", "x=cookie-value"):
        assert not g.cookie_ok(header)
    assert "Secure" not in g.set_cookie()
    assert "; Secure" in Guard(hosts, True, "t", "c").set_cookie()


def test_options() -> None:
    assert parse_listen("127.0.0.1:0") == ("127.0.0.1", 0)
    assert parse_listen("[::1]:8080") == ("::1", 8080)
    assert parse_listen(":9000") == ("127.0.0.1", 9000)
    for bad in ("8080", "host:", "host:port", "h:70000"):
        with pytest.raises(UsageError):
            parse_listen(bad)
    sock = Path("/tmp/x")
    check_options(WebOptions(sock, host="::1"))
    with pytest.raises(UsageError, match="without TLS"):
        check_options(WebOptions(sock, host="0.0.0.0"))
    with pytest.raises(UsageError, match="go together"):
        check_options(WebOptions(sock, tls_cert=Path("c")))


def test_the_command_refuses_to_listen_in_the_open_without_tls(cli: Cli) -> None:
    proc = cli.run("web", "--listen", "0.0.0.0:0", check=False)
    assert proc.returncode != 0 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and "without TLS" in proc.stderr


def test_the_wheel_ships_the_page_and_xterm_with_its_licences(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[2]
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(root)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    [wheel] = tmp_path.glob("tmuxish-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    static = "tmuxish/client/web/static/"
    for name in (
        "index.html",
        "page.js",
        "page.css",
        "xterm/xterm.js",
        "xterm/xterm.css",
        "xterm/addon-fit.js",
        "xterm/LICENSE.xterm",
        "xterm/LICENSE.addon-fit",
    ):
        assert static + name in names
    assert "tmuxish/client/web/gateway.py" in names
    # The committed files are the pinned releases, unmodified.
    check = subprocess.run(
        [sys.executable, str(root / "scripts" / "fetch_xterm.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert check.returncode == 0, check.stderr


def test_the_command_says_in_one_line_what_it_cannot_do(cli: Cli, tmp_path: Path) -> None:
    missing = tmp_path / "missing.pem"
    for argv in (
        ["web", "--listen", "nonsense"],
        ["web", "--tls-cert", str(missing), "--tls-key", str(missing), "--listen", "127.0.0.1:0"],
        ["web", "--tls-cert", str(missing)],
    ):
        proc = cli.run(*argv, check=False)
        assert proc.returncode != 0 and proc.stdout == ""
        assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("tmuxish: "), proc.stderr
        assert "internal error" not in proc.stderr
    # Without the web extra: what to install, in one line.
    code = (
        "import sys; sys.modules['websockets'] = None; from tmuxish.cli import main; "
        f"sys.exit(main(['-S', {str(cli.socket_path)!r}, 'web']))"
    )
    proc = subprocess.run(
        [sys.executable, "-P", "-c", code], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode != 0 and "pip install 'tmuxish[web]'" in proc.stderr
    assert proc.stderr.count("\n") == 1
