"""The blocking API client, ``tmuxish.SyncClient``, and its attach stream: a thin shell that
moves bytes over a ``Connection``; what they mean is ``client/core.py``'s business.

No asyncio: the CLI's ``ls``, ``kill``, ``send`` and ``capture`` run through this module.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from tmuxish import protocol
from tmuxish.client.core import StreamView
from tmuxish.client.session_info import (
    Keys,
    Pattern,
    SessionInfo,
    SocketPath,
    Target,
    attach_args,
    compile_pattern,
    exited_error,
    new_args,
    socket_path_of,
    split_attach_reply,
    target_id,
    timeout_error,
)
from tmuxish.errors import (
    ServerGone,
    ServerNotRunning,
    ServerUpgrading,
    SessionNotFound,
    TmuxishError,
)
from tmuxish.keynames import send_args

if TYPE_CHECKING:
    import re

    from tmuxish.client.connection import Connection
    from tmuxish.client.handle import SessionHandle
    from tmuxish.client.run import OutputSink, RunResult, Sent

DEFAULT_TIMEOUT: Final = 10.0
#: A connector opens a blocking connection; its argument says whether to start a server.
Connector = Callable[[bool], "Connection"]
#: How long a client waits for the server to come back from `tmuxish server upgrade`.
UPGRADE_TIMEOUT: Final = 15.0


class SyncAttachStream(StreamView):
    """A blocking attachment: iterate for output bytes; ``write``, ``resize``, ``detach``.

    Iteration ends when the program exits (``exit_code`` is then set) or the attachment ends
    (``detach_reason``). The first chunk is the repaint of the current screen unless the stream
    was opened with ``repaint=False``.
    """

    def __init__(
        self, conn: Connection, session: SessionInfo, initial: bytes, reset: bytes
    ) -> None:
        super().__init__(session, initial, reset)
        self._conn = conn

    def __iter__(self) -> Iterator[bytes]:
        while True:
            chunk = self.read()
            if chunk is None:
                return
            yield chunk

    def read(self, timeout: float | None = None) -> bytes | None:
        """The next output bytes; None once the stream has ended; TimeoutError after ``timeout``."""
        if self._initial:
            return self.take_initial()
        conn = self._conn
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            chunk = self._state.take(conn.pending)
            if chunk:
                return chunk
            if self._state.ended or self._closed:
                return None
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError("no output in time")
                conn.sock.settimeout(remaining)
            else:
                conn.sock.settimeout(None)
            try:
                conn.read_more()
            except TimeoutError:
                raise TimeoutError("no output in time") from None

    def write(self, data: bytes | str) -> None:
        """Type ``data`` into the session (a str is sent as UTF-8)."""
        if isinstance(data, str):
            data = data.encode("utf-8", "surrogateescape")
        self._conn.sock.settimeout(DEFAULT_TIMEOUT)
        self._conn.send(protocol.input_frame(bytes(data)))

    def resize(self, cols: int, rows: int) -> None:
        """Report this client's terminal size (the session's policy decides its size)."""
        self._conn.sock.settimeout(DEFAULT_TIMEOUT)
        self._conn.send(protocol.resize(cols, rows))

    def detach(self, timeout: float = DEFAULT_TIMEOUT) -> None:
        """Leave the session running and end the stream; output still in flight is dropped."""
        if self._closed:
            return
        if not self._state.ended:
            try:
                self._conn.sock.settimeout(DEFAULT_TIMEOUT)
                self._conn.send(protocol.detach())
                deadline = time.monotonic() + timeout
                while self.read(max(0.0, deadline - time.monotonic())) is not None:
                    pass
            except (TmuxishError, TimeoutError):
                pass
        self.close()

    def close(self) -> None:
        """Drop the connection (the server detaches us)."""
        self._closed = True
        self._conn.close()

    def __enter__(self) -> SyncAttachStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.detach()


class SyncClient:
    """A blocking client on one connection; no asyncio, so it is cheap to import and start.

    ``SyncClient()`` uses the default socket as the CLI does (``$TMUXISH_SOCKET``, else
    ``default`` in the private socket directory); ``socket_path``/``socket_name`` are ``-S``/``-L``.
    It connects on first use; ``new`` starts a server when none answers (``autostart``).
    ``connector`` replaces how connections are opened (e.g. through ssh): it gets ``start`` and
    returns a ``tmuxish.client.connection.Connection``.
    """

    def __init__(
        self,
        socket_path: SocketPath | None = None,
        *,
        socket_name: str | None = None,
        autostart: bool = True,
        timeout: float | None = DEFAULT_TIMEOUT,
        connector: Connector | None = None,
    ) -> None:
        self.socket_path: Path | None = None
        if connector is None or socket_path is not None:
            # With a connector, a path given too names the server's socket for
            # ``events`` to tell a crash from a stop.
            self.socket_path = socket_path_of(socket_path, socket_name)
        self.autostart = autostart
        self.timeout = timeout
        self._connector = connector
        self._conn: Connection | None = None

    # -- connection ------------------------------------------------------------------------------

    def _open(self, start: bool) -> Connection:
        if self._connector is not None:
            return self._connector(start)
        from tmuxish.client.autostart import connect

        assert self.socket_path is not None
        return connect(self.socket_path, start=start)

    def connection(self, start: bool = False) -> Connection:
        """The control connection, opened if needed (with ``start``: start a server if none)."""
        if self._conn is None:
            self._conn = self._open(start and self.autostart)
        return self._conn

    @property
    def server_info(self) -> dict[str, Any]:
        """What the server said in its HELLO (pid, software)."""
        return self.connection().server_info

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def __enter__(self) -> SyncClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(
        self, command: str, /, *, start: bool = False, timeout: float | None = -1.0, **args: Any
    ) -> Any:
        """Send one protocol request and return its result (``timeout=-1``: the client default)."""
        if "target" in args:
            args["target"] = target_id(args["target"])
        conn = self.connection(start)
        limit = self.timeout if timeout is not None and timeout < 0 else timeout
        conn.sock.settimeout(limit)
        try:
            return conn.request(command, **args)
        except ServerGone as exc:
            if isinstance(exc.__cause__, TimeoutError) and timeout is not None and timeout >= 0:
                # The caller's own deadline: the connection stays usable (the late reply is
                # recognised by its id and dropped).
                raise TimeoutError(f"{command}: no answer within {timeout:g}s") from None
            self.close()
            raise

    # -- commands --------------------------------------------------------------------------------

    def new(
        self,
        command: str | Sequence[str] | None = None,
        *,
        name: str | None = None,
        cwd: SocketPath | None = None,
        cols: int = 80,
        rows: int = 24,
        env: Mapping[str, str] | None = None,
        inherit_env: bool = True,
        window_size: str | None = None,
    ) -> SessionHandle:
        """Start a detached session (and the server, if none runs); see ``new_args``. The
        ``SessionInfo`` returned is a handle with the session's methods (``client/handle.py``)."""
        from tmuxish.client.handle import SessionHandle

        args = new_args(
            command,
            name=name,
            cwd=cwd,
            cols=cols,
            rows=rows,
            env=env,
            inherit_env=inherit_env,
            window_size=window_size,
        )
        return SessionHandle.bind(
            SessionInfo.from_dict(self.request("new", start=True, **args)), self
        )

    def sessions(self) -> list[SessionInfo]:
        """Every session, by id; empty when no server runs."""
        try:
            raw = self.request("ls")
        except ServerNotRunning:
            return []
        return [SessionInfo.from_dict(s) for s in raw]

    def get(self, target: Target | None = None) -> SessionInfo:
        """One session (None: the most recently used)."""
        return SessionInfo.from_dict(self.request("get", target=target))

    def kill(self, target: Target, signal: str | int = "HUP") -> SessionInfo:
        """Send ``signal`` (name like "TERM"/"SIGTERM", or number) to the session's program."""
        return SessionInfo.from_dict(self.request("kill", target=target, signal=signal))

    def rm(self, target: Target, force: bool = False) -> SessionInfo:
        """Forget an exited session (``force``: hang up a running one first)."""
        return SessionInfo.from_dict(self.request("rm", target=target, force=force))

    def rename(self, target: Target, name: str) -> SessionInfo:
        return SessionInfo.from_dict(self.request("rename", target=target, name=name))

    def send(self, target: Target, keys: Keys, *, literal: bool = False) -> Sent:
        """Type into a session: bytes as-is, a str as text, a list of key names like tmux
        ``send-keys`` (``["make", "Enter"]``; ``literal`` sends the list as text). Returns the
        number of bytes sent, an int whose ``since`` is the output position at the send (pass it
        to ``wait_for_text(..., since=)``)."""
        from tmuxish.client.run import sent_from_reply

        reply = self.request("send", target=target, mark=True, **send_args(keys, literal))
        return sent_from_reply(reply)

    def capture(
        self, target: Target | None = None, history: bool = False, escapes: bool = False
    ) -> str:
        """The session's screen as text (``history``: with scrollback; ``escapes``: colours)."""
        text: str = self.request("capture", target=target, history=history, escapes=escapes)
        return text

    def wait(self, target: Target, timeout: float | None = None) -> int:
        """Block until the program exits; its exit code. TimeoutError after ``timeout``.

        Survives `tmuxish server upgrade`: the session lives on in the new server, so this
        connects to it and keeps waiting.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                return int(self.request("wait", target=target, timeout=left))
            except ServerUpgrading:
                self._reconnect_after_upgrade()

    def _reconnect_after_upgrade(self) -> None:
        self.close()
        deadline = time.monotonic() + UPGRADE_TIMEOUT
        while True:
            try:
                self.connection()
                return
            except (ServerNotRunning, ServerUpgrading):
                if time.monotonic() > deadline:
                    raise
            time.sleep(0.05)

    def resize(self, target: Target, cols: int, rows: int) -> SessionInfo:
        return SessionInfo.from_dict(self.request("resize", target=target, cols=cols, rows=rows))

    def kill_server(self) -> None:
        """Stop the server and every session; returns once the server has closed."""
        try:
            conn = self.connection()
        except ServerNotRunning:
            return
        self.request("kill-server")
        try:
            while True:
                conn.recv()
        except TmuxishError:
            pass
        self.close()

    def attach(
        self,
        target: Target | None = None,
        *,
        cols: int = 0,
        rows: int = 0,
        readonly: bool = False,
        history: int = 0,
        repaint: bool = True,
    ) -> SyncAttachStream:
        """Attach on a connection of its own. ``cols``/``rows`` of 0 leave the size alone;
        ``history`` lines of scrollback precede the repaint; ``repaint=False`` skips both."""
        conn = self._open(False)
        target = target_id(target)
        try:
            conn.sock.settimeout(self.timeout)
            info = conn.request("attach", **attach_args(target, cols, rows, readonly, history))
        except BaseException:
            conn.close()
            raise
        session, initial, reset = split_attach_reply(info)
        return SyncAttachStream(conn, session, initial if repaint else b"", reset)

    def wait_for_text(
        self,
        target: Target,
        pattern: Pattern,
        timeout: float = DEFAULT_TIMEOUT,
        *,
        history: bool = False,
        since: int | None = None,
    ) -> re.Match[str]:
        """Wait until ``pattern`` matches the session's screen (``history``: or its scrollback).

        A str pattern is compiled with ``re.MULTILINE`` so ``^``/``$`` match screen lines. Watches
        the output through a read-only attachment and re-checks the screen after each chunk: no
        polling delay, no sleeps. Raises TimeoutError, or SessionExited if the program exits first.

        ``since`` (what ``send`` returned): match only in the output produced after that send, as
        text (escape sequences dropped, line ends as ``\\n``), never in what was there before.
        """
        if since is not None:
            return self._wait_for_output(target, pattern, timeout, since)
        target = target_id(target)
        regex = compile_pattern(pattern)
        deadline = time.monotonic() + timeout
        stream: SyncAttachStream | None = None
        sid: Target = target
        try:
            try:
                stream = self.attach(target, readonly=True, repaint=False)
                sid = stream.session.id
            except SessionNotFound:
                raise
            except TmuxishError:
                stream = None  # already exited: the screen as it is decides
            while True:
                text = self.capture(sid, history=history)
                match = regex.search(text)
                if match:
                    return match
                if stream is None or stream.ended:
                    raise exited_error(regex, target)
                try:
                    stream.read(max(0.0, deadline - time.monotonic()))
                except TimeoutError:
                    raise timeout_error(regex, target, timeout, text) from None
        finally:
            if stream is not None:
                stream.close()

    expect = wait_for_text

    def _watch(self, target: Target, since: int) -> SyncAttachStream:
        """A read-only attachment whose first output is everything after output position
        ``since``."""
        conn = self._open(False)
        try:
            conn.sock.settimeout(self.timeout)
            info = conn.request("watch", target=target_id(target), since=since)
        except BaseException:
            conn.close()
            raise
        session, initial, reset = split_attach_reply(info)
        return SyncAttachStream(conn, session, initial, reset)

    def _wait_for_output(
        self, target: Target, pattern: Pattern, timeout: float, since: int
    ) -> re.Match[str]:
        from tmuxish.client.run import OutputText, since_position

        regex = compile_pattern(pattern)
        position = since_position(since)
        assert position is not None
        deadline = time.monotonic() + timeout
        text = OutputText()
        with self._watch(target, position) as stream:
            while True:
                try:
                    chunk = stream.read(max(0.0, deadline - time.monotonic()))
                except TimeoutError:
                    raise timeout_error(regex, target, timeout, text.text) from None
                if chunk is None:
                    raise exited_error(regex, target)
                match = regex.search(text.add(chunk))
                if match:
                    return match

    def wait_idle(
        self, target: Target, *, quiet: float = 0.5, timeout: float = DEFAULT_TIMEOUT
    ) -> None:
        """Wait until the session has printed nothing for ``quiet`` seconds; TimeoutError if it
        is still printing after ``timeout``, SessionExited if it exits."""
        from tmuxish.errors import SessionExited

        deadline = time.monotonic() + timeout
        with self.attach(target, readonly=True, repaint=False) as stream:
            last = time.monotonic()
            while True:
                now = time.monotonic()
                if now - last >= quiet:
                    return
                if now >= deadline:
                    raise TimeoutError(
                        f"session {target_id(target)} was still printing after {timeout:g}s"
                    )
                try:
                    chunk = stream.read(min(quiet - (now - last), deadline - now))
                except TimeoutError:
                    continue
                if chunk is None:
                    raise SessionExited(f"session {target_id(target)} exited")
                last = time.monotonic()

    def wait_for_prompt(self, target: Target, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        """Wait until the session's shell shows its prompt (from its OSC 133 marks: bash and
        zsh started by tmuxish have them); for other shells, until no ``run`` is pending and no
        command holds the terminal."""
        try:
            # The server gives up at the timeout; the client waits a little longer for that.
            shown = self.request("prompt", target=target, timeout=timeout + 5.0, within=timeout)
        except TimeoutError:
            shown = False
        if not shown:
            raise TimeoutError(f"session {target_id(target)} showed no prompt within {timeout:g}s")

    def run(
        self,
        target: Target | None,
        command: str | Sequence[str],
        *,
        timeout: float | None = None,
        input: bytes | str | None = None,
        output: OutputSink | None = None,
        raw: bool = False,
    ) -> RunResult:
        """Type ``command`` into the session's shell and wait until the shell says it finished.

        A list of words is joined with spaces into the line the shell reads (as ``ssh host
        COMMAND...``). What the command printed (not the prompt, not the echo) goes to
        ``output`` as it arrives, or into ``RunResult.output``; terminal line ends become
        ``\\n`` unless ``raw``. ``input`` is typed once the command has started. The shell's
        state (cwd, variables, an activated venv) stays for the next ``run``.

        Raises ``CommandTimeout`` after ``timeout`` (the command goes on; the session is kept)
        and ``SessionBusy`` if the shell is still running a command.
        """
        from tmuxish.client.run import run_result
        from tmuxish.client.runstream import converse, run_args

        args = run_args(target_id(target), command, timeout, input)
        chunks: list[bytes] = []
        conn = self._open(False)
        try:
            sink = output if output is not None else chunks.append
            result = converse(conn, args, sink, raw, reopen=lambda: self._open(False))
        finally:
            conn.close()
        return run_result(result, b"".join(chunks), target, timeout)

    def events(self) -> Iterator[dict[str, Any]]:
        """What happens on the server, as it happens (``tmuxish events``): dicts with ``type``
        (session-created, session-exited, session-renamed, session-removed, client-attached,
        client-detached, bell, title, command-finished), ``session``, ``name``, ``time`` and
        the type's own fields. Runs until the server goes away; follows a server upgrade and a
        crash its keeper recovers from, yielding a ``stream-reconnected`` event (``cause``:
        upgrade or crash) there, since events in the gap may be missing."""
        from tmuxish.client import core

        while True:
            conn = self._open(False)
            try:
                conn.sock.settimeout(None)
                conn.send_request("events", {})
                while True:
                    message = conn.recv()
                    if message[0] == protocol.EVENT and message[1] == "tmuxish":
                        yield dict(message[2])
                    else:
                        core.Requests.answer(message)  # raises what ends the stream
            except ServerUpgrading:
                cause = "upgrade"
            except ServerGone:
                if not core.server_may_return(self.socket_path):
                    return  # the server stopped: the stream ends
                cause = "crash"
            finally:
                conn.close()
            self._reconnect_after_upgrade()
            yield core.reconnected_event(cause)
