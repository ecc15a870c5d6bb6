"""The client core without I/O: greetings, which message answers which request, stream state,
and the one wording of each way a connection fails."""

from __future__ import annotations

import errno
from collections import deque

import pytest

from tmuxish import protocol
from tmuxish.client import core
from tmuxish.errors import (
    ServerGone,
    ServerUpgrading,
    SessionNotFound,
    TmuxishError,
    VersionMismatch,
)


def test_request_ids_count_up_and_ride_in_their_frames() -> None:
    requests = core.Requests()
    first, frame = requests.frame("ls", {})
    second, _ = requests.frame("get", {"target": 1})
    assert (first, second) == (1, 2)
    assert list(protocol.Decoder().feed(frame)) == [[protocol.REQUEST, 1, "ls", {}]]


@pytest.mark.parametrize(
    ("message", "answer"),
    [
        ([protocol.REPLY, 3, {"id": 1}], (3, {"id": 1}, None)),
        ([protocol.OUTPUT, b"x"], None),
        ([protocol.EXITED, 0], None),
        ([protocol.EVENT, "reset", {"data": b""}], None),
    ],
)
def test_what_answers_a_request(message: protocol.Message, answer: object) -> None:
    assert core.Requests.answer(message) == answer


def test_an_error_answers_its_request_and_one_without_id_fails_them_all() -> None:
    answer = core.Requests.answer([protocol.ERROR, 4, "session-not-found", "no session 9"])
    assert answer is not None and answer[0] == 4 and isinstance(answer[2], SessionNotFound)
    with pytest.raises(VersionMismatch):
        core.Requests.answer([protocol.ERROR, None, "version-mismatch", "v2"])


def test_the_upgrade_notice_means_connect_again_wherever_it_arrives() -> None:
    notice = [protocol.EVENT, "upgrade", {}]
    with pytest.raises(ServerUpgrading):
        core.Requests.answer(notice)
    with pytest.raises(ServerUpgrading):
        core.check_hello(notice)
    assert issubclass(ServerUpgrading, ServerGone)  # callers that only know ServerGone still stop


def test_greetings() -> None:
    info = {"pid": 9, "software": "tmuxish 0.1.0"}
    assert core.check_hello([protocol.HELLO, protocol.PROTOCOL_VERSION, info]) == info
    with pytest.raises(VersionMismatch, match="speaks version 99"):
        core.check_hello([protocol.HELLO, 99, info])
    # For the frozen requests (protocol.VERSIONLESS_COMMANDS) any version is fine.
    assert core.check_hello([protocol.HELLO, 99, info], any_version=True) == info
    with pytest.raises(ServerGone, match="did not greet"):
        core.check_hello([protocol.REPLY, 1, None])
    hello = next(protocol.Decoder().feed(core.hello()))
    assert hello[:2] == [protocol.HELLO, protocol.PROTOCOL_VERSION]


def test_one_wording_per_failure() -> None:
    assert str(core.lost_connection(OSError(errno.EPIPE, "Broken pipe"))) == (
        "lost connection to the server: Broken pipe"
    )
    assert str(core.lost_connection(ConnectionResetError())) == (
        "lost connection to the server: ConnectionResetError"
    )
    with pytest.raises(ServerGone, match=r"^the server closed the connection$"):
        core.server_messages(protocol.Decoder(), b"")
    with pytest.raises(ServerGone, match=r"^the server sent garbage: "):
        core.server_messages(protocol.Decoder(), b"\xc1")
    assert str(core.no_answer("ls")) == "the server did not answer 'ls' in time"


def test_stream_state_joins_output_and_stops_at_the_end() -> None:
    state = core.StreamState()
    pending: deque[protocol.Message] = deque(
        [
            [protocol.OUTPUT, b"a"],
            [protocol.EVENT, "reset", {"data": b"\x1b[0m"}],
            [protocol.OUTPUT, b"b"],
            [protocol.EXITED, 3],
            [protocol.OUTPUT, b"after"],
        ]
    )
    assert state.take(pending) == b"ab"
    assert (state.ended, state.exit_code, state.reset) == (True, 3, b"\x1b[0m")
    assert list(pending) == [[protocol.OUTPUT, b"after"]]
    detached = core.StreamState()
    assert detached.take(deque([[protocol.DETACHED, "detached"]])) == b""
    assert detached.detach_reason == "detached"
    with pytest.raises(TmuxishError, match="boom"):
        core.StreamState().take(deque([[protocol.ERROR, None, "error", "boom"]]))
