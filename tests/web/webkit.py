"""Helpers for the `tmuxish web` tests: the real command on a free port beside a private server,
and plain HTTP requests with exactly the headers a test wants."""

from __future__ import annotations

import http.client
import re
import signal
import ssl
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from helpers import Cli, wait_for


@dataclass
class Web:
    """A running `tmuxish web`."""

    proc: subprocess.Popen[bytes]
    out: Path
    err: Path
    url: str = ""
    port: int = 0
    token: str = ""
    cookie: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    #: Set for a server started with TLS: trusts its certificate.
    tls: ssl.SSLContext | None = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def origin(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}"

    def request(
        self, path: str, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        """One GET with exactly ``headers`` (Host defaults to ours); status, headers, body."""
        conn = (
            http.client.HTTPSConnection("127.0.0.1", self.port, timeout=10, context=self.tls)
            if self.tls
            else http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        )
        try:
            conn.putrequest("GET", path, skip_host=True, skip_accept_encoding=True)
            sent = {"Host": self.host, **(headers or {})}
            for name, value in sent.items():
                if value is not None:
                    conn.putheader(name, value)
            conn.endheaders()
            resp = conn.getresponse()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
        finally:
            conn.close()

    def login(self) -> str:
        """Trade the token for the cookie, as the page does; the Cookie header to send."""
        status, headers, _ = self.request("/login", {"X-Tmuxish-Token": self.token})
        assert status == 204, status
        value = headers["set-cookie"]
        assert "HttpOnly" in value and "SameSite=Strict" in value
        self.cookie = value.split(";", 1)[0]
        return self.cookie

    def ws_url(self, query: str) -> str:
        return f"{'wss' if self.tls else 'ws'}://{self.host}/ws?{query}"

    def rss(self) -> int:
        """Resident memory of the web process, in bytes."""
        text = Path(f"/proc/{self.proc.pid}/status").read_text()
        match = re.search(r"VmRSS:\s+(\d+) kB", text)
        assert match
        return int(match.group(1)) * 1024

    def log(self) -> str:
        return self.err.read_text(errors="replace")


def start_web(cli: Cli, tmp: Path, *extra: str) -> Web:
    out, err = tmp / "web.out", tmp / "web.err"
    with out.open("wb") as o, err.open("wb") as e:
        proc = subprocess.Popen(
            cli.argv("web", "--listen", "127.0.0.1:0", *extra),
            stdout=o,
            stderr=e,
            stdin=subprocess.DEVNULL,
            env=cli.env,
        )
    web = Web(proc, out, err)

    def started() -> re.Match[str] | None:
        if proc.poll() is not None:
            raise AssertionError(f"tmuxish web exited {proc.returncode}: {err.read_text()}")
        return re.search(r"open (https?://[^/\s]+:(\d+)/#(\S+))\n", out.read_text())

    match = wait_for(started, 20, "tmuxish web to listen")
    web.url, web.port, web.token = match.group(1), int(match.group(2)), match.group(3)
    return web


def stop_web(web: Web) -> None:
    if web.proc.poll() is None:
        web.proc.send_signal(signal.SIGTERM)
        try:
            web.proc.wait(10)
        except subprocess.TimeoutExpired:
            web.proc.kill()
            web.proc.wait(5)
