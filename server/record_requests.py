"""The `record` and `record-stop` requests, and `new`'s record option: which session records where.

A recording lives in the server, not in the client that asked for it: it goes on after that
client exits and ends with ``record-stop`` or when the session ends (a v3 file then gets the
exit code). Across a server upgrade or crash it goes on: the state (or the keeper's record)
carries it and ``resume`` appends.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shlex
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from tmuxish.asciicast import DEFAULT_FORMAT, FORMATS
from tmuxish.errors import BadRequest, TmuxishError
from tmuxish.server.recording import FLUSH_TIMEOUT, Recording

if TYPE_CHECKING:
    from tmuxish.server.connection import Connection
    from tmuxish.server.daemon import Server
    from tmuxish.server.session import Session

log = logging.getLogger(__name__)


def _options(args: Mapping[str, Any], keys: tuple[str, str, str]) -> tuple[str, str, bool]:
    """(path, format, record input) from a request's ``keys`` for them, checked."""
    path = args.get(keys[0])
    if not isinstance(path, str) or not path:
        raise BadRequest("a recording file is required")
    if not os.path.isabs(path):
        # The server's working directory means nothing to the user: the client makes it absolute.
        raise BadRequest(f"the recording file must be an absolute path, not {path!r}")
    fmt = args.get(keys[1]) or DEFAULT_FORMAT
    if fmt not in FORMATS:
        raise BadRequest(f"unknown recording format {fmt!r} (one of {', '.join(FORMATS)})")
    return path, fmt, bool(args.get(keys[2]))


def start(
    session: Session,
    path: str,
    fmt: str,
    record_input: bool,
    term: str | None,
    env: Mapping[str, str] | None = None,
) -> Recording:
    """Start recording ``session`` into ``path``; the current screen is the first event.

    Call with the screen model settled and no await between this and the output it must not miss.
    """
    if not session.running or session.fd is None:
        raise TmuxishError(f"session {session.id} has exited; there is nothing to record")
    if session.recording is not None:
        raise BadRequest(
            f"session {session.id} is already recording to {session.recording.path}; "
            f"'tmuxish record --stop {session.id}' ends that"
        )
    first = b""
    if session.screen is not None:
        try:
            first = session.screen.repaint()
        except Exception as exc:
            log.warning("session %d: no repaint for the recording: %s", session.id, exc)
    shell = (env or {}).get("SHELL")
    try:
        rec = Recording(
            path,
            session.cols,
            session.rows,
            fmt=fmt,
            record_input=record_input,
            term=term,
            title=session.name,
            command=shlex.join(session.command),
            env={"SHELL": shell} if shell else None,
            first=first,
        )
    except OSError as exc:
        raise BadRequest(f"cannot record to {path}: {exc.strerror or exc}") from exc
    _attach(session, rec)
    log.info("session %d: recording to %s (%s)", session.id, path, fmt)
    return rec


def _attach(session: Session, rec: Recording) -> None:
    """Make ``rec`` the session's recording until it is stopped or the session ends."""
    session.recording = rec
    session.extra["recording"] = rec.path  # in `ls --json`, as "log" is

    def session_ended() -> None:
        if session.recording is rec:
            _detach(session)
            rec.close(session.exit_code)

    session.cleanup.append(session_ended)


def _detach(session: Session) -> None:
    session.recording = None
    session.extra.pop("recording", None)


def resume(session: Session, state: Mapping[str, Any] | None) -> None:
    """After a server upgrade or crash: go on appending to the recording the previous server
    wrote (None: it had failed, so it is not carried on)."""
    if state is None:
        _detach(session)
        return
    try:
        rec = Recording(
            state["path"],
            int(state["cols"]),
            int(state["rows"]),
            fmt=state["format"],
            record_input=bool(state["input"]),
            resume=state,
        )
    except (OSError, KeyError, ValueError, TypeError) as exc:
        log.warning("session %d: recording not resumed: %s", session.id, exc)
        _detach(session)
        return
    _attach(session, rec)


def stop(session: Session) -> Recording:
    rec = session.recording
    if rec is None:
        raise BadRequest(f"session {session.id} is not being recorded")
    _detach(session)
    rec.close()
    return rec


def start_for_new(session: Session, args: Mapping[str, Any], env: Mapping[str, str]) -> None:
    """`new --record FILE`: record from the program's first byte (no screen to repaint yet)."""
    path, fmt, record_input = _options(args, ("record", "record_format", "record_input"))
    start(session, path, fmt, record_input, env.get("TERM"), env)


def _describe(rec: Recording) -> dict[str, Any]:
    return {
        "path": rec.path,
        "format": rec.format,
        "input": rec.record_input,
        "written": rec.written,
        "dropped": rec.dropped_total,
        "error": rec.failed,
    }


class RecordRequests:
    def __init__(self, server: Server) -> None:
        self.server = server

    async def record(self, conn: Connection, args: dict[str, Any]) -> dict[str, Any]:
        session = self.server.registry.get(args.get("target"))
        path, fmt, record_input = _options(args, ("path", "format", "input"))
        term = args.get("term") if isinstance(args.get("term"), str) else None
        if not session.screen_settled and session.running:
            # The screen model is behind what clients were sent: hold the PTY until it has
            # caught up, so the repaint and the first recorded output meet exactly.
            await session.quiesce()
            try:
                rec = start(session, path, fmt, record_input, term)
            finally:
                session.release()
        else:
            rec = start(session, path, fmt, record_input, term)
        self._tell_keeper()
        return {**session.info(), "recording": _describe(rec)}

    def _tell_keeper(self) -> None:
        """The keeper's record says at once whether the session records: a crash right after
        the reply neither ends a recording nor brings a stopped one back."""
        if self.server.keeper is not None:
            self.server.keeper.sync()

    async def record_stop(self, conn: Connection, args: dict[str, Any]) -> dict[str, Any]:
        session = self.server.registry.get(args.get("target"))
        rec = stop(session)
        self._tell_keeper()
        # Reply once the file is complete, so `record --stop; asciinema play FILE` just works.
        await asyncio.to_thread(rec.join, FLUSH_TIMEOUT)
        return {**session.info(), "recording": _describe(rec)}


def install(server: Server) -> None:
    r = RecordRequests(server)
    server.handlers.update({"record": r.record, "record-stop": r.record_stop})
