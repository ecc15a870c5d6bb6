"""Shell integration: semantic prompt marks (OSC 133) in a session's output (the rc files that
make bash and zsh emit them are in server/shellrc.py).

The marks are those kitty, WezTerm, ghostty and iTerm2 use: ``ESC ] 133 ; A`` a prompt starts,
``B`` the prompt ends (the user types), ``C`` the command's output starts, ``D ; STATUS`` the
command finished with STATUS. They are found in the relayed bytes by a bounded scanner (no
emulator, nothing decoded): a mark cut by a read boundary is held until the next read, and a
"mark" longer than ``MAX_MARK`` bytes is not one.

A ``ShellTracker`` per session follows them: where the output stream is (a byte count, the
``since`` marks of ``expect``), the last ``RING_BYTES`` of output, whether the shell is at a
prompt or running a command, and who waits for either.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, NamedTuple

from tmuxish.server.runledger import RunLedger

OSC133 = b"\x1b]133;"
#: The longest mark accepted, terminator included; anything longer is passed on as text.
MAX_MARK = 256
#: Output kept per session for ``since`` marks (a watcher asking for older output gets less).
RING_BYTES = 256 * 1024
#: How long after the last mark was handed out (a ``send`` that returns ``since``, a watch) the
#: ring is kept. Marks are asked for right before they are used (send, then expect); keeping
#: 256-512 KiB for every session that ever printed that much cost 1000 sessions up to 500 MiB.
RING_KEEP = 120.0


class Mark(NamedTuple):
    kind: str
    params: tuple[str, ...]
    #: The mark as it came, terminator included (a mark that is not ours is passed on as is).
    raw: bytes = b""

    def param(self, key: str) -> str | None:
        """The value of a ``key=value`` parameter."""
        prefix = key + "="
        for p in self.params:
            if p.startswith(prefix):
                return p[len(prefix) :]
        return None

    @property
    def continuation(self) -> bool:
        """An A mark of a secondary prompt (``k=s``): the command line goes on."""
        return self.param("k") == "s"

    @property
    def status(self) -> int | None:
        """A D mark's exit status (None if it gave none)."""
        if self.kind != "D" or not self.params:
            return None
        try:
            return int(self.params[0])
        except ValueError:
            return None


def parse_mark(body: bytes, raw: bytes = b"") -> Mark:
    parts = body.decode("ascii", "replace").split(";")
    return Mark(parts[0][:1], tuple(parts[1:]), raw)


class MarkScanner:
    """Splits a byte stream into text pieces and marks, whatever the read boundaries."""

    def __init__(self) -> None:
        self._carry = b""

    @property
    def holding(self) -> bool:
        return bool(self._carry)

    def feed(self, data: bytes) -> list[bytes | Mark]:
        """The pieces of ``data`` in order; bytes that may start a mark wait for the next feed."""
        if self._carry:
            data = self._carry + data
            self._carry = b""
        out: list[bytes | Mark] = []
        start = 0
        n = len(data)
        while True:
            i = find_osc(data, start)
            while i >= 0 and not data.startswith(OSC133, i) and i + len(OSC133) <= n:
                i = find_osc(data, i + 2)  # another OSC (a title, ...): text
            if i >= 0 and not data.startswith(OSC133, i):
                i = -1  # a cut "ESC ]1..." at the end: the tail check below holds it
            if i < 0:
                end = n
                j = data.rfind(b"\x1b", max(start, n - len(OSC133) + 1))
                if j >= 0 and OSC133.startswith(data[j:]):
                    end = j
                if end > start:
                    out.append(data if start == 0 and end == n else data[start:end])
                self._carry = data[end:]
                return out
            if i > start:
                out.append(data[start:i])
            body_start = i + len(OSC133)
            limit = min(n, i + MAX_MARK)
            bel = data.find(b"\x07", body_start, limit)
            st = data.find(b"\x1b\\", body_start, limit)
            if bel < 0 and st < 0:
                if n - i < MAX_MARK:
                    self._carry = data[i:]
                    return out
                out.append(data[i:body_start])  # too long to be a mark: text
                start = body_start
                continue
            if bel >= 0 and (st < 0 or bel < st):
                out.append(parse_mark(data[body_start:bel], data[i : bel + 1]))
                start = bel + 1
            else:
                out.append(parse_mark(data[body_start:st], data[i : st + 2]))
                start = st + 2


#: The most of an OSC's body the tracker keeps (titles, marks); the rest is skipped.
MAX_OSC = 4096


