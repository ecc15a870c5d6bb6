"""`tmuxish web` refuses what it must, with the right status, and leaks nothing to a log: wrong or
missing token, foreign Origin, wrong Host, a token in a query string, an oversized frame, more
connections than its bound."""

from __future__ import annotations

import contextlib
import socket
import ssl
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

pytest.importorskip("websockets", reason="the web extra (websockets) is not installed")

from helpers import Cli, wait_for
from webkit import Web, start_web, stop_web
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect
from websockets.typing import Origin

from tmuxish.client.web import wire

UPGRADE = {
    "Upgrade": "websocket",
    "Connection": "Upgrade",
    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
    "Sec-WebSocket-Version": "13",
}


def open_tab(web: Web, sid: int, **kw: Any) -> ClientConnection:
    headers = {"Cookie": web.cookie} if web.cookie else {}
    return connect(
        web.ws_url(f"session={sid}&cols=80&rows=24"),
        origin=kw.pop("origin", web.origin),
        additional_headers=kw.pop("headers", headers),
        open_timeout=10,
        **kw,
    )


def refused(web: Web, sid: int, **kw: Any) -> int:
    with pytest.raises(InvalidStatus) as info:
        open_tab(web, sid, **kw).close()
    return int(info.value.response.status_code)


def assert_nothing_leaked(web: Web, cli: Cli, *secrets: str) -> None:
    logs = [web.log(), web.out.read_text()]
    logs += [
        p.read_text(errors="replace") for p in Path(cli.socket_path).parent.iterdir() if p.is_file()
    ]
    for secret in (web.token, web.cookie.partition("=")[2], *secrets):
        if secret:
            assert all(secret not in text for text in logs[:1] + logs[2:])
    # The token is printed once, on standard output, and nowhere else.
    assert logs[1].count(web.token) == 1


def test_token_cookie_and_their_refusals(cli: Cli, web: Web) -> None:
    sid = cli.new("sh")
    assert web.request("/api/sessions")[0] == 401
    assert web.request("/login")[0] == 401
    assert web.request("/login", {"X-Tmuxish-Token": web.token[:-1] + "x"})[0] == 401
    assert web.request("/api/sessions", {"Cookie": "tmuxish_web=forged"})[0] == 401
    assert refused(web, sid) == 401
    assert refused(web, sid, headers={"Cookie": "tmuxish_web=forged"}) == 401
    # The page itself holds no secret; it is what reads the token from the fragment.
    status, headers, body = web.request("/")
    assert status == 200 and b"page.js" in body
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    cookie = web.login()
    status, _, body = web.request("/api/sessions", {"Cookie": cookie})
    assert status == 200 and f'"id": {sid}'.encode() in body
    with open_tab(web, sid) as tab:
        tab.send(wire.input_frame(b"echo ok-$((20+3))\n"))
        seen = b""
        while b"ok-23" not in seen:
            message = tab.recv(timeout=10)
            assert isinstance(message, bytes) and message[0] == wire.OUTPUT
            seen += message[1:]
    assert_nothing_leaked(web, cli)


def test_foreign_origin_and_wrong_host(cli: Cli, web: Web) -> None:
    sid = cli.new("sh")
    cookie = web.login()
    other = f"http://127.0.0.1:{web.port + 1}"  # another port on localhost is another origin
    for origin in (other, "http://evil.example", "null", f"https://{web.host}"):
        assert web.request("/api/sessions", {"Cookie": cookie, "Origin": origin})[0] == 403
        assert web.request("/login", {"X-Tmuxish-Token": web.token, "Origin": origin})[0] == 403
        assert refused(web, sid, origin=origin) == 403
    assert refused(web, sid, origin=None) == 403  # a WebSocket must say where it comes from
    for host in ("evil.example", f"evil.example:{web.port}", f"127.0.0.1:{web.port + 1}", None):
        headers: dict[str, Any] = {"Host": host, "Cookie": cookie}
        assert web.request("/", headers)[0] == 421
        assert web.request("/login", {**headers, "X-Tmuxish-Token": web.token})[0] == 421
        assert web.request("/ws?session=1", {**headers, **UPGRADE, "Origin": web.origin})[0] == 421
    assert web.request("/", {"Origin": web.origin})[0] == 200
    assert web.request("/", {"Host": f"localhost:{web.port}"})[0] == 200
    assert_nothing_leaked(web, cli)


