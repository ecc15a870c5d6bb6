"""Detach keys: docker's ``--detach-keys`` spec format and the byte-level DetachFilter.

The filter sits between the real terminal and the session. It relays every byte unchanged
except a completed detach sequence, and it is pure: the caller passes the clock in.

Rules, chosen to beat docker's known faults:

* A byte that cannot start or continue the sequence is forwarded at once, in order.
* The sequence is found split across reads and in the middle of a read (a paste).
* A prefix that is not continued is forwarded with the byte that broke it; that byte (and any held
  bytes after the first) is looked at again, so the sequence is found wherever it starts.
* Pressing the first key twice sends it once, literally (Ctrl-P Ctrl-P types one Ctrl-P). Continuing
  the sequence wins over this, so ``ctrl-p,ctrl-p`` detaches on the double press. A one-key
  sequence detaches at once.
* A held prefix is forwarded ``timeout`` seconds after the last key that extended it (the caller
  asks ``deadline()`` and calls ``expire()``); ``timeout <= 0`` holds it until the next key.
* Kitty keyboard protocol (``ESC[112;5u``, ``ESC[112;5:1u``) and xterm modifyOtherKeys
  (``ESC[27;5;112~``) forms of a key match like the byte a legacy terminal sends for it; what is
  forwarded is always the original bytes. Kitty release events and modifier-key events (sent with
  its "report event types"/"report all keys" flags) neither continue nor break a held prefix.
* An escape sequence cut off at the end of a read is held only while it could still become a key
  that matters, and at most ``escape_timeout`` seconds: a lone Escape press arrives as a lone ESC,
  and it must not wait as long as a Ctrl-P does.
"""

from __future__ import annotations

import functools

from tmuxish.errors import UsageError

#: Not typing.TYPE_CHECKING: importing typing (and re with it) costs `tmuxish attach` ~15 ms.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Final

DEFAULT_DETACH_KEYS: Final = "ctrl-p,ctrl-q"
#: Longest wait for the rest of an escape sequence cut off at the end of a read. Terminals write a
#: key's sequence in one go, so more of it is normally already there; this bounds the delay a lone
#: Escape press suffers.
ESCAPE_TIMEOUT: Final = 0.02

_CTRL_NAMES: Final[dict[str, int]] = {
    "@": 0x00,
    "[": 0x1B,
    "\\": 0x1C,
    "]": 0x1D,
    "^": 0x1E,
    "_": 0x1F,
    **{chr(c): c - 0x60 for c in range(ord("a"), ord("z") + 1)},
}
_SPEC_HINT: Final = (
    "use ctrl-a..ctrl-z, ctrl-@, ctrl-[, ctrl-\\, ctrl-], ctrl-^, ctrl-_ or a single character"
)


def parse_detach_keys(spec: str) -> bytes:
    """Turn ``"ctrl-p,ctrl-q"`` into ``b"\\x10\\x11"``; a blank spec gives b"" (detaching off).

    Parts are stripped of surrounding blanks, except that a part which is exactly one character
    is that character, so ``"ctrl-a, "`` ends with a space key.
    """
    if not spec.strip():
        return b""
    return bytes(_parse_key(part, spec) for part in spec.split(","))


def _parse_key(part: str, spec: str) -> int:
    if len(part) == 1 and " " <= part <= "~":
        return ord(part)
    name = part.strip()
    if len(name) == 1 and " " <= name <= "~":
        return ord(name)
    lower = name.lower()
    if lower.startswith("ctrl-") and lower[5:] in _CTRL_NAMES:
        return _CTRL_NAMES[lower[5:]]
    raise UsageError(f"invalid detach key '{part}' in '{spec}': {_SPEC_HINT}")


# -- encoded keys ----------------------------------------------------------------------------------

