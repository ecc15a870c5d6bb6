"""msgpack without importing msgpack: the part of the format tmuxish's frames use.

Why it exists: `import msgpack` costs ~4 ms here (its ext module imports datetime), a third of
what issue 15 lets `tmuxish new -d` cost in all. The blocking client (client/connection.py,
behind `ls`, `new -d`, `send`, `wait`, a direct attach and the SyncClient) reads and writes with
this module; the server and the asyncio relay keep msgpack, which is faster on big frames.

It speaks exactly what msgpack speaks for these types: ``pack(obj)`` is byte for byte
``msgpack.packb(obj, use_bin_type=True, unicode_errors="surrogateescape")``, and ``Unpacker``
returns what msgpack's Unpacker returns with ``raw=False, strict_map_key=True,
unicode_errors="surrogateescape"`` (tests/unit/test_minipack.py checks both against msgpack on
generated values). Types: None, bool, int (64-bit), float (float64), str, bytes, bytearray and
memoryview (as bin), list and tuple (as array; decoded as list), dict (str or bytes keys). No
ext types: tmuxish never sends one, so one is malformed input.

Strings are UTF-8 with Python's surrogateescape: an argument or environment variable that is not
valid UTF-8 (os.environ holds it as lone surrogates) travels as its original bytes, as on POSIX.
"""

from __future__ import annotations

#: Not typing.TYPE_CHECKING: importing typing (and re with it) costs `tmuxish ls` ~15 ms.
TYPE_CHECKING = False

if TYPE_CHECKING:
    from typing import Any

#: Deeper nesting is refused (msgpack's own limit is 512, but that many levels here would reach
#: Python's recursion limit). tmuxish's frames nest about five levels deep.
MAX_DEPTH = 64


class UnpackError(ValueError):
    """The bytes are not a message this module reads (malformed, or beyond a limit)."""


class BufferFull(UnpackError):
    """More unfinished data than ``max_buffer_size``."""


class _Incomplete(Exception):
    """The buffer ends inside an object: wait for more."""


# -- packing --------------------------------------------------------------------------------------


def pack(obj: Any) -> bytes:
    """``obj`` as msgpack bytes (see the module docstring for the types)."""
    out: list[bytes] = []
    _pack(obj, out, MAX_DEPTH)
    return b"".join(out)


def _pack(obj: Any, out: list[bytes], depth: int) -> None:
    if depth < 0:
        raise ValueError("recursion limit exceeded")
    if obj is None:
        out.append(b"\xc0")
    elif obj is True:
        out.append(b"\xc3")
    elif obj is False:
        out.append(b"\xc2")
    elif isinstance(obj, int):
        out.append(_int(int(obj)))
    elif isinstance(obj, float):
        import struct  # floats are rare in a client's frames: struct stays out of `ls`

        out.append(b"\xcb" + struct.pack(">d", obj))
    elif isinstance(obj, str):
        data = obj.encode("utf-8", "surrogateescape")
        out.append(_header(len(data), 0xA0, 32, b"\xd9", b"\xda", b"\xdb"))
        out.append(data)
    elif isinstance(obj, (bytes, bytearray, memoryview)):
        data = bytes(obj)
        out.append(_header(len(data), -1, 0, b"\xc4", b"\xc5", b"\xc6"))
        out.append(data)
    elif isinstance(obj, dict):
        out.append(_header(len(obj), 0x80, 16, b"", b"\xde", b"\xdf"))
        for key, value in obj.items():
            _pack(key, out, depth - 1)
            _pack(value, out, depth - 1)
    elif isinstance(obj, (list, tuple)):
        out.append(_header(len(obj), 0x90, 16, b"", b"\xdc", b"\xdd"))
        for item in obj:
            _pack(item, out, depth - 1)
    else:
        raise TypeError(f"can not serialize {type(obj).__name__!r} object")


def _int(value: int) -> bytes:
    if 0 <= value < 0x80:
        return bytes((value,))
    if -32 <= value < 0:
        return bytes((value & 0xFF,))
    if value > 0:
        for tag, size in ((b"\xcc", 1), (b"\xcd", 2), (b"\xce", 4), (b"\xcf", 8)):
            if value < 1 << (8 * size):
                return tag + value.to_bytes(size, "big")
    else:
        for tag, size in ((b"\xd0", 1), (b"\xd1", 2), (b"\xd2", 4), (b"\xd3", 8)):
            if value >= -(1 << (8 * size - 1)):
                return tag + value.to_bytes(size, "big", signed=True)
    raise OverflowError("Integer value out of range")


def _header(n: int, fix: int, fix_below: int, one: bytes, two: bytes, four: bytes) -> bytes:
    """The type byte(s) of a str, bin, array or map of ``n`` items or bytes."""
    if n < fix_below:
        return bytes((fix | n,))
    if n < 0x100 and one:
        return one + bytes((n,))
    if n < 0x10000:
        return two + n.to_bytes(2, "big")
    if n < 0x100000000:
        return four + n.to_bytes(4, "big")
    raise ValueError("object too large to pack")