class OscScanner:
    """Finds bells and OSC sequences (``ESC ] N ; body`` ended by BEL or ``ESC \\``) in a byte
    stream, whatever the read boundaries; a BEL that ends an OSC is not a bell. Jumps from one
    interesting byte to the next with ``bytes.find``: nothing is decoded, memory is bounded."""

    def __init__(self) -> None:
        self._in_osc = False
        self._esc = False
        self._body = bytearray()

    @property
    def idle(self) -> bool:
        """Nothing carried over: a chunk without BEL or ``ESC ]`` cannot hold anything."""
        return not self._in_osc and not self._esc

    def _add(self, data: bytes | memoryview) -> None:
        room = MAX_OSC - len(self._body)
        if room > 0:
            self._body += data[:room]

    def _finish(self, out: list[tuple[str, bytes]]) -> None:
        number, _, body = bytes(self._body).partition(b";")
        out.append((number.decode("ascii", "replace"), body))
        self._in_osc = False
        self._body.clear()

    def feed(self, data: bytes) -> list[tuple[str, bytes]]:
        """("bell", b"") for a bell, (number, body) for an OSC, in order."""
        out: list[tuple[str, bytes]] = []
        n = len(data)
        i = 0
        if self._esc and n:
            self._esc = False
            if self._in_osc:
                if data[0] == 0x5C:
                    self._finish(out)
                    i = 1
                else:
                    self._in_osc = False  # ESC and something else: the OSC was cancelled
                    self._body.clear()
            elif data[0] == 0x5D:
                self._in_osc = True
                self._body.clear()
                i = 1
        while i < n:
            if self._in_osc:
                bel = data.find(b"\x07", i)
                esc = data.find(b"\x1b", i)
                end = bel if esc < 0 or (0 <= bel < esc) else esc
                if end < 0:
                    self._add(memoryview(data)[i:])
                    break
                self._add(memoryview(data)[i:end])
                if end == bel:
                    self._finish(out)
                    i = end + 1
                elif end + 1 >= n:
                    self._esc = True
                    break
                elif data[end + 1] == 0x5C:
                    self._finish(out)
                    i = end + 2
                else:
                    self._in_osc = False
                    self._body.clear()
                    i = end
            else:
                bel = data.find(b"\x07", i)
                osc = find_osc(data, i)
                if bel < 0 and osc < 0:
                    self._esc = data[-1] == 0x1B
                    break
                if bel >= 0 and (osc < 0 or bel < osc):
                    out.append(("bell", b""))
                    i = bel + 1
                else:
                    self._in_osc = True
                    self._body.clear()
                    i = osc + 2
        return out


def find_osc(data: bytes, start: int = 0) -> int:
    """``data.find(b"\\x1b]", start)``, fast: a two-byte find walks the bytes one by one (~4 ns
    each, 250 us per 64 KiB read); a one-byte find is memchr, and ``]`` is rare in output."""
    i = data.find(b"]", start + 1)
    for _ in range(32):
        if i < 0:
            return -1
        if data[i - 1] == 0x1B:
            return i - 1
        i = data.find(b"]", i + 1)
    return data.find(b"\x1b]", i - 1)  # text full of brackets: the slow search, rarely


def may_have_osc(data: bytes) -> bool:
    return b"\x1b" in data and find_osc(data) >= 0


#: What a tracker tells its listener: an event name and its data.
Listener = Callable[[str, dict[str, Any]], None]


