"""tmuxish.minipack against msgpack itself: the same bytes out, the same values back."""

from __future__ import annotations

import math
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tmuxish import minipack, protocol

#: Text as the OS hands it over: any code point, and bytes that are not UTF-8 as Python holds
#: them (surrogateescape).
TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40) | st.binary(
    max_size=12
).map(lambda raw: raw.decode("utf-8", "surrogateescape"))
INTS = st.integers(min_value=-(2**63), max_value=2**64 - 1)
FLOATS = st.floats(allow_nan=False)
SCALARS = st.none() | st.booleans() | INTS | FLOATS | TEXT | st.binary(max_size=300)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=20) | st.dictionaries(TEXT, inner, max_size=20),
    max_leaves=60,
)


def msgpack_bytes(obj: Any) -> bytes:
    return msgpack.packb(  # type: ignore[no-any-return]
        obj, use_bin_type=True, unicode_errors="surrogateescape"
    )


def unpack_all(data: bytes, chunk: int | None = None, **limits: int) -> list[Any]:
    unpacker = minipack.Unpacker(
        limits.get("max_buffer_size", 1 << 24),
        limits.get("max_array_len", 1 << 20),
        limits.get("max_map_len", 1 << 16),
    )
    out: list[Any] = []
    step = chunk or max(len(data), 1)
    for start in range(0, len(data), step):
        unpacker.feed(data[start : start + step])
        out.extend(unpacker)
    return out


@settings(max_examples=400, deadline=None)
@given(VALUES)
def test_packs_the_bytes_msgpack_packs(value: Any) -> None:
    assert minipack.pack(value) == msgpack_bytes(value)


@settings(max_examples=400, deadline=None)
@given(VALUES, st.integers(min_value=1, max_value=64))
def test_reads_what_msgpack_writes_in_any_chunks(value: Any, chunk: int) -> None:
    data = msgpack_bytes(value) * 2
    assert unpack_all(data, chunk) == [value, value]


@pytest.mark.parametrize(
    "value",
    [
        0,
        127,
        128,
        255,
        256,
        65535,
        65536,
        2**32 - 1,
        2**32,
        2**64 - 1,
        -1,
        -32,
        -33,
        -128,
        -129,
        -32768,
        -32769,
        -(2**31),
        -(2**31) - 1,
        -(2**63),
        "x" * 31,
        "x" * 32,
        "x" * 255,
        "x" * 256,
        "x" * 65536,
        b"y" * 255,
        b"y" * 256,
        b"y" * 65536,
        list(range(15)),
        list(range(16)),
        list(range(70000)),
        {str(i): i for i in range(15)},
        {str(i): i for i in range(16)},
        (1, "two", b"3"),
        1.5,
        math.inf,
        bytearray(b"ab"),
        memoryview(b"cd"),
    ],
)
def test_every_size_boundary(value: Any) -> None:
    assert minipack.pack(value) == msgpack_bytes(value)
    back = unpack_all(msgpack_bytes(value))[0]
    expected = msgpack.unpackb(msgpack_bytes(value), raw=False, strict_map_key=False)
    assert back == expected


def test_a_non_utf8_environment_value_travels_as_its_bytes() -> None:
    """os.environ holds b'\\xff' as '\\udcff'; it must reach the server as the byte 0xff."""
    frame = minipack.pack({"LANG": "\udcff"})
    assert b"\xff" in frame
    assert unpack_all(frame) == [{"LANG": "\udcff"}]
    server = msgpack.Unpacker(raw=False, unicode_errors="surrogateescape")
    server.feed(frame)
    assert next(server) == {"LANG": "\udcff"}


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"\xc1", "unsupported"),  # never used
        (b"\xd4\x01\x02", "unsupported"),  # fixext
        (b"\x81\x01\x02", "map key"),  # an int key
        (b"\xdd\xff\xff\xff\xff", "max_array_len"),
        (b"\xdf\xff\xff\xff\xff", "max_map_len"),
        (b"\xc6\xff\xff\xff\xff", "exceed the limit"),
        (b"\xdb\xff\xff\xff\xff", "exceed the limit"),
        (b"\x91" * 100 + b"\xc0", "nested"),
    ],
)
def test_malformed_or_oversized_input_is_refused_before_it_is_read(data: bytes, words: str) -> None:
    with pytest.raises(minipack.UnpackError, match=words):
        unpack_all(data, max_buffer_size=1 << 20, max_array_len=4096, max_map_len=1024)


def test_an_unfinished_object_waits_and_more_than_the_buffer_is_refused() -> None:
    unpacker = minipack.Unpacker(100, 10, 10)
    unpacker.feed(b"\xc4\x50" + b"z" * 40)  # bin of 80 bytes, half here
    assert list(unpacker) == []
    unpacker.feed(b"z" * 40)
    assert list(unpacker) == [b"z" * 80]
    assert unpacker.tell() == 82
    with pytest.raises(minipack.BufferFull):
        unpacker.feed(b"\xc4\xff" + b"z" * 120)


def test_unknown_types_are_refused_as_msgpack_refuses_them() -> None:
    with pytest.raises(TypeError, match="can not serialize 'object' object"):
        minipack.pack(object())
    with pytest.raises(OverflowError):
        minipack.pack(2**64)
    deep: list[Any] = []
    for _ in range(100):
        deep = [deep]
    with pytest.raises(ValueError, match="recursion"):
        minipack.pack(deep)


def test_the_light_decoder_yields_what_the_msgpack_one_yields() -> None:
    frames = [
        protocol.reply(3, {"id": 1, "command": ["sh", "\udcff"], "created": "x", "n": None}),
        protocol.output(b"\x00" * 70000),
        protocol.error(None, "boom", "text"),
        protocol.event("reset", {"data": b"\x1b[0m"}),
    ]
    stream = b"".join(frames)
    got: dict[bool, list[Any]] = {}
    for light in (False, True):
        decoder = protocol.Decoder(light=light)
        got[light] = [
            m for i in range(0, len(stream), 1000) for m in decoder.feed(stream[i : i + 1000])
        ]
        assert decoder.pending == 0
    assert got[True] == got[False]
    assert len(got[True]) == 4