def test_token_in_a_query_string_is_refused(cli: Cli, web: Web) -> None:
    cookie = web.login()
    for path in (f"/?token={web.token}", f"/api/sessions?x={web.token}", f"/login?{web.token}"):
        status, _, body = web.request(path, {"Cookie": cookie, "X-Tmuxish-Token": web.token})
        assert status == 400 and web.token.encode() not in body
    # Not even a request too broken to parse gets its line into a log.
    with socket.create_connection(("127.0.0.1", web.port), timeout=10) as raw:
        raw.sendall(f"GET /?token={web.token} HTTP/1.1\r\nbroken header\r\n\r\n".encode())
        raw.settimeout(10)
        while raw.recv(4096):
            pass
    assert_nothing_leaked(web, cli)


def test_oversized_frame_closes_the_tab(cli: Cli, web: Web) -> None:
    sid = cli.new("sh")
    web.login()
    with open_tab(web, sid) as tab:
        tab.send(wire.input_frame(b"x" * (wire.MAX_INCOMING + 1)))
        with pytest.raises(ConnectionClosed) as info:
            while True:
                tab.recv(timeout=10)
        assert info.value.rcvd is not None and info.value.rcvd.code == 1009
    with open_tab(web, sid) as tab:  # a bad frame closes the tab with a protocol error
        tab.send(b"\x63junk")
        with pytest.raises(ConnectionClosed) as info:
            while True:
                tab.recv(timeout=10)
        assert info.value.rcvd is not None and info.value.rcvd.code == 1002
    assert "x" * 100 not in web.log()
    assert_nothing_leaked(web, cli)


def test_200_idle_connections_hit_the_bound(cli: Cli, web: Web) -> None:
    sid = cli.new("sh")
    web.login()
    statuses: list[int] = []
    with contextlib.ExitStack() as tabs:
        for _ in range(200):
            try:
                tabs.enter_context(open_tab(web, sid))
            except InvalidStatus as exc:
                statuses.append(exc.response.status_code)
        assert len(statuses) == 200 - 32  # the default bound
        assert set(statuses) == {503}
        wait_for(lambda: cli.session(sid)["clients"] == 32, 15, "32 attachments")
    # Closed tabs give their places back.
    wait_for(lambda: cli.session(sid)["clients"] == 0, 15, "the tabs to detach")
    with open_tab(web, sid):
        pass
    assert_nothing_leaked(web, cli)


def test_tls(cli: Cli, tmp_path: Path) -> None:
    """With a certificate it serves https and wss, its cookie is Secure, and its origin is the
    https one."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    # On every address (which needs TLS): the machine's own names and addresses are its Host.
    web = start_web(
        cli, tmp_path, "--tls-cert", str(cert), "--tls-key", str(key), "--listen", "0.0.0.0:0"
    )
    try:
        assert web.url.startswith(f"https://{socket.getfqdn()}:")
        web.tls = ssl.create_default_context(cafile=str(cert))
        sid = cli.new("sh")
        status, headers, _ = web.request("/login", {"X-Tmuxish-Token": web.token})
        assert status == 204 and "; Secure" in headers["set-cookie"]
        web.cookie = headers["set-cookie"].split(";", 1)[0]
        plain = f"http://{web.host}"
        assert web.request("/api/sessions", {"Cookie": web.cookie, "Origin": plain})[0] == 403
        assert refused(web, sid, origin=plain, ssl=web.tls) == 403
        with open_tab(web, sid, ssl=web.tls) as tab:
            tab.send(wire.resize_frame(100, 30))
            wait_for(lambda: cli.session(sid)["cols"] == 100, 10, "the resize over wss")
        assert_nothing_leaked(web, cli)
    finally:
        stop_web(web)


def test_starting_commands_needs_allow_new(cli: Cli, web: Web, tmp_path: Path) -> None:
    cookie = web.login()
    marker = tmp_path / "started"
    query = f"/ws?new=1&cmd=touch+{marker}"
    headers = {"Cookie": cookie, "Origin": web.origin, **UPGRADE}
    assert web.request(query, headers)[0] == 403
    assert not marker.exists() and cli.sessions() == []

    (tmp_path / "allowing").mkdir()
    allowing = start_web(cli, tmp_path / "allowing", "--allow-new")
    command = "sh -c 'echo made-$((7*6)); exec cat'"
    try:
        allowing.login()
        with connect(
            allowing.ws_url(urlencode({"new": 1, "cmd": command, "cols": 70, "rows": 20})),
            origin=Origin(allowing.origin),
            additional_headers={"Cookie": allowing.cookie},
            open_timeout=10,
        ) as tab:
            seen = b""
            while b"made-42" not in seen:
                message = tab.recv(timeout=10)
                assert isinstance(message, bytes)
                seen += message[1:]
        [session] = cli.sessions()
        assert session["command"][:2] == ["sh", "-c"] and session["cols"] == 70
    finally:
        stop_web(allowing)