class ShellTracker:
    """One session's output position, recent output, and shell state from the marks."""

    def __init__(self) -> None:
        #: Bytes of output so far: the position a ``since`` mark names.
        self.pos = 0
        self._ring = bytearray()
        #: The ring is kept until then (monotonic time); 0: no mark is out, nothing is kept.
        self._keep_until = 0.0
        self._scanner = OscScanner()
        self.title = ""
        #: The shell emitted a prompt mark: it has the integration.
        self.integrated = False
        #: "unknown", "prompt", "continued" (a secondary prompt: the shell reads more of the
        #: same command line) or "running".
        self.state = "unknown"
        self._started = 0.0
        #: A fallback run whose end marker has not come yet (its token).
        self.pending_token: str | None = None
        #: The token the integration puts in its marks; other marks (in a program's output)
        #: are not this shell's. None: a shell without it takes any.
        self.mark_token: str | None = None
        #: Runs, as a client that comes back after a server upgrade or crash needs them.
        self.runs = RunLedger()
        #: The run streaming this session's command output now, if any.
        self.run: object | None = None
        self._waiters: list[tuple[Callable[[], None], bool]] = []
        self.listener: Listener | None = None

    def snapshot(self) -> dict[str, Any]:
        """What a server upgrade carries over: an integrated shell sitting at its prompt
        draws no new one for the next server to see."""
        return {
            "integrated": self.integrated,
            "state": self.state,
            "pending_token": self.pending_token,
            "mark_token": self.mark_token,
            "title": self.title,
            "runs": self.runs.snapshot(),
        }

    def restore(self, saved: Any) -> None:
        if not isinstance(saved, dict):
            return  # state from before shell tracking
        self.integrated = bool(saved.get("integrated"))
        state = saved.get("state")
        self.state = state if state in ("unknown", "prompt", "continued", "running") else "unknown"
        token = saved.get("pending_token")
        self.pending_token = token if isinstance(token, str) else None
        mark_token = saved.get("mark_token")
        self.mark_token = mark_token if isinstance(mark_token, str) else None
        title = saved.get("title")
        self.title = title if isinstance(title, str) else ""
        self.runs.restore(saved.get("runs"))

    def feed(self, data: bytes) -> None:
        self.pos += len(data)
        if self.runs.backlog is not None:
            self.runs.keep(data)
        if self._keep_until:
            if time.monotonic() < self._keep_until:
                ring = self._ring
                ring += data
                if len(ring) > 2 * RING_BYTES:
                    del ring[: len(ring) - RING_BYTES]
            else:
                self._keep_until = 0.0
                self._ring = bytearray()  # given back, not just emptied
        scanner = self._scanner
        if scanner.idle and b"\x07" not in data and data[-1:] != b"\x1b" and not may_have_osc(data):
            return
        for number, body in scanner.feed(data):
            if number == "133":
                self._mark(parse_mark(body))
            elif number == "bell":
                self.notify("bell", {})
            elif number in ("0", "2"):
                title = body.decode("utf-8", "replace")
                if title != self.title:
                    self.title = title
                    self.notify("title", {"title": title})

    def notify(self, kind: str, data: dict[str, Any]) -> None:
        if self.listener is not None:
            self.listener(kind, data)

    def mark(self) -> int:
        """The output position now, for a later ``since``; the output from here on is kept
        for ``RING_KEEP`` seconds."""
        self._keep_until = time.monotonic() + RING_KEEP
        return self.pos

    def since(self, pos: int) -> bytes:
        """The output after stream position ``pos`` (as much as is kept)."""
        if pos >= self.pos:
            return b""
        return bytes(self._ring[-min(self.pos - pos, len(self._ring)) :])

    @property
    def at_prompt(self) -> bool:
        return self.state == "prompt" and self.pending_token is None

    @property
    def busy(self) -> bool:
        return self.run is not None or self.state == "running" or self.pending_token is not None

    def when_idle(self, callback: Callable[[], None], prompt: bool = False) -> None:
        """Call ``callback`` once the shell is at its prompt (``prompt``, or once it has shown
        it has the integration), else once no command or run is pending."""
        self._waiters.append((callback, prompt))
        self._wake()

    def _idle(self, prompt: bool) -> bool:
        if prompt or self.integrated:
            return self.at_prompt
        return self.state != "running" and self.pending_token is None

    def _wake(self) -> None:
        if not self._waiters:
            return
        ready = [w for w in self._waiters if self._idle(w[1])]
        if not ready:
            return
        self._waiters = [w for w in self._waiters if w not in ready]
        for callback, _prompt in ready:
            callback()

    def _mark(self, mark: Mark) -> None:
        kind = mark.kind
        if not self.owns(mark):
            return
        self.runs.on_mark(mark)
        if kind == "A" and mark.continuation:
            self.state = "continued"  # not at a prompt: a run's line would join that one
        elif kind == "A":
            self.integrated = True
            if self.state == "running" and self.pending_token is None:
                self._finished(None)  # a prompt without D: the command ended somehow
            self.state = "prompt"
        elif kind == "B":
            self.state = "prompt"
        elif kind == "C":
            self.state = "running"
            self._started = time.monotonic()
        elif kind == "D":
            token = mark.param("tmuxish")
            if token is not None and token == self.pending_token:
                self.pending_token = None
            if self.state == "running":
                self._finished(mark.status)
            # At its prompt once the shell draws it (A): what it prints between (the user's
            # prompt hooks) comes first, and a run started then would take that A for its own.
            self.state = "unknown"
        self._wake()

    def owns(self, mark: Mark) -> bool:
        """A mark is this shell's (or a fallback run's), not one in a program's output."""
        token = mark.param("tmuxish")
        if self.mark_token is None:
            return True
        return token is not None and token in (self.mark_token, self.pending_token)

    def _finished(self, status: int | None) -> None:
        duration = round(time.monotonic() - self._started, 6)
        self.notify("command-finished", {"exit_code": status, "duration": duration})