# -- unpacking ------------------------------------------------------------------------------------


class Unpacker:
    """Incremental: ``feed`` bytes as they arrive, iterate the objects they complete.

    Every length is checked against the limits before anything is read or copied, and nothing
    is copied until its bytes have all arrived: an announced gigabyte costs nothing, and more
    than ``max_buffer_size`` bytes of unfinished data raise BufferFull at ``feed``.
    """

    def __init__(
        self,
        max_buffer_size: int,
        max_array_len: int,
        max_map_len: int,
    ) -> None:
        self._buf = bytearray()
        self._pos = 0
        #: Bytes consumed by complete objects since the start (as msgpack's ``tell()``).
        self._told = 0
        self._max_buffer = max_buffer_size
        self._max_array = max_array_len
        self._max_map = max_map_len

    def feed(self, data: bytes) -> None:
        if len(self._buf) - self._pos + len(data) > self._max_buffer:
            raise BufferFull("frame too large")
        if self._pos:
            del self._buf[: self._pos]
            self._pos = 0
        self._buf += data

    def tell(self) -> int:
        return self._told

    def __iter__(self) -> Unpacker:
        return self

    def __next__(self) -> Any:
        if self._pos >= len(self._buf):
            raise StopIteration
        try:
            obj, end = self._read(self._pos, MAX_DEPTH)
        except _Incomplete:
            raise StopIteration from None
        self._told += end - self._pos
        self._pos = end
        return obj

    def _need(self, start: int, n: int) -> int:
        end = start + n
        if end > len(self._buf):
            if n > self._max_buffer:
                raise UnpackError(f"{n} bytes exceed the limit of {self._max_buffer}")
            raise _Incomplete
        return end

    def _uint(self, pos: int, size: int) -> tuple[int, int]:
        end = self._need(pos, size)
        return int.from_bytes(self._buf[pos:end], "big"), end

    def _read(self, pos: int, depth: int) -> tuple[Any, int]:
        if depth < 0:
            raise UnpackError("message nested too deeply")
        buf = self._buf
        self._need(pos, 1)
        tag = buf[pos]
        pos += 1
        if tag <= 0x7F:
            return tag, pos
        if tag >= 0xE0:
            return tag - 0x100, pos
        if 0xA0 <= tag <= 0xBF:
            return self._str(pos, tag & 0x1F)
        if 0x90 <= tag <= 0x9F:
            return self._array(pos, tag & 0x0F, depth)
        if 0x80 <= tag <= 0x8F:
            return self._map(pos, tag & 0x0F, depth)
        if tag == 0xC0:
            return None, pos
        if tag == 0xC2:
            return False, pos
        if tag == 0xC3:
            return True, pos
        if 0xCC <= tag <= 0xCF:
            return self._uint(pos, 1 << (tag - 0xCC))
        if 0xD0 <= tag <= 0xD3:
            size = 1 << (tag - 0xD0)
            end = self._need(pos, size)
            return int.from_bytes(buf[pos:end], "big", signed=True), end
        if tag in (0xD9, 0xDA, 0xDB):
            n, pos = self._uint(pos, 1 << (tag - 0xD9))
            return self._str(pos, n)
        if tag in (0xC4, 0xC5, 0xC6):
            n, pos = self._uint(pos, 1 << (tag - 0xC4))
            end = self._need(pos, n)
            return bytes(buf[pos:end]), end
        if tag in (0xDC, 0xDD):
            n, pos = self._uint(pos, 2 if tag == 0xDC else 4)
            return self._array(pos, n, depth)
        if tag in (0xDE, 0xDF):
            n, pos = self._uint(pos, 2 if tag == 0xDE else 4)
            return self._map(pos, n, depth)
        if tag in (0xCA, 0xCB):
            import struct

            size = 4 if tag == 0xCA else 8
            end = self._need(pos, size)
            return struct.unpack(">f" if size == 4 else ">d", buf[pos:end])[0], end
        raise UnpackError(f"unsupported msgpack type 0x{tag:02x}")

    def _str(self, pos: int, n: int) -> tuple[str, int]:
        end = self._need(pos, n)
        return str(self._buf[pos:end], "utf-8", "surrogateescape"), end

    def _array(self, pos: int, n: int, depth: int) -> tuple[list[Any], int]:
        if n > self._max_array:
            raise UnpackError(f"{n} exceeds max_array_len({self._max_array})")
        items = []
        for _ in range(n):
            item, pos = self._read(pos, depth - 1)
            items.append(item)
        return items, pos

    def _map(self, pos: int, n: int, depth: int) -> tuple[dict[Any, Any], int]:
        if n > self._max_map:
            raise UnpackError(f"{n} exceeds max_map_len({self._max_map})")
        result: dict[Any, Any] = {}
        for _ in range(n):
            key, pos = self._read(pos, depth - 1)
            if type(key) not in (str, bytes):
                raise UnpackError(f"{type(key).__name__} is not allowed for map key")
            result[key], pos = self._read(pos, depth - 1)
        return result, pos
