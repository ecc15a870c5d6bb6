"""Running a command in a session's shell, and the requests built on the shell marks.

``run``: type a command line into the session's shell and stream, on the requesting connection,
what the command printed (``[OUTPUT, data]`` frames) until the shell says it finished; the reply
then carries the exit status. The output window is cut by OSC 133 marks (server/shellhook.py):

- a shell started with the integration (bash, zsh) marks C before the command runs and
  D;STATUS after it; the line is typed as given, so it lands in the shell's history as is. Its
  continuation prompt carries ``A;k=s``: a line the shell finds incomplete (an open quote) is
  cancelled with Ctrl-C and the run ends with 2, instead of waiting for a next line that the
  next run would supply by accident; a new prompt before C means the line held no command;
- any other shell gets the line wrapped (with an INT trap around it, see ``fallback_line``) as
  ``__tmuxish_c='LINE'; printf '\\033]133;C;tmuxish=T\\007'; command eval "$__tmuxish_c";
  printf '\\033]133;D;%s;tmuxish=T\\007' "$?"``: the marks carry a real ESC byte, which the echo
  of the typed line cannot contain (it shows the four characters ``\\033``), and a token no
  other output has.

A session runs one command at a time: ``run`` while a command is still running (one typed by
someone, or a previous run that timed out) fails with ``session-busy``.

``watch``: a read-only attachment whose first output is what the session printed after a
``since`` mark (the output position ``send`` returned); ``prompt``: wait until the shell is at
its prompt; ``send`` with ``mark``: also return the output position at the time of the send.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from tmuxish import protocol
from tmuxish.errors import BadRequest, SessionBusy, SessionExited, TmuxishError
from tmuxish.server.attachment import ClientAttachment
from tmuxish.server.commandline import (
    LINE_SAFE,
    LineCancel,
    editor_reads,
    fallback_line,
    traps_file,
)
from tmuxish.server.policy import ClientSize
from tmuxish.server.shellhook import Mark, MarkScanner

if TYPE_CHECKING:
    from tmuxish.server.connection import Connection
    from tmuxish.server.daemon import Server
    from tmuxish.server.session import Session

#: How often ``prompt`` looks whether a job still holds the terminal of a shell without marks.
JOB_POLL = 0.02
#: Output a run may queue for a client that does not read before the run is cut off.
STREAM_CAP = 64 * 1024 * 1024


class CommandRun:
    """A session client that passes on only the output between its C and D marks."""

    readonly = True
    attached_in_alt = False
    counted = False  # not a CLIENT in `ls`, no client-attached event

    def __init__(
        self, conn: Connection, session: Session, token: str | None, stdin: bytes, typed: bool
    ) -> None:
        self.conn = conn
        self.session = session
        #: The C and D marks that are this run's carry it (None: any).
        self.token = token
        #: The line was typed as is to an integrated shell (not wrapped).
        self.typed = typed
        #: Followed again on a new server: its C may have gone with the old one.
        self.resumed = False
        #: Called when the command starts (the keeper is told soon).
        self.on_start: Callable[[], None] | None = None
        self.stdin = stdin
        self.behind = False
        self.size = ClientSize(0, 0, 0.0, True)
        self.started = False
        self._t0 = 0.0
        self._scanner = MarkScanner()
        #: The shell found the line incomplete; the run ends once it is back at a prompt.
        self.cancel: LineCancel | None = None
        self.result: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()

    def begun_at(self, wall: float) -> None:
        """The command started at wall-clock time ``wall`` (on an earlier server)."""
        if self.started and wall:
            self._t0 = time.monotonic() - max(0.0, time.time() - wall)

    def _ours(self, mark: Mark) -> bool:
        return self.token is None or mark.param("tmuxish") == self.token

    def send_output(self, header: bytes, data: bytes) -> None:
        if self.result.done():
            return
        for piece in self._scanner.feed(data):
            if self.result.done():
                return
            if self.cancel is not None:
                self.cancel.heard(
                    isinstance(piece, Mark) and piece.kind == "A" and self._ours(piece)
                )
            elif isinstance(piece, Mark) and not self._ours(piece):
                if self.started:
                    self._forward(piece.raw)  # the command's output, marks of its own and all
            elif isinstance(piece, Mark):
                if not self.started and piece.kind == "A" and self.typed:
                    self._prompt_first(piece)
                elif not self.started and piece.kind == "C":
                    self.started = True
                    self._t0 = time.monotonic()
                    if self.stdin:
                        self.session.write_input(self.stdin)
                    if self.on_start is not None:
                        self.on_start()
                elif (self.started or self.resumed) and piece.kind == "D":
                    self._done({"exit_code": piece.status})
                    return
            elif self.started and piece:
                self._forward(piece)

    def _forward(self, data: bytes) -> None:
        backlog = self.conn.write_stream(protocol.output_header(len(data)), data)
        if backlog > STREAM_CAP:
            self._fail(TmuxishError("run: the client stopped reading its output"))

    def _prompt_first(self, mark: Mark) -> None:
        """An integrated shell prompted before the command started. A continuation prompt: the
        line is incomplete (an open quote, ``if`` without ``fi``, a here-document), so it is
        cancelled rather than left for the next run to complete by accident. A new primary
        prompt: the line held no command (a comment)."""
        if mark.continuation:
            self.cancel = LineCancel(self.session, self._incomplete)
        else:
            self._done({"exit_code": 0})

    def _incomplete(self) -> None:
        self._done({"exit_code": 2, "incomplete": True})

    def _done(self, result: dict[str, Any]) -> None:
        if self.cancel is not None:
            self.cancel.stop()
        if not self.result.done():
            result["duration"] = round(time.monotonic() - self._t0, 6) if self.started else 0.0
            self.result.set_result(result)

    def _fail(self, exc: TmuxishError) -> None:
        if not self.result.done():
            self.result.set_exception(exc)

    def send_frame(self, frame: bytes) -> None:
        """Repaints and notices are for terminals, not for a command's output."""

    def session_exited(self, code: int | None) -> None:
        self._done({"exit_code": code, "session_exited": True})

    def pause_input(self) -> None:
        pass

    def resume_input(self) -> None:
        pass

    def writing(self, behind: bool) -> None:
        self.behind = behind
        self.session.client_behind_changed()


