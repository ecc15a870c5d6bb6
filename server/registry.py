"""The server's sessions: ids, names, and how a user's target string finds one."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

from tmuxish.errors import BadRequest, NameInUse, SessionNotFound
from tmuxish.server.session import Session

_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.@+-]{0,63}$")


def validate_name(name: str) -> str:
    """Names may not look like ids, so a target is never ambiguous."""
    if not _NAME_RE.match(name):
        raise BadRequest(
            f"invalid session name {name!r}: use letters, digits, '_', '.', '-', '@' or '+', "
            "starting with a letter or '_' (at most 64)"
        )
    return name


class Registry:
    def __init__(self, next_id: int = 1) -> None:
        self._sessions: dict[int, Session] = {}
        self._by_name: dict[str, Session] = {}
        self.next_id = next_id
        #: Told of additions, removals and renames (the event stream, server/events.py).
        self.on_change: Callable[[str, Session, dict[str, Any]], None] | None = None

    def __iter__(self) -> Iterator[Session]:
        return iter(sorted(self._sessions.values(), key=lambda s: s.id))

    def __len__(self) -> int:
        return len(self._sessions)

    def allocate_id(self) -> int:
        sid = self.next_id
        self.next_id += 1
        return sid

    def check_name(self, name: str | None) -> None:
        if name is None:
            return
        validate_name(name)
        holder = self._by_name.get(name)
        if holder is not None and holder.running:
            raise NameInUse(f"a session named {name!r} already exists")

    def _take_name(self, name: str, session: Session) -> None:
        """Give ``name`` to ``session``; an exited session holding it gives it up (issue 14:
        `new -s calc` after an exited calc), and stays listed under its id."""
        holder = self._by_name.get(name)
        if holder is not None and holder is not session:
            holder.name = None
        self._by_name[name] = session

    def unique_name(self, base: str) -> str:
        """``base``, or ``base-2``, ``base-3``... whichever is free (console-socket sessions)."""
        if base not in self._by_name:
            return base
        n = 2
        while f"{base}-{n}" in self._by_name:
            n += 1
        return f"{base}-{n}"

    def add(self, session: Session) -> None:
        self.check_name(session.name)
        self._sessions[session.id] = session
        if session.name is not None:
            self._take_name(session.name, session)
        if self.on_change is not None:
            self.on_change("session-created", session, {"command": session.command})

    def remove(self, session: Session) -> None:
        self._sessions.pop(session.id, None)
        if session.name is not None and self._by_name.get(session.name) is session:
            del self._by_name[session.name]
        if self.on_change is not None:
            self.on_change("session-removed", session, {})

    def rename(self, session: Session, name: str) -> None:
        if session.name == name:
            return
        self.check_name(name)
        if session.name is not None:
            self._by_name.pop(session.name, None)
        old, session.name = session.name, name
        self._take_name(name, session)
        if self.on_change is not None:
            self.on_change("session-renamed", session, {"old_name": old})

    def get(self, target: str | int | None) -> Session:
        if target is None:
            return self.most_recent()
        # "" is no name (a script's unset variable must not mean "the most recent session"),
        # and only ASCII digits are an id: superscripts and Arabic-Indic digits
        # are digits to str.isdigit too.
        if isinstance(target, int) or (
            isinstance(target, str) and target.isascii() and target.isdigit()
        ):
            session = self._sessions.get(int(target))
            if session is None:
                raise SessionNotFound(f"no session {target}")
            return session
        session = self._by_name.get(target)
        if session is None:
            raise SessionNotFound(f"no session named {target!r}")
        return session

    def most_recent(self) -> Session:
        """The most recently used session, preferring running ones."""
        if not self._sessions:
            raise SessionNotFound("no sessions")
        return max(self._sessions.values(), key=lambda s: (s.running, s.last_used, s.id))
