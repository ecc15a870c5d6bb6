"""asciicast, the asciinema recording format: a JSON header line, then one JSON event per line.

Pure: values in, lines of text out (server/recording.py owns the file and the thread).

v2 (the default, read by Debian's asciinema 2.2): header ``{"version": 2, "width", "height",
"timestamp", ...}``, events ``[seconds since the start, code, data]``. v3 (asciinema 3's
default): header ``{"version": 3, "term": {"cols", "rows", "type"}, ...}``, events ``[seconds
since the previous event, code, data]`` and an ``"x"`` event with the exit status. Codes: ``"o"``
output, ``"i"`` input, ``"r"`` resize (``"COLSxROWS"``), ``"m"`` marker, ``"x"`` exit (v3 only).
"""

from __future__ import annotations

import codecs
import json
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Final

FORMATS: Final = ("v2", "v3")
DEFAULT_FORMAT: Final = "v2"


def _seconds(t: float) -> float:
    # Microseconds, as asciinema writes them: shorter lines, and no float noise like 0.30000000004.
    return round(max(0.0, t), 6)


class Asciicast:
    """Encodes one recording; ``event`` takes times as seconds since the start in both formats."""

    def __init__(
        self,
        fmt: str,
        cols: int,
        rows: int,
        *,
        timestamp: int,
        term: str | None = None,
        title: str | None = None,
        command: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        if fmt not in FORMATS:
            raise ValueError(f"unknown asciicast format {fmt!r} (one of {', '.join(FORMATS)})")
        self.version = 3 if fmt == "v3" else 2
        self.cols, self.rows = cols, rows
        self.timestamp = timestamp
        self.term = term
        self.title = title
        self.command = command
        self.env = dict(env or {})
        #: v3 times are relative: the (rounded) time of the last event written.
        self.last = 0.0

    def header(self) -> str:
        head: dict[str, Any] = {"version": self.version}
        env = dict(self.env)
        if self.version == 2:
            head["width"], head["height"] = self.cols, self.rows
            if self.term:
                env["TERM"] = self.term
        else:
            term: dict[str, Any] = {"cols": self.cols, "rows": self.rows}
            if self.term:
                term["type"] = self.term
            head["term"] = term
        head["timestamp"] = self.timestamp
        if self.command:
            head["command"] = self.command
        if self.title:
            head["title"] = self.title
        if env:
            head["env"] = env
        return json.dumps(head, ensure_ascii=False) + "\n"

    def event(self, t: float, code: str, data: str) -> str:
        t = _seconds(t)
        if self.version == 3:
            # Relative to the rounded previous time, so the intervals add up to the real times.
            t, self.last = _seconds(t - self.last), max(t, self.last)
        return json.dumps([t, code, data], ensure_ascii=False) + "\n"

    def output(self, t: float, text: str) -> str:
        return self.event(t, "o", text)

    def input(self, t: float, text: str) -> str:
        return self.event(t, "i", text)

    def resize(self, t: float, cols: int, rows: int) -> str:
        return self.event(t, "r", f"{cols}x{rows}")

    def marker(self, t: float, label: str) -> str:
        return self.event(t, "m", label)

    def exit(self, t: float, code: int) -> str:
        """The exit event; v2 has none, so it is "" there."""
        return self.event(t, "x", str(code)) if self.version == 3 else ""


class TextStream:
    """Terminal bytes to str for JSON: UTF-8, with a character split across reads kept whole.

    Invalid bytes become U+FFFD, as a terminal shows them.
    """

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")

    def decode(self, data: bytes) -> str:
        return self._decoder.decode(data)

    def reset(self) -> None:
        """Forget a partial character (bytes were dropped: its end will not come)."""
        self._decoder.reset()


def read(lines: Iterable[str]) -> tuple[dict[str, Any], Iterator[tuple[float, str, str]]]:
    """Parse a recording: its header and its events with times since the start (both formats)."""
    it = iter(line for line in lines if line.strip() and not line.startswith("#"))
    header = json.loads(next(it))
    relative = header.get("version") == 3

    def events() -> Iterator[tuple[float, str, str]]:
        now = 0.0
        for line in it:
            t, code, data = json.loads(line)
            now = now + t if relative else t
            yield now, code, data

    return header, events()