def _number(args: dict[str, Any], key: str) -> float | None:
    value = args.get(key)
    if value is None:
        return None
    if type(value) not in (int, float) or not value >= 0:  # nan too
        raise BadRequest(f"{key} must be a non-negative number")
    return float(value)


class ShellRequests:
    def __init__(self, server: Server) -> None:
        self.server = server
        #: Sessions whose traps file is removed with them (see ``traps_file``).
        self._traps_cleaned: set[int] = set()

    def _session(self, args: dict[str, Any]) -> Session:
        return self.server.registry.get(args.get("target"))

    async def run(self, conn: Connection, args: dict[str, Any]) -> dict[str, Any]:
        session = self._session(args)
        command = args.get("command")
        if not isinstance(command, str) or not command.strip():
            raise BadRequest("run needs a non-empty command line")
        timeout = _number(args, "timeout")
        stdin = args.get("input") or b""
        if not isinstance(stdin, bytes):
            raise BadRequest("input must be bytes")
        if not session.running:
            raise SessionExited(f"session {session.id} has exited ({session.exit_text})")
        tracker = session.shell
        self._check_idle(session)
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        integrated = bool(session.extra.get("shell_integration")) and not any(
            c in command for c in "\r\n"
        )
        if integrated and not tracker.at_prompt:
            # Just started: the shell has not drawn its first prompt yet.
            left = None if deadline is None else deadline - loop.time()
            if not await _until_idle(session, True, left):
                return {
                    "exit_code": None,
                    "timed_out": True,
                    "duration": 0.0,
                    "session": session.id,
                }
            self._check_idle(session)
        if (
            integrated
            and len(command.encode("utf-8", "surrogateescape")) > LINE_SAFE
            and not await editor_reads(session, deadline)
        ):
            integrated = False  # typed whole into line mode, it would be cut: in pieces instead
        wrap_token = None if integrated else secrets.token_hex(8)
        run = CommandRun(conn, session, wrap_token or tracker.mark_token, stdin, integrated)
        run_id = secrets.token_hex(8)
        tracker.runs.begin(run_id, run.token, integrated)
        conn.send_frame(protocol.run_event(run_id, session.id))
        # The keeper keeps the ledger too: a crash now must not lose which run this is.
        self._record(session)
        run.on_start = lambda: self._record(session)  # and whether its C came
        self._register(conn, session, run)
        try:
            if wrap_token is None:
                line = command + "\r"
            else:
                tracker.pending_token = wrap_token
                saved = traps_file(self.server, session, self._traps_cleaned)
                line = fallback_line(command, wrap_token, saved)
            session.write_input(line.encode("utf-8", "surrogateescape"))
        except BaseException:
            self._unregister(conn, session, run)
            raise
        return await self._result(conn, session, run, run_id, deadline, timeout)

    async def follow(self, conn: Connection, args: dict[str, Any]) -> dict[str, Any]:
        """``run-follow``: the client of a run whose server went away (an upgrade, a crash)
        follows the same command on this one."""
        session = self._session(args)
        run_id = args.get("id")
        if not isinstance(run_id, str):
            raise BadRequest("run-follow needs the id of the run")
        timeout = _number(args, "timeout")
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        ledger = session.shell.runs
        ended = ledger.results.pop(run_id, None)
        if ended is not None:
            return {**ended, "session": session.id}
        current = ledger.current
        if current is None or current["id"] != run_id:
            if not session.running:
                return {
                    "exit_code": session.exit_code,
                    "session_exited": True,
                    "duration": 0.0,
                    "session": session.id,
                }
            raise TmuxishError(
                f"the server lost track of the command in session {session.id} (it restarted "
                "before it was told of it); the command may still run there"
            )
        if session.shell.run is not None:
            raise SessionBusy(f"another client follows the command in session {session.id}")
        run = CommandRun(conn, session, current["token"], b"", current["typed"])
        if ledger.backlog is not None:
            # What the command printed since this server took over, then the live output.
            run.started = ledger.resume_started
            kept = ledger.take_backlog()
        else:
            run.started = current["started"]
            kept = b""
        run.resumed = True
        run.begun_at(current["started_at"])
        self._register(conn, session, run)
        if kept:
            run.send_output(b"", kept)
        return await self._result(conn, session, run, run_id, deadline, timeout)

    def _record(self, session: Session) -> None:
        if self.server.keeper is not None:
            self.server.keeper.record_now(session)

    @staticmethod
    def _register(conn: Connection, session: Session, run: CommandRun) -> None:
        session.shell.run = run
        session.clients.append(run)
        conn.writing_watchers.append(run.writing)
        session.client_behind_changed()

    @staticmethod
    def _unregister(conn: Connection, session: Session, run: CommandRun) -> None:
        session.shell.run = None
        if run.writing in conn.writing_watchers:
            conn.writing_watchers.remove(run.writing)
        if run in session.clients:
            # Not session.detach: a run is no attached client (no size, no event).
            session.clients.remove(run)
            session.client_behind_changed()

    async def _result(
        self,
        conn: Connection,
        session: Session,
        run: CommandRun,
        run_id: str,
        deadline: float | None,
        timeout: float | None,
    ) -> dict[str, Any]:
        """Wait for ``run`` to end (or ``deadline``), then unregister it."""
        loop = asyncio.get_running_loop()
        try:
            left = None if deadline is None else max(0.0, deadline - loop.time())
            try:
                result = await asyncio.wait_for(asyncio.shield(run.result), left)
            except TimeoutError:
                return {
                    "exit_code": None,
                    "timed_out": True,
                    "duration": timeout,
                    "session": session.id,
                }
            except asyncio.CancelledError:
                # The client went away (killed, its output pipe closed): like ssh's remote
                # command, the command is interrupted rather than left running unwatched. Not
                # when the server closed the connection for an upgrade: the command goes on,
                # and the client follows it on the next server.
                if not run.result.done() and session.running and not conn.upgrading:
                    session.write_input(b"\x03")
                raise
            session.shell.runs.end(run_id)
            result["session"] = session.id
            return result
        finally:
            self._unregister(conn, session, run)

    @staticmethod
    def _check_idle(session: Session) -> None:
        if session.shell.busy or session.job_in_foreground():
            raise SessionBusy(
                f"session {session.id} is still running a command; wait for it to finish, "
                f"interrupt it ('tmuxish send {session.id} C-c'), or run in another session"
            )

    async def prompt(self, conn: Connection, args: dict[str, Any]) -> bool:
        session = self._session(args)
        if not session.running:
            raise SessionExited(f"session {session.id} has exited ({session.exit_text})")
        within = _number(args, "within")
        loop = asyncio.get_running_loop()
        deadline = None if within is None else loop.time() + within
        integrated = bool(session.extra.get("shell_integration"))
        if not await _until_idle(session, integrated, within):
            return False
        # Without marks, a command someone typed shows only as a job holding the terminal.
        while session.job_in_foreground():
            if (deadline is not None and loop.time() >= deadline) or not session.running:
                return False
            await asyncio.sleep(JOB_POLL)
        return True

    def watch(self, conn: Connection, args: dict[str, Any]) -> dict[str, Any]:
        session = self._session(args)
        since = args.get("since")
        if type(since) is not int or since < 0:
            raise BadRequest("since must be an output position (an integer from send)")
        if not session.running or session.fd is None:
            raise TmuxishError(f"session {session.id} has exited ({session.exit_text})")
        if conn.attachment is not None:
            raise BadRequest("this connection is already attached")
        size = ClientSize(0, 0, time.monotonic(), True)
        attached = ClientAttachment(conn, session, size, True, counted=False)
        # No repaint: what the watcher wants is the output after the mark, from the ring,
        # and then live output from the same loop step on.
        initial = session.shell.since(since)
        session.clients.append(attached)
        conn.attachment = attached
        session.client_behind_changed()
        info = session.info()
        info["initial"] = initial
        info["reset"] = b""
        info["position"] = session.shell.mark()
        return info

    def wrap_send(self, send: Any) -> Any:
        """``send`` that also answers the output position at the time of the send."""

        def send_marked(conn: Connection, args: dict[str, Any]) -> Any:
            if not args.get("mark"):
                return send(conn, args)
            session = self._session(args)
            pos = session.shell.mark()
            data = args.get("data")
            if isinstance(data, bytes) and b"\x03" in data:
                # Interrupting a wrapped run whose end marker cannot come any more (a shell
                # that dropped the line): the session is not busy with it forever.
                session.shell.pending_token = None
            result = send(conn, args)
            if isinstance(result, Awaitable):
                return _marked(result, pos)
            return {"written": result, "since": pos}

        return send_marked


async def _until_idle(session: Session, prompt: bool, timeout: float | None) -> bool:
    """Wait until the session's shell is idle (see ShellTracker.when_idle): False after
    ``timeout``; SessionExited if the session ends first."""
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()
    session.shell.when_idle(lambda: _settle(ready), prompt=prompt)
    if ready.done():
        return True
    ended = session.wait()
    waiting: set[asyncio.Future[Any]] = {ready, ended}
    try:
        await asyncio.wait(waiting, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        if ready.done():
            return True
        if ended.done():
            raise SessionExited(f"session {session.id} has exited ({session.exit_text})")
        return False
    finally:
        if ended.done():
            if not ended.cancelled():
                ended.exception()  # retrieved: a removed session's wait fails, that is all
        else:
            ended.cancel()


def _settle(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


async def _marked(pending: Awaitable[int], pos: int) -> dict[str, Any]:
    return {"written": await pending, "since": pos}


def install(server: Server) -> None:
    requests = ShellRequests(server)
    server.handlers.update(
        {
            "run": requests.run,
            "run-follow": requests.follow,
            "prompt": requests.prompt,
            "watch": requests.watch,
            "send": requests.wrap_send(server.handlers["send"]),
        }
    )
