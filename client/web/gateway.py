"""The HTTP and WebSocket server of `tmuxish web`: the page, its files, the session list, and one
WebSocket per tab. An ordinary client of the tmuxish server: sessions are listed with ``ls`` and
each tab attaches on its own connection, like `tmuxish attach` in relay mode.

Routes (every one behind ``guard``; the API and the WebSocket also need the session cookie):

    GET /                 the page            GET /static/...   its script, styles and xterm.js
    GET /login            trade the token (X-Tmuxish-Token header) for the cookie
    GET /api/sessions     the sessions, as `tmuxish ls` shows them (JSON)
    GET /ws?session=ID&cols=C&rows=R   a tab (WebSocket); ?new=1&cmd=... with --allow-new
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import shlex
import signal
import socket
import ssl
from dataclasses import dataclass
from datetime import UTC, datetime
from http import HTTPStatus
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response
from websockets.protocol import State

from tmuxish.client.async_client import Client
from tmuxish.client.listing import format_age
from tmuxish.client.web import guard as guards
from tmuxish.client.web import wire
from tmuxish.client.web.flow import DEFAULT_LIMIT, FlowWindow
from tmuxish.client.web.tab import Tab
from tmuxish.errors import TmuxishError, UsageError

if TYPE_CHECKING:
    from collections.abc import Callable

    from tmuxish.client.session_info import SessionInfo

log = logging.getLogger("tmuxish.web")

#: websockets' own logger would print request lines (which may hold anything a stranger sent):
#: it gets a logger that says nothing, and this module reports in its own words.
_quiet = logging.getLogger("tmuxish.web.websockets")
_quiet.addHandler(logging.NullHandler())
_quiet.propagate = False
_quiet.setLevel(logging.CRITICAL + 1)

STATIC = Path(__file__).resolve().parent / "static"

#: URL path -> (file under static/, content type).
FILES = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/static/page.js": ("page.js", "text/javascript; charset=utf-8"),
    "/static/page.css": ("page.css", "text/css; charset=utf-8"),
    "/static/xterm/xterm.js": ("xterm/xterm.js", "text/javascript; charset=utf-8"),
    "/static/xterm/xterm.css": ("xterm/xterm.css", "text/css; charset=utf-8"),
    "/static/xterm/addon-fit.js": ("xterm/addon-fit.js", "text/javascript; charset=utf-8"),
}

#: Sent with every response: nothing from elsewhere, no framing, no referrers, no caching.
SAFETY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "connect-src 'self'; img-src 'self' data:; font-src 'self'; frame-ancestors 'none'; "
        "base-uri 'none'; form-action 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}

DEFAULT_MAX_TABS = 32


@dataclass(frozen=True)
class WebOptions:
    socket_path: Path
    host: str = "127.0.0.1"
    port: int = 7683
    readonly: bool = False
    allow_new: bool = False
    tls_cert: Path | None = None
    tls_key: Path | None = None
    max_tabs: int = DEFAULT_MAX_TABS
    window_limit: int = DEFAULT_LIMIT


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT``) into its parts; UsageError if it is not that."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise UsageError(f"--listen wants HOST:PORT, not {text!r}")
    host = host.removeprefix("[").removesuffix("]") or "127.0.0.1"
    return host, int(port)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_options(options: WebOptions) -> None:
    """Refuse what would be unsafe or cannot work, in one line."""
    if (options.tls_cert is None) != (options.tls_key is None):
        raise UsageError("--tls-cert and --tls-key go together")
    if not is_loopback(options.host) and options.tls_cert is None:
        raise UsageError(
            f"refusing to listen on {options.host} without TLS: anyone who can reach it could "
            "watch the token go by; give --tls-cert and --tls-key (or listen on 127.0.0.1)"
        )


def session_row(s: SessionInfo, now: datetime) -> dict[str, Any]:
    """One session as the page lists it: the columns of `tmuxish ls`."""
    code = "?" if s.exit_code is None else s.exit_code
    return {
        "id": s.id,
        "name": s.name or "",
        "command": " ".join(s.command),
        "status": s.status if s.status == "running" else f"exited ({code})",
        "running": s.status == "running",
        "clients": s.clients,
        "size": f"{s.cols}x{s.rows}",
        "age": format_age(s.created.isoformat(), now),
    }


def _response(status: HTTPStatus, body: bytes, content_type: str, **extra: str) -> Response:
    headers = Headers(SAFETY_HEADERS)
    headers["Content-Type"] = content_type
    headers["Content-Length"] = str(len(body))
    for name, value in extra.items():
        headers[name.replace("_", "-")] = value
    return Response(status.value, status.phrase, headers, body)


def _refuse(status: HTTPStatus, message: str) -> Response:
    log.info("refused a request: %d %s", status.value, message.strip())
    return _response(status, message.encode(), "text/plain; charset=utf-8")


class Gateway:
    """The running web server. ``start()`` binds and returns the URL (token included)."""

    def __init__(self, options: WebOptions) -> None:
        check_options(options)
        self.options = options
        self.client = Client(options.socket_path, autostart=options.allow_new)
        self.token = guards.new_secret()
        self.guard: guards.Guard | None = None
        self.server: Server | None = None
        self.url = ""
        self._files = {
            path: ((STATIC / name).read_bytes(), ctype) for path, (name, ctype) in FILES.items()
        }
        self._tabs: set[ServerConnection] = set()

    async def start(self) -> str:
        opts = self.options
        context = None
        if opts.tls_cert is not None and opts.tls_key is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            try:
                context.load_cert_chain(opts.tls_cert, opts.tls_key)
            except (OSError, ssl.SSLError) as exc:
                detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
                raise UsageError(f"cannot load --tls-cert/--tls-key: {detail}") from None
        try:
            self.server = await serve(
                self._handle,
                opts.host,
                opts.port,
                process_request=self._process_request,
                ssl=context,
                logger=_quiet,
                server_header=None,
                max_size=wire.MAX_INCOMING,
                open_timeout=10,
                write_limit=65536,
                ping_interval=20,
                ping_timeout=20,
            )
        except OSError as exc:
            raise UsageError(
                f"cannot listen on {opts.host}:{opts.port}: {exc.strerror or exc}"
            ) from None
        port = self.server.sockets[0].getsockname()[1]
        self.guard = guards.Guard(
            guards.host_names(opts.host, port), context is not None, self.token, guards.new_secret()
        )
        name = socket.getfqdn() if opts.host in guards.WILDCARDS else opts.host
        shown = f"[{name}]" if ":" in name else name
        self.url = f"{'https' if context else 'http'}://{shown}:{port}/#{self.token}"
        return self.url

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
        await self.client.close()

    # -- requests ----------------------------------------------------------------------------------

    async def _process_request(self, conn: ServerConnection, request: Request) -> Response | None:
        assert self.guard is not None
        headers = request.headers
        websocket = headers.get("Upgrade", "").lower() == "websocket"
        refusal = self.guard.check_request(
            request.path, headers.get("Host"), headers.get("Origin"), websocket
        )
        if refusal is not None:
            return _refuse(refusal.status, refusal.message)
        path = urlsplit(request.path).path
        if not websocket and path in self._files:
            body, ctype = self._files[path]
            return _response(HTTPStatus.OK, body, ctype)
        if path == "/login" and not websocket:
            if not self.guard.token_ok(headers.get(guards.TOKEN_HEADER)):
                return _refuse(HTTPStatus.UNAUTHORIZED, "wrong or missing token\n")
            log.info("a browser logged in")
            return _response(
                HTTPStatus.NO_CONTENT, b"", "text/plain", Set_Cookie=self.guard.set_cookie()
            )
        if path not in ("/api/sessions", "/ws"):
            return _refuse(HTTPStatus.NOT_FOUND, "not found\n")
        if not self.guard.cookie_ok(headers.get("Cookie")):
            return _refuse(HTTPStatus.UNAUTHORIZED, "wrong or missing token\n")
        if path == "/api/sessions":
            return await self._sessions()
        if not websocket:
            return _refuse(HTTPStatus.BAD_REQUEST, "/ws is a WebSocket\n")
        problem = self._tab_problem(parse_qs(urlsplit(request.path).query))
        if problem is not None:
            return _refuse(*problem)
        self._tabs = {c for c in self._tabs if c.state is not State.CLOSED}
        if len(self._tabs) >= self.options.max_tabs:
            return _refuse(HTTPStatus.SERVICE_UNAVAILABLE, "too many connections\n")
        self._tabs.add(conn)
        return None

    def _tab_problem(self, query: dict[str, list[str]]) -> tuple[HTTPStatus, str] | None:
        for key in ("cols", "rows"):
            value = query.get(key, ["80"])[0]
            if not value.isdigit() or not 0 < int(value) <= 10000:
                return HTTPStatus.BAD_REQUEST, f"bad {key}\n"
        if "new" in query:
            if not self.options.allow_new:
                return HTTPStatus.FORBIDDEN, "starting sessions needs `tmuxish web --allow-new`\n"
            return None
        if not query.get("session", [""])[0]:
            return HTTPStatus.BAD_REQUEST, "which session?\n"
        return None

    async def _sessions(self) -> Response:
        try:
            sessions = await self.client.sessions()
        except TmuxishError as exc:
            return _refuse(HTTPStatus.BAD_GATEWAY, f"{exc}\n")
        now = datetime.now(UTC)
        body = {
            "sessions": [session_row(s, now) for s in sessions],
            "readonly": self.options.readonly,
            "allow_new": self.options.allow_new,
        }
        return _response(HTTPStatus.OK, json.dumps(body).encode(), "application/json")

    # -- tabs --------------------------------------------------------------------------------------

    async def _handle(self, ws: ServerConnection) -> None:
        try:
            query = parse_qs(urlsplit(ws.request.path if ws.request else "").query)
            cols = int(query.get("cols", ["80"])[0])
            rows = int(query.get("rows", ["24"])[0])
            target: int | str
            try:
                if "new" in query:
                    argv = shlex.split(query.get("cmd", [""])[0]) or None
                    target = (await self.client.new(argv, cols=cols, rows=rows)).id
                else:
                    target = query["session"][0]
                stream = await self.client.attach(
                    target, cols=cols, rows=rows, readonly=self.options.readonly
                )
            except (TmuxishError, ValueError) as exc:
                await ws.send(wire.error(str(exc)))
                await ws.close()
                return
            log.info("a tab attached to session %s", stream.session.id)
            window = FlowWindow(self.options.window_limit)
            tab = Tab(ws, self.client, stream, (cols, rows), self.options.readonly, window)
            await tab.run()
            log.info("a tab left session %s", stream.session.id)
        finally:
            self._tabs.discard(ws)


async def run(options: WebOptions, announce: Callable[[str], None]) -> None:
    """Serve until SIGINT or SIGTERM; ``announce`` gets the URL (token included) once listening."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    gateway = Gateway(options)
    try:
        announce(await gateway.start())
        await stop.wait()
    finally:
        await gateway.close()
