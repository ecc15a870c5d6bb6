"""The checks every HTTP and WebSocket request to `tmuxish web` passes, before anything else.

Safe by default: the Host header must name this server exactly (no DNS rebinding), an Origin,
when there is one, must be this server's own origin (another port on localhost is another origin),
and a WebSocket must carry one. The secret token the command prints travels in the URL fragment,
which the browser never sends; the page exchanges it once for an HttpOnly, SameSite=Strict
cookie. Both are compared in constant time. A token in a query string is refused outright: query
strings end up in histories, logs and Referer headers. Pure: values in, a verdict out.
"""

from __future__ import annotations

import contextlib
import hmac
import secrets
import socket
from dataclasses import dataclass
from http import HTTPStatus
from http.cookies import CookieError, SimpleCookie
from urllib.parse import parse_qsl, urlsplit

COOKIE = "tmuxish_web"
#: The header the page sends the token in when it trades it for the cookie.
TOKEN_HEADER = "X-Tmuxish-Token"


@dataclass(frozen=True)
class Refusal:
    status: HTTPStatus
    message: str


def new_secret() -> str:
    return secrets.token_urlsafe(32)


WILDCARDS = ("0.0.0.0", "::")


def _with_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def host_names(host: str, port: int) -> frozenset[str]:
    """Every Host header value that names this server: the address or name it listens on, and
    ``localhost`` when that is a loopback address. On a wildcard address, the machine's own
    names and addresses instead (``--listen NAME:PORT`` admits exactly NAME)."""
    names = {_with_port(host, port)}
    if host in ("127.0.0.1", "::1", "localhost"):
        names.add(f"localhost:{port}")
    if host in WILDCARDS:
        names = {_with_port(h, port) for h in own_names()}
    return frozenset(names)


def own_names() -> set[str]:
    """This machine's host names and the addresses they resolve to, loopback included."""
    names = {"localhost", "127.0.0.1", "::1", socket.gethostname(), socket.getfqdn()}
    for name in list(names):
        with contextlib.suppress(OSError):
            names |= {str(info[4][0]) for info in socket.getaddrinfo(name, None)}
    return {n for n in names if n}


def _same(given: str | None, expected: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


class Guard:
    """What a request must show to be served, for one running server."""

    def __init__(self, hosts: frozenset[str], tls: bool, token: str, cookie: str) -> None:
        self.hosts = hosts
        self.origins = frozenset(f"{'https' if tls else 'http'}://{h}" for h in hosts)
        self.tls = tls
        self.token = token
        self.cookie = cookie

    def check_request(
        self, path: str, host: str | None, origin: str | None, websocket: bool
    ) -> Refusal | None:
        """Host, Origin and query string: whether anyone may make this request at all."""
        if host is None or host not in self.hosts:
            return Refusal(HTTPStatus.MISDIRECTED_REQUEST, "wrong Host header\n")
        if origin is not None and origin not in self.origins:
            return Refusal(HTTPStatus.FORBIDDEN, "foreign Origin\n")
        if websocket and origin is None:
            return Refusal(HTTPStatus.FORBIDDEN, "a WebSocket needs an Origin header\n")
        for key, value in parse_qsl(urlsplit(path).query, keep_blank_values=True):
            if key == "token" or _same(key, self.token) or _same(value, self.token):
                return Refusal(HTTPStatus.BAD_REQUEST, "never put the token in a URL\n")
        return None

    def token_ok(self, given: str | None) -> bool:
        return _same(given, self.token)

    def cookie_ok(self, header: str | None) -> bool:
        """Whether a Cookie header carries our session cookie."""
        if not header:
            return False
        jar: SimpleCookie = SimpleCookie()
        try:
            jar.load(header)
        except CookieError:
            return False
        morsel = jar.get(COOKIE)
        return morsel is not None and _same(morsel.value, self.cookie)

    def set_cookie(self) -> str:
        """The Set-Cookie value the token is traded for."""
        secure = "; Secure" if self.tls else ""
        return f"{COOKIE}={self.cookie}; Path=/; HttpOnly; SameSite=Strict{secure}"
