"""Screen snapshots for the keeper (issue 13): what a session's screen and history looked like,
so that a server started after a crash repaints it as before.

Every round takes the screens whose session relayed output since their last snapshot, within a
time budget (the rest wait for the next round), never snapshotted ones first. Each snapshot is
history plus repaint, as an upgrade carries them; the link hands it to the keeper as a memfd of
its own, so a busy session costs one screen per round, not all of them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable

from tmuxish.server.session import Session

log = logging.getLogger(__name__)

#: How often a round runs (seconds), and how much loop time it may take.
INTERVAL = 2.0
BUDGET = 0.02
#: Scrollback lines in a snapshot (as an upgrade carries).
HISTORY = 5000


def screen_key(sid: int) -> str:
    return f"screen:{sid}"


class ScreenSnapshots:
    def __init__(self, hold: Callable[[str, bytes], bool]) -> None:
        #: ``hold(key, data)``: hand ``data`` to the keeper under ``key``; False if not sent.
        self._hold = hold
        #: Per session id, its relay count at its last snapshot.
        self._taken: dict[int, int] = {}

    def restored(self, sid: int) -> None:
        """The keeper holds a snapshot of ``sid`` from before a crash (taken again at once)."""
        self._taken[sid] = -1

    def forget(self, sid: int) -> None:
        self._taken.pop(sid, None)

    def round(self, sessions: Iterable[Session]) -> None:
        deadline = time.monotonic() + BUDGET
        stale = [
            s
            for s in sessions
            if s.screen is not None
            and s.screen_settled
            and self._taken.get(s.id) != s._relays  # session.py is not ours to change here
        ]
        stale.sort(key=lambda s: s.id in self._taken)
        for session in stale:
            if time.monotonic() > deadline:
                break
            self.take(session)

    def take(self, session: Session) -> None:
        assert session.screen is not None
        relays = session._relays
        try:
            data = session.screen.history(HISTORY) + session.screen.repaint()
        except Exception as exc:
            log.warning("session %d: screen not snapshotted: %s", session.id, exc)
            return
        session.schedule_compact()  # reading the history restored compressed pages
        if self._hold(screen_key(session.id), data):
            self._taken[session.id] = relays