_ESC: Final = 0x1B
_ESC_BYTE: Final = b"\x1b"
_LBRACKET: Final = ord("[")
_FINAL_U: Final = ord("u")
_FINAL_TILDE: Final = ord("~")
_PARAM_BYTES: Final = frozenset(b"0123456789:;")
#: Longer parameter strings are some other sequence; bounds how much an unfinished one holds.
_MAX_PARAMS: Final = 32
#: Token values that are not key bytes: a release/modifier-key event, and anything else.
_NEUTRAL: Final = -1
_OTHER: Final = -2
#: Modifier bits after subtracting 1 from the wire value (kitty and xterm agree on these).
_SHIFT: Final = 1
_CTRL: Final = 4
_LOCKS: Final = 64 | 128  # caps lock, num lock: reported by kitty but irrelevant to matching
#: Kitty's codepoints for Shift, Control, Alt, Super, Hyper, Meta (left and right), ISO levels.
_MODIFIER_KEYS: Final = range(57441, 57455)
#: What a legacy terminal sends for Ctrl plus the key with this codepoint.
_CTRL_OF: Final[dict[int, int]] = {
    **{c: c & 0x1F for c in range(0x40, 0x60)},
    **{c: c & 0x1F for c in range(ord("a"), ord("z") + 1)},
    ord(" "): 0x00,
    ord("2"): 0x00,
    ord("3"): 0x1B,
    ord("4"): 0x1C,
    ord("5"): 0x1D,
    ord("6"): 0x1E,
    ord("7"): 0x1F,
    ord("/"): 0x1F,
}
#: Keys kitty sends unmodified as CSI u in "report all keys" mode: Tab, Enter, Escape, printables.
_PLAIN_CODEPOINTS: Final = frozenset({9, 13, 27, *range(0x20, 0x80)})


def _key_of(codepoint: int, modifiers: int) -> int:
    """The byte a legacy terminal would send for this key, or _OTHER."""
    if modifiers < 1:
        return _OTHER
    bits = (modifiers - 1) & ~_LOCKS
    if bits == 0:
        return codepoint if codepoint in _PLAIN_CODEPOINTS else _OTHER
    if bits == _SHIFT:
        return codepoint - 0x20 if ord("a") <= codepoint <= ord("z") else _OTHER
    if bits == _CTRL:
        return _CTRL_OF.get(codepoint, _OTHER)
    return _OTHER


def _mods_values(bits: int) -> tuple[int, ...]:
    return tuple(1 + bits + lock for lock in (0, 64, 128, 192))


@functools.cache
def _encodings(key: int) -> tuple[tuple[int, int], ...]:
    """The (codepoint, modifier bits) pairs that encode ``key``; drives early rejection.

    Computed on first use, per key: building the whole table at import cost ~20 ms, which
    `tmuxish ls` would pay without ever attaching.
    """
    if not 0 <= key < 0x80:
        return ()
    return tuple(
        (cp, bits)
        for cp in range(0x80)
        for bits in (0, _SHIFT, _CTRL)
        if _key_of(cp, 1 + bits) == key
    )


def _number(text: bytes, default: int | None = None) -> int | None:
    if not text:
        return default
    if not text.isdigit() or (len(text) > 1 and text[0] == ord("0")) or len(text) > 7:
        return None
    return int(text)


def _decode(params: bytes, final: int) -> int:
    """Decode the parameters of ``ESC [ params final`` into a key byte, _NEUTRAL or _OTHER."""
    fields = params.split(b";")
    if final == _FINAL_TILDE:
        # xterm modifyOtherKeys: ESC [ 27 ; modifiers ; codepoint ~
        if len(fields) != 3 or fields[0] != b"27":
            return _OTHER
        xmods, xcode = _number(fields[1]), _number(fields[2])
        return _OTHER if xmods is None or xcode is None else _key_of(xcode, xmods)
    # kitty: ESC [ codepoint[:alternates] [; modifiers[:event] [; text]] u
    codes = fields[0].split(b":")
    if len(fields) > 3 or len(codes) > 3:
        return _OTHER
    codepoint = _number(codes[0])
    mods: int | None = 1
    event: int | None = 1
    if len(fields) > 1:
        mod_event = fields[1].split(b":")
        if len(mod_event) > 2:
            return _OTHER
        mods = _number(mod_event[0], 1)
        event = _number(mod_event[1], 1) if len(mod_event) == 2 else 1
    if codepoint is None or mods is None or event is None:
        return _OTHER
    if event == 3 or (event in (1, 2) and codepoint in _MODIFIER_KEYS):
        return _NEUTRAL
    if event not in (1, 2):
        return _OTHER
    return _key_of(codepoint, mods)


