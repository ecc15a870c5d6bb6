"""The WebSocket frames between the page and `tmuxish web`: one binary message each, one type
byte first, then the payload. Output and input bytes travel exactly as they are (no base64, no
JSON); the page's script (static/page.js) speaks the same table.

====== ============= =========================================================================
byte   direction     payload
====== ============= =========================================================================
1      to page       OUTPUT: the session's output bytes
2      to server     INPUT: bytes typed into the session
3      to server     RESIZE: columns, rows (two big-endian u16)
4      to server     ACK: total output bytes the terminal has written so far (big-endian u64)
5      to page       EXIT: the program's exit code (big-endian i32); the socket closes after
6      to page       ERROR: a one-line UTF-8 message; the socket closes after
====== ============= =========================================================================
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

OUTPUT = 1
INPUT = 2
RESIZE = 3
ACK = 4
EXIT = 5
ERROR = 6

#: The largest message the page may send (input is split into frames this size by the page).
MAX_INCOMING = 65536
#: The largest output payload in one frame to the page.
MAX_OUTPUT_FRAME = 262144

_SIZE = struct.Struct(">HH")
_ACK = struct.Struct(">Q")
_EXIT = struct.Struct(">i")


class WireError(ValueError):
    """A frame from the page that does not follow the table above."""


@dataclass(frozen=True)
class Input:
    data: bytes


@dataclass(frozen=True)
class Resize:
    cols: int
    rows: int


@dataclass(frozen=True)
class Ack:
    written: int


Incoming = Input | Resize | Ack


def parse(message: bytes | str) -> Incoming:
    """One frame from the page; WireError if it is not one of ours."""
    if isinstance(message, str):
        raise WireError("text frames are not part of the protocol")
    if not message:
        raise WireError("empty frame")
    kind, body = message[0], message[1:]
    if kind == INPUT:
        return Input(bytes(body))
    if kind == RESIZE:
        if len(body) != _SIZE.size:
            raise WireError("bad resize frame")
        cols, rows = _SIZE.unpack(body)
        if not (0 < cols <= 10000 and 0 < rows <= 10000):
            raise WireError("size out of range")
        return Resize(cols, rows)
    if kind == ACK:
        if len(body) != _ACK.size:
            raise WireError("bad ack frame")
        return Ack(_ACK.unpack(body)[0])
    raise WireError(f"unknown frame type {kind}")


def output(data: bytes) -> bytes:
    return b"\x01" + data


def exited(code: int) -> bytes:
    return bytes((EXIT,)) + _EXIT.pack(code)


def error(message: str) -> bytes:
    return bytes((ERROR,)) + message.encode("utf-8", "replace")


# The page's frames, for tests and for other clients written in Python.


def input_frame(data: bytes) -> bytes:
    return bytes((INPUT,)) + data


def resize_frame(cols: int, rows: int) -> bytes:
    return bytes((RESIZE,)) + _SIZE.pack(cols, rows)


def ack_frame(written: int) -> bytes:
    return bytes((ACK,)) + _ACK.pack(written)
