"""The wire codec: round trips at every split point, limits, and garbage."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tmuxish import protocol
from tmuxish.protocol import Decoder, ProtocolError

MESSAGES = [
    [protocol.HELLO, 1, {"pid": 1, "software": "tmuxish"}],
    [protocol.REQUEST, 7, "ls", {}],
    [protocol.REQUEST, 8, "new", {"command": ["sh", "-c", "echo é"], "cols": 80}],
    [protocol.REPLY, 7, [{"id": 1, "name": None}]],
    [protocol.ERROR, None, "bad-request", "nope"],
    [protocol.INPUT, b"\x00\x10\x11\xff"],
    [protocol.OUTPUT, bytes(range(256)) * 300],
    [protocol.RESIZE, 132, 50],
    [protocol.DETACH],
    [protocol.EXITED, 130],
    [protocol.DETACHED, "detached"],
    [protocol.EVENT, "reset", {"data": b"\x1b[?25h"}],
]


def decode_all(data: bytes, splits: list[int]) -> list[protocol.Message]:
    decoder = Decoder()
    out: list[protocol.Message] = []
    last = 0
    for cut in [*sorted(splits), len(data)]:
        out.extend(decoder.feed(data[last:cut]))
        last = cut
    return out


def test_round_trip_every_split_point() -> None:
    small = [m for m in MESSAGES if m[0] != protocol.OUTPUT] + [[protocol.OUTPUT, b"x" * 300]]
    stream = b"".join(protocol.encode(m) for m in small)
    for cut in range(len(stream) + 1):
        assert decode_all(stream, [cut]) == small


@settings(max_examples=300)
@given(st.lists(st.integers(min_value=0, max_value=5000), max_size=12))
def test_round_trip_random_splits(splits: list[int]) -> None:
    stream = b"".join(protocol.encode(m) for m in MESSAGES)
    splits = [s % (len(stream) + 1) for s in splits]
    assert decode_all(stream, splits) == MESSAGES


@given(st.binary(max_size=200_000))
def test_output_header_matches_packb(data: bytes) -> None:
    assert protocol.output(data) == msgpack.packb([protocol.OUTPUT, data], use_bin_type=True)


@pytest.mark.parametrize("size", [0, 1, 255, 256, 65535, 65536, 1 << 20])
def test_output_header_boundaries(size: int) -> None:
    data = b"a" * size
    assert protocol.output(data) == msgpack.packb([protocol.OUTPUT, data], use_bin_type=True)
    assert list(Decoder().feed(protocol.output(data))) == [[protocol.OUTPUT, data]]


def test_huge_bin_header_is_refused_before_data_arrives() -> None:
    decoder = Decoder(max_frame=1024 * 1024)
    # An OUTPUT frame claiming 4 GiB: feeding the header alone must not allocate that.
    header = b"\x92\x0b\xc6\xff\xff\xff\xff"
    with pytest.raises(ProtocolError):
        for _ in range(10):
            list(decoder.feed(header + b"\0" * 200_000))


def test_buffer_bound() -> None:
    decoder = Decoder(max_frame=4096)
    with pytest.raises(ProtocolError):
        list(decoder.feed(b"\x92\x0b\xc5\xff\xff" + b"\0" * 5000))


@pytest.mark.parametrize(
    "obj",
    [
        {"a": 1},
        [],
        ["x"],
        [99, 1],
        [protocol.INPUT, "text not bytes"],
        [protocol.INPUT],
        [protocol.RESIZE, 80],
        [protocol.RESIZE, -1, 24],
        [protocol.RESIZE, 80, 99999],
        [protocol.REQUEST, "id", "ls", {}],
        [protocol.REQUEST, 1, "ls", []],
        [protocol.HELLO, "1", {}],
        [protocol.DETACH, 1],
        [True, 1],
    ],
)
def test_malformed_messages(obj: object) -> None:
    with pytest.raises(ProtocolError):
        list(Decoder().feed(msgpack.packb(obj, use_bin_type=True)))


def test_garbage_raises_protocol_error_only() -> None:
    for garbage in [b"GET / HTTP/1.1\r\n\r\n", b"\xc1", b"\x91" * 100000]:
        with pytest.raises(ProtocolError):
            list(Decoder().feed(garbage))


@settings(max_examples=2000)
@given(st.binary(max_size=512))
def test_fuzz_decoder_never_crashes(data: bytes) -> None:
    try:
        for message in Decoder(max_frame=65536).feed(data):
            assert isinstance(message, list)
    except ProtocolError:
        pass


def test_version_mismatch_text_names_both_versions() -> None:
    text = protocol.version_mismatch_text(1, 2, "client")
    assert "1" in text and "2" in text and "upgrade" in text


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (protocol.hello({"pid": 1}), [protocol.HELLO, protocol.PROTOCOL_VERSION, {"pid": 1}]),
        (protocol.request(7, "ls", {}), [protocol.REQUEST, 7, "ls", {}]),
        (protocol.reply(7, [1]), [protocol.REPLY, 7, [1]]),
        (protocol.error(None, "bad-request", "no"), [protocol.ERROR, None, "bad-request", "no"]),
        (protocol.input_frame(b"\x00x"), [protocol.INPUT, b"\x00x"]),
        (protocol.output(b"y" * 70000), [protocol.OUTPUT, b"y" * 70000]),
        (protocol.resize(80, 24), [protocol.RESIZE, 80, 24]),
        (protocol.detach(), [protocol.DETACH]),
        (protocol.exited(130), [protocol.EXITED, 130]),
        (protocol.detached("detached"), [protocol.DETACHED, "detached"]),
        (protocol.reset_event(b"\x1b[0m"), [protocol.EVENT, "reset", {"data": b"\x1b[0m"}]),
        (protocol.upgrade_event(), [protocol.EVENT, "upgrade", {}]),
    ],
)
def test_every_builder_makes_the_documented_valid_message(
    frame: bytes, message: list[object]
) -> None:
    assert list(protocol.Decoder().feed(frame)) == [message]
    assert frame == protocol.encode(message)
    assert protocol.validate(message) == message


def test_the_docstring_names_every_message_type_and_request() -> None:
    doc = protocol.__doc__ or ""
    names = [
        "HELLO",
        "REQUEST",
        "REPLY",
        "ERROR",
        "INPUT",
        "OUTPUT",
        "RESIZE",
        "DETACH",
        "EXITED",
        "DETACHED",
        "EVENT",
    ]
    assert {getattr(protocol, n) for n in names} == set(protocol.KNOWN_TYPES)
    for name in names:
        assert f"[{name}" in doc, name
    commands = "new attach ls get kill rm rename send resize wait capture kill-server info upgrade"
    for command in [*commands.split(), "console-socket", "new-container"]:
        assert f"\n    {command} " in doc, command