def _could_be(text: bytes, value: int, done: bool, default: int | None = None) -> bool:
    """Whether a number field reading ``text`` so far can still end up as ``value``."""
    if not text:
        return not done or value == default
    canonical = b"%d" % value
    return canonical == text if done else canonical.startswith(text)


def _could_match(params: bytes, encodings: tuple[tuple[int, int], ...], neutral: bool) -> bool:
    """Whether unfinished parameters can still become one of ``encodings`` (or a neutral event)."""
    if len(params) > _MAX_PARAMS:
        return False
    fields = params.split(b";")
    return _kitty_could_match(fields, encodings, neutral) or _xterm_could_match(fields, encodings)


def _kitty_could_match(
    fields: list[bytes], encodings: tuple[tuple[int, int], ...], neutral: bool
) -> bool:
    codes = fields[0].split(b":")
    mod_event = fields[1].split(b":") if len(fields) > 1 else []
    if len(fields) > 3 or len(codes) > 3 or len(mod_event) > 2:
        return False
    if neutral:
        # A release event can carry any codepoint, so only the shape can rule it out.
        return True
    code_done = len(codes) > 1 or len(fields) > 1
    mods_done = len(mod_event) > 1 or len(fields) > 2
    for codepoint, bits in encodings:
        if not _could_be(codes[0], codepoint, code_done):
            continue
        if not mod_event:
            return True
        if not any(_could_be(mod_event[0], m, mods_done, 1) for m in _mods_values(bits)):
            continue
        if len(mod_event) == 1 or any(
            _could_be(mod_event[1], e, len(fields) > 2, 1) for e in (1, 2)
        ):
            return True
    return False


def _xterm_could_match(fields: list[bytes], encodings: tuple[tuple[int, int], ...]) -> bool:
    if len(fields) > 3 or not _could_be(fields[0], 27, len(fields) > 1):
        return False
    if len(fields) == 1:
        return True
    for codepoint, bits in encodings:
        if any(_could_be(fields[1], m, len(fields) > 2) for m in _mods_values(bits)) and (
            len(fields) == 2 or _could_be(fields[2], codepoint, False)
        ):
            return True
    return False


# -- the filter ------------------------------------------------------------------------------------

#: Timers may fire a little before the deadline they were set for (uvloop rounds to milliseconds);
#: without slack the I/O loop would spin re-arming until the clock catches up.
_SLACK: Final = 0.001


