"""The server's event stream, as ``docker events``: what happens to sessions, to every
connection that asked with an ``events`` request.

An ``events`` request is never answered: from then on the connection receives
``[EVENT, "tmuxish", {"type": TYPE, "session": id, "name": name, "time": ISO 8601, ...}]``
until it closes. TYPEs: ``session-created``, ``session-exited`` (``exit_code``, None if unknown),
``session-renamed`` (``old_name``), ``session-removed``, ``client-attached`` and
``client-detached`` (``clients``: how many are attached now), ``bell``, ``title`` (``title``),
``command-finished`` (``exit_code``, ``duration`` in seconds: from the shell's OSC 133 marks).
A subscriber that stops reading is dropped once ``BACKLOG_CAP`` bytes wait for it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from tmuxish import protocol

if TYPE_CHECKING:
    from tmuxish.server.connection import Connection
    from tmuxish.server.daemon import Server
    from tmuxish.server.session import Session
    from tmuxish.server.shellhook import Listener

#: The EVENT name every event of the stream carries (its type is in the data).
EVENT_NAME = "tmuxish"
BACKLOG_CAP = 4 * 1024 * 1024


class EventHub:
    def __init__(self) -> None:
        self._subscribers: list[Connection] = []

    def subscribe(self, conn: Connection) -> None:
        self._subscribers.append(conn)

    def emit(self, kind: str, session: Session, data: dict[str, Any] | None = None) -> None:
        if not self._subscribers:
            return
        event = {
            "type": kind,
            "session": session.id,
            "name": session.name,
            "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
            **(data or {}),
        }
        frame = protocol.event(EVENT_NAME, event)
        for conn in list(self._subscribers):
            transport = conn.transport
            if conn.closed or transport is None:
                self._subscribers.remove(conn)
                continue
            if transport.get_write_buffer_size() > BACKLOG_CAP:
                self._subscribers.remove(conn)
                conn.send_frame(protocol.error(None, "error", "events: stopped reading"))
                continue
            conn.send_frame(frame)

    def listener(self, session: Session) -> Listener:
        """What a session's shell tracker calls with what it saw in the output."""
        return lambda kind, data: self.emit(kind, session, data)


def install(server: Server) -> None:
    events = server.events

    def subscribe(conn: Connection, args: dict[str, Any]) -> Any:
        import asyncio

        events.subscribe(conn)
        # Never answered: the connection is an event stream until it closes.
        return asyncio.get_running_loop().create_future()

    server.handlers["events"] = subscribe
