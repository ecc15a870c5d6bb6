"""How far one browser tab may fall behind: output is queued for it only while what it has not
yet acknowledged stays under a limit. Past the limit the tab is *behind*: its output is dropped
(the program and the other clients never wait for it), and once it has written everything it
was sent it gets one repaint of the screen instead. Pure: no sockets, no clock."""

from __future__ import annotations

from collections import deque

#: About how far (bytes sent or queued but not yet written by the page) a tab may fall behind.
DEFAULT_LIMIT = 1 << 20


class FlowWindow:
    def __init__(self, limit: int = DEFAULT_LIMIT) -> None:
        self.limit = limit
        #: Output bytes handed to the WebSocket so far.
        self.sent = 0
        #: Output bytes the page says its terminal has written.
        self.acked = 0
        self.behind = False
        #: Bytes dropped while behind, for the record.
        self.dropped = 0
        self._queue: deque[bytes] = deque()
        self._queued = 0

    @property
    def in_flight(self) -> int:
        """Bytes the tab owes us an acknowledgement for, queued ones included."""
        return self.sent - self.acked + self._queued

    @property
    def queued(self) -> int:
        return self._queued

    def offer(self, chunk: bytes) -> None:
        """New output for the tab: queued, or dropped (and the tab marked behind)."""
        if self.behind:
            self.dropped += len(chunk)
            return
        if self.in_flight + len(chunk) > self.limit:
            self.behind = True
            self.dropped += self._queued + len(chunk)
            self._queue.clear()
            self._queued = 0
            return
        self._queue.append(chunk)
        self._queued += len(chunk)

    def take(self, most: int) -> bytes:
        """Up to ``most`` queued bytes to send now (counted as sent); b"" if none."""
        parts: list[bytes] = []
        size = 0
        while self._queue and size < most:
            chunk = self._queue.popleft()
            room = most - size
            if len(chunk) > room:
                self._queue.appendleft(chunk[room:])
                chunk = chunk[:room]
            parts.append(chunk)
            size += len(chunk)
        self._queued -= size
        self.sent += size
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def ack(self, written: int) -> None:
        """The page has written ``written`` bytes in all; ValueError if it claims more than sent."""
        if written > self.sent:
            raise ValueError("acknowledged more output than was sent")
        self.acked = max(self.acked, written)

    @property
    def caught_up(self) -> bool:
        """Behind, and the page has written everything it was sent: time for the repaint."""
        return self.behind and self.acked == self.sent

    def resume(self, repaint: bytes) -> None:
        """Leave the behind state with ``repaint`` as the next output."""
        self.behind = False
        self._queue.clear()
        self._queue.append(repaint)
        self._queued = len(repaint)