class DetachFilter:
    """Forward keystrokes unchanged, holding back only what may be the start of the detach keys.

    ``keys`` is what ``parse_detach_keys`` returns; b"" disables detaching. ``timeout`` bounds how
    long a typed prefix is held, ``escape_timeout`` how long an escape sequence cut off at the end
    of a read is (both in the caller's clock, seconds; <= 0 means no limit).
    """

    def __init__(
        self, keys: bytes, timeout: float = 0.5, escape_timeout: float = ESCAPE_TIMEOUT
    ) -> None:
        self._keys = keys
        self._timeout = timeout
        self._escape_timeout = escape_timeout
        self._first = keys[:1]
        #: Encodings worth waiting for, by number of keys matched so far: the next key, and
        #: after the first also the first again (the doubled-prefix rule).
        self._encodings = [
            _encodings(keys[i]) + (_encodings(keys[0]) if i else ()) for i in range(len(keys))
        ]
        #: Tokens held as a possible prefix: (original bytes, key value). _matched counts the keys
        #: among them; the rest are neutral events.
        self._held: list[tuple[bytes, int]] = []
        self._matched = 0
        self._since = 0.0
        #: An unfinished escape sequence at the end of the last read.
        self._tail = b""
        self._tail_since = 0.0

    @property
    def pending(self) -> bytes:
        return b"".join(raw for raw, _ in self._held) + self._tail

    def deadline(self) -> float | None:
        when: float | None = None
        if self._held and self._timeout > 0:
            when = self._since + self._timeout
        if self._tail and self._escape_timeout > 0:
            tail_when = self._tail_since + self._escape_timeout
            when = tail_when if when is None else min(when, tail_when)
        return when

    def expire(self, now: float) -> bytes:
        when = self.deadline()
        if when is None or now + _SLACK < when:
            return b""
        # Whatever followed the prefix did not arrive in time to continue it, so all of it goes.
        held = self.pending
        self._reset()
        return held

    def feed(self, data: bytes, now: float) -> tuple[bytes, bool]:
        first = self._first
        if not first or (
            not self._held and not self._tail and first not in data and _ESC_BYTE not in data
        ):
            return data, False
        out: list[bytes] = []
        when = self.deadline()
        if when is not None and now >= when:
            # The loop was late calling expire(): what is held went stale before this read.
            out.append(self.pending)
            self._reset()
        resumed_tail = bool(self._tail)
        buf = self._tail + data
        self._tail = b""
        n = len(buf)
        pos = 0
        next_first = next_esc = -1
        while pos < n:
            if not self._held:
                # Skip to the next byte that could start the sequence, forwarding the stretch.
                if next_first < pos:
                    next_first = buf.find(first, pos)
                    next_first = n if next_first < 0 else next_first
                if next_esc < pos:
                    next_esc = buf.find(_ESC_BYTE, pos)
                    next_esc = n if next_esc < 0 else next_esc
                start = min(next_first, next_esc)
                if start > pos:
                    out.append(buf[pos:start])
                    pos = start
                    if pos == n:
                        break
            token = self._token(buf, pos)
            if token is None:
                if not (resumed_tail and pos == 0):
                    self._tail_since = now
                self._tail = buf[pos:]
                break
            length, value = token
            if not self._held and value != self._keys[0]:
                out.append(buf[pos : pos + length])
            elif self._match(buf[pos : pos + length], value, now, out):
                self._reset()
                return b"".join(out), True
            pos += length
        return b"".join(out), False

    def _reset(self) -> None:
        self._held = []
        self._matched = 0
        self._tail = b""

    def _token(self, buf: bytes, pos: int) -> tuple[int, int] | None:
        """(length, key value) of the key starting at ``pos``, or None to wait for more bytes."""
        byte = buf[pos]
        if byte != _ESC:
            return 1, byte
        n = len(buf)
        if pos + 1 == n:
            wanted = self._keys[self._matched], self._keys[0] if self._held else -1
            if _ESC in wanted:
                # A lone ESC is itself the key wanted (ctrl-[), which beats waiting.
                return 1, _ESC
            return None
        if buf[pos + 1] != _LBRACKET:
            return 1, _ESC
        start = end = pos + 2
        limit = min(n, start + _MAX_PARAMS + 1)
        while end < limit and buf[end] in _PARAM_BYTES:
            end += 1
        if end == n:
            if _could_match(buf[start:end], self._encodings[self._matched], bool(self._held)):
                return None
            return 1, _ESC
        final = buf[end]
        if final in (_FINAL_U, _FINAL_TILDE) and end - start <= _MAX_PARAMS:
            return end + 1 - pos, _decode(buf[start:end], final)
        return 1, _ESC

    def _match(self, raw: bytes, value: int, now: float, out: list[bytes]) -> bool:
        """Advance the matcher by one token, appending what must be forwarded; True on detach."""
        keys = self._keys
        todo = [(raw, value)]
        while todo:
            raw, value = todo.pop(0)
            if not self._held:
                if value != keys[0]:
                    out.append(raw)
                    continue
                if len(keys) == 1:
                    return True
                self._held = [(raw, value)]
                self._matched = 1
                self._since = now
            elif value == keys[self._matched]:
                self._held.append((raw, value))
                self._matched += 1
                self._since = now
                if self._matched == len(keys):
                    return True
            elif value == _NEUTRAL:
                self._held.append((raw, value))
            elif self._matched == 1 and value == keys[0]:
                # The first key twice: send it once, literally; the second press is consumed.
                out.extend(r for r, _ in self._held)
                self._held = []
                self._matched = 0
            else:
                # Not continued: the first held key goes; the rest may start a match of their own.
                held = self._held
                self._held = []
                self._matched = 0
                out.append(held[0][0])
                todo[:0] = [*held[1:], (raw, value)]
        return False
