"""The tmuxish wire protocol, version 1. Every byte between client and server passes through here:
this docstring is the whole wire vocabulary, and every frame is built by a function below (no
module builds frames of its own).

Transport: a Unix stream socket carrying a plain msgpack stream. Every message is a msgpack array
whose first element is an integer message type. Terminal data is always msgpack ``bin``; text is
``str``; maps that may grow use string keys. Before it sends anything, a client checks with
SO_PEERCRED that the listening server is its own uid's or root's.

Handshake: both sides send ``[HELLO, version, info]`` first (``info`` is a map, e.g.
``{"pid": 123, "software": "tmuxish 0.1.0"}``). A client that wants the server to drive its
terminal itself (direct attach) sends exactly one file descriptor, its terminal, as SCM_RIGHTS
ancillary data on the sendmsg() that carries its HELLO; no other message carries descriptors.
Versions differ after an install over a running server: then only VERSIONLESS_COMMANDS
(``info``, ``upgrade``, ``kill-server``) are served, so the new client can still move the server
to the installed version. Frozen forever, for any two versions: msgpack arrays; the HELLO above;
``[REQUEST, id, command, args]``, ``[REPLY, id, result]`` and ``[ERROR, id | None, code, text]``
with their type numbers; those three commands with no required argument; the reply fields
``pid``, ``version``, ``sessions`` (info, upgrade); and the ``upgrade`` EVENT. For any other
request (or a stream message) the side that sees a different version replies
``[ERROR, None, "version-mismatch", text]`` naming both versions and closes. The server may
also refuse the connection with ``[ERROR, None, "permission-denied", text]`` before HELLO
(another uid).

Control (request/response, client to server)::

    [REQUEST, id, command, args]      command: str, args: map with str keys
    [REPLY,   id, result]             result: any msgpack value
    [ERROR,   id | None, code, text]  code: a stable string, see tmuxish.errors; id None: the
                                      whole connection failed (every pending request with it)

Requests (a TARGET is a session id, an all-digits string, or a name; None: the most recent).
SESSION is the session map: ``id, name, command (list), pid (None for a console session),
status ("running"|"exited"), exit_code, clients, cols, rows, created (ISO 8601), screen (bool),
screen_behind (bool), policy ("latest"|"smallest"|"largest")`` and optional ``log, log_max``,
``recording`` (the path, while one is written)::

    new            command (list[str] | None: the server user's $SHELL), name, cwd, cols, rows,
                   env (map), replace_env (bool: env is the whole environment), window_size
                   (one of WINDOW_SIZES), log (path), log_max (bytes), record (absolute
                   path), record_format ("v2"|"v3"), record_input (bool)  -> SESSION
    attach         target, cols, rows (0: leave the size), readonly, history (lines),
                   inside (the id the client runs in, refused), direct ({"keys": bin,
                   "timeout": seconds}: drive the terminal passed with HELLO)
                                   -> SESSION + initial (bin: repaint), reset (bin: see EVENT)
    ls                                                                     -> [SESSION, ...]
    get            target                                                  -> SESSION
    kill           target, signal (name or number, default HUP)            -> SESSION
    rm             target, force                                           -> SESSION
    rename         target, name                                            -> SESSION
    send           target, data (bin), app_data (bin: the same keys in application cursor
                   mode, used when the program set it), mark (bool)        -> bytes written;
                   with mark: {written, since: the output position at the send}
    resize         target, cols, rows                                      -> SESSION
    wait           target                                   -> exit code, once it has exited
    capture        target, history (bool), escapes (bool: keep colours)    -> str
    kill-server                                                            -> true
    info                              -> {pid, version, sessions, generation}
    upgrade                           -> {pid, version, sessions}; then the server re-executes
    run            target, command (str: the line the shell reads), timeout (seconds),
                   input (bin: typed once the command started)
                                -> first [EVENT, "run", {id, session}], then [OUTPUT, data]
                                   frames with what the command printed, then
                                   {exit_code, duration, session, timed_out?, session_exited?,
                                    incomplete?}
    run-follow     target, id (from the "run" event), timeout    -> as run, without the event:
                   the same command, on the next server after an upgrade or a crash (the
                   output it printed while no server ran comes first)
    watch          target, since (output position)  -> as attach; initial is the output after
                                                       since; the connection is an attachment
    prompt         target, within (seconds)  -> true once the shell is at its prompt (OSC 133);
                                                false if it was not within the time
    events         -> never answered: [EVENT, "tmuxish", {type, session, name, time, ...}]
                      frames until the connection closes (see server/events.py)
    console-socket name, persist, cols, rows, window_size    -> {path, name, persist}
    record         target, path (absolute), format ("v2"|"v3"), input (bool), term (str: TERM
                   for the header)                      -> SESSION + recording (RECORDING)
    record-stop    target; replies once the file is complete -> SESSION + recording (RECORDING)
    new-container  runtime, bundle, container_id, name, cols, rows, window_size -> SESSION

RECORDING is ``{path, format, input, written (bytes so far), dropped (output bytes dropped
because the disk was slow), error (str | None: a write error ended it)}``.

Stream (one-way, after a successful ``attach`` request)::

    client -> server  [INPUT, data]           bytes typed by the user, unchanged
    client -> server  [RESIZE, cols, rows]    the client's terminal size
    client -> server  [DETACH]                the user pressed the detach keys
    server -> client  [OUTPUT, data]          bytes the program wrote, unchanged
    server -> client  [EXITED, code]          the program exited; code is 128+N for signal N
    server -> client  [DETACHED, reason]      the server ended the attachment
    server -> client  [EVENT, name, data]     out-of-band notices (map)

Detach reasons (str): ``"detached"`` (the user asked: DETACH, or the detach keys on a direct
attach), ``"terminal gone"`` (the terminal passed with HELLO hung up), ``"client too slow:
..."`` and ``"client stopped reading for Ns"`` (the server dropped a client that fell behind),
``"session ended; its exit code is unknown"`` (a console session ended: EXITED never carries an
invented code).
Events: ``"reset" {"data": bin}`` the bytes that undo the terminal modes the program turned on
or ``"reset" {"written": true}`` on a direct attach: the server already wrote them to the
terminal it drives and the client must not reset it again; ``"upgrade" {}`` the server
is re-executing itself (``tmuxish server upgrade``) and closes every connection: clients
connect again, attached ones re-attach, ``wait`` waits on. It may arrive on any connection.

Message numbers are grouped (0-9 handshake/control, 10-29 stream) and a retired number is never
reused. Limits: a single frame may not exceed ``MAX_FRAME`` bytes (``MAX_CLIENT_FRAME`` from a
client to the server); a peer that sends more, or anything that is not a well-formed message,
gets an ERROR and is disconnected.
"""

from __future__ import annotations

from tmuxish import minipack

#: Not typing.TYPE_CHECKING: importing typing (and re with it) costs `tmuxish ls` ~15 ms.
TYPE_CHECKING = False

if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any, Final

    import msgpack

PROTOCOL_VERSION: Final = 1
#: Requests served between any two protocol versions (see the docstring: a frozen handshake).
VERSIONLESS_COMMANDS: Final = ("info", "upgrade", "kill-server")

HELLO: Final = 0
REQUEST: Final = 1
REPLY: Final = 2
ERROR: Final = 3

INPUT: Final = 10
OUTPUT: Final = 11
RESIZE: Final = 12
DETACH: Final = 13
EXITED: Final = 14
DETACHED: Final = 15
EVENT: Final = 16

#: The values of a ``window_size`` argument: which client's size a shared session takes.
WINDOW_SIZES: Final = ("latest", "smallest", "largest")

#: EVENT names.
RESET_EVENT: Final = "reset"
UPGRADE_EVENT: Final = "upgrade"
RUN_EVENT: Final = "run"
#: The DETACHED reason when the user detached (any other reason ends the client with status 1).
DETACHED_BY_USER: Final = "detached"
#: The program ended but its exit code is unknown (a console session): EXITED carries a code,
#: so this ends the attachment instead of inventing one.
DETACHED_EXIT_UNKNOWN: Final = "session ended; its exit code is unknown"

KNOWN_TYPES: Final = frozenset(
    {HELLO, REQUEST, REPLY, ERROR, INPUT, OUTPUT, RESIZE, DETACH, EXITED, DETACHED, EVENT}
)

#: The largest single frame either side accepts. Output chunks are at most 64 KiB and a repaint of
#: a large screen a few hundred KiB; captures with history can reach the history budget.
MAX_FRAME: Final = 64 * 1024 * 1024
#: The largest frame the server accepts from a client. Clients send keystrokes, pastes and small
#: requests; a peer announcing a gigabyte costs the server at most this much before it is cut off.
MAX_CLIENT_FRAME: Final = 8 * 1024 * 1024
MAX_ARRAY: Final = 4096
MAX_MAP: Final = 1024
#: The largest window side, in columns or rows, a client may ask for.
MAX_SIDE: Final = 10000
#: The most lines of history an attach writes first, and a session keeps.
MAX_HISTORY_LINES: Final = 1_000_000
#: The largest --log-max.
MAX_LOG_BYTES: Final = 1 << 40
#: The most `run --stdin` input one request carries: its frame, with the command line, must stay
#: within MAX_CLIENT_FRAME.
MAX_RUN_INPUT: Final = MAX_CLIENT_FRAME - 1024 * 1024

if TYPE_CHECKING:
    Message = list[Any]
else:
    Message = list  # typing stays out of `tmuxish ls`: ~4 ms of start-up


#: What either side writes to a user's terminal on detach when the session has no screen model to
#: say which modes its program turned on: mouse reporting, focus events and bracketed paste off,
#: cursor shown, attributes reset.
SANE_MODES: Final = (
    b"\x1b[?1000l\x1b[?1002l\x1b[?1003l\x1b[?1006l\x1b[?1015l\x1b[?1004l\x1b[?2004l\x1b[?25h\x1b[0m"
)


class ProtocolError(Exception):
    """The peer sent something that is not a valid tmuxish message."""


def encode(message: Message) -> bytes:
    """A frame the server sends, packed by msgpack (C: the fast way for big replies).

    msgpack is imported here, not at the top: the blocking client never needs it (see
    tmuxish.minipack), and the import costs `tmuxish ls` ~4 ms.
    """
    import msgpack

    return msgpack.packb(  # type: ignore[no-any-return]
        message, use_bin_type=True, unicode_errors="surrogateescape"
    )


def encode_small(message: Message) -> bytes:
    """A small frame a client sends, packed without msgpack: the same bytes (tmuxish.minipack)."""
    return minipack.pack(message)


def hello(info: dict[str, Any]) -> bytes:
    return encode_small([HELLO, PROTOCOL_VERSION, info])


def request(req_id: int, command: str, args: dict[str, Any]) -> bytes:
    return encode_small([REQUEST, req_id, command, args])


def reply(req_id: int, result: Any) -> bytes:
    return encode([REPLY, req_id, result])


def error(req_id: int | None, code: str, text: str) -> bytes:
    return encode([ERROR, req_id, code, text])


def output_header(length: int) -> bytes:
    """The bytes that precede ``length`` bytes of payload in an ``[OUTPUT, data]`` frame.

    ``output_header(len(d)) + d == encode([OUTPUT, d])``: the relay builds the header once per chunk
    and writes the same two objects to every client, so fan-out never copies or re-encodes output.
    """
    return _bin_frame_header(OUTPUT, length)


def _bin_frame_header(kind: int, length: int) -> bytes:
    """``[kind, bin]`` up to the bin's payload: msgpack's bytes, built without packing it."""
    if length < 0x100:
        return bytes((0x92, kind, 0xC4, length))
    if length < 0x10000:
        return bytes((0x92, kind, 0xC5)) + length.to_bytes(2, "big")
    return bytes((0x92, kind, 0xC6)) + length.to_bytes(4, "big")


def output(data: bytes) -> bytes:
    return output_header(len(data)) + data


def input_frame(data: bytes) -> bytes:
    return _bin_frame_header(INPUT, len(data)) + data


def resize(cols: int, rows: int) -> bytes:
    return encode_small([RESIZE, cols, rows])


def detach() -> bytes:
    return encode_small([DETACH])


def exited(code: int) -> bytes:
    return encode([EXITED, code])


def detached(reason: str) -> bytes:
    return encode([DETACHED, reason])


def event(name: str, data: dict[str, Any]) -> bytes:
    return encode([EVENT, name, data])


def reset_event(data: bytes) -> bytes:
    """The bytes that undo the program's terminal modes, for the client to write on detach."""
    return event(RESET_EVENT, {"data": data})


def reset_written_event() -> bytes:
    """Direct attach: the server has already reset the terminal; the client must not again."""
    return event(RESET_EVENT, {"written": True})


def run_event(run_id: str, session: int) -> bytes:
    """A run's id, for ``run-follow`` if the server goes away before the command ends."""
    return event(RUN_EVENT, {"id": run_id, "session": session})


def upgrade_event() -> bytes:
    """The server is re-executing itself: connect again in a moment."""
    return event(UPGRADE_EVENT, {})


#: The unpacker's first buffer. msgpack's default is 1 MiB; it grows as a frame needs.
READ_SIZE: Final = 4096
#: After a frame that needed more than this, the emptied buffer is given back.
SHRINK_ABOVE: Final = 256 * 1024


class Decoder:
    """Incremental decoder: ``feed`` bytes as they arrive, then iterate complete messages.

    Memory is bounded by ``max_frame``: msgpack's own ``max_bin_len`` is only checked once the data
    has arrived, so the real bound is the unpacker's buffer size (it raises BufferFull early).
    The buffer starts small and grows only as a frame needs; msgpack never shrinks it, so once a
    large frame is done and nothing is left over, the unpacker is replaced. With
    ``release_idle`` it is dropped whenever nothing is left over: an unpacker costs ~44 KiB
    (its parse stack is part of the object), which a server holding many idle connections
    should not pay for each; a new one for each read costs microseconds.

    ``light``: decode with tmuxish.minipack instead of msgpack (the blocking client, which must
    start without importing msgpack); the same messages come out, within the same limits.
    """

    def __init__(
        self, max_frame: int = MAX_FRAME, *, release_idle: bool = False, light: bool = False
    ) -> None:
        self._max_frame = max_frame
        self._release_idle = release_idle
        self._light = light
        self._failures: tuple[type[Exception], ...] = (ValueError, TypeError)
        self._full: type[Exception] = minipack.BufferFull
        if not light:
            import msgpack

            self._failures += (msgpack.UnpackException,)
            self._full = msgpack.BufferFull
        self._unpacker: msgpack.Unpacker | minipack.Unpacker | None = None
        #: Bytes fed to the current unpacker, and the offset just past its last complete
        #: message (its tell() is not exact in the middle of a frame).
        self._fed = 0
        self._done = 0
        self._peak = 0

    def _new_unpacker(self) -> msgpack.Unpacker | minipack.Unpacker:
        self._fed = self._done = self._peak = 0
        if self._light:
            return minipack.Unpacker(self._max_frame, MAX_ARRAY, MAX_MAP)
        import msgpack

        return msgpack.Unpacker(
            raw=False,
            use_list=True,
            strict_map_key=True,
            unicode_errors="surrogateescape",
            read_size=min(READ_SIZE, self._max_frame),
            max_buffer_size=self._max_frame,
            max_bin_len=self._max_frame,
            max_str_len=self._max_frame,
            max_array_len=MAX_ARRAY,
            max_map_len=MAX_MAP,
            max_ext_len=0,
        )

    @property
    def pending(self) -> int:
        """Bytes of an unfinished message held in the buffer (0 between messages)."""
        return self._fed - self._done

    def feed(self, data: bytes) -> Iterator[Message]:
        """Feed ``data`` and yield every message it completes. Raises ProtocolError on garbage."""
        unpacker = self._unpacker
        if unpacker is None:
            unpacker = self._unpacker = self._new_unpacker()
        try:
            unpacker.feed(data)
        except self._full as exc:
            raise ProtocolError("frame too large") from exc
        self._fed += len(data)
        self._peak = max(self._peak, self._fed - self._done)
        while True:
            try:
                obj = next(unpacker)
            except StopIteration:
                break
            except RecursionError as exc:
                raise ProtocolError("message nested too deeply") from exc
            except self._failures as exc:
                raise ProtocolError(f"malformed message: {exc}") from exc
            self._done = unpacker.tell()
            yield validate(obj)
        if self._fed == self._done and (self._release_idle or self._peak > SHRINK_ABOVE):
            self._unpacker = None


def validate(obj: Any) -> Message:
    """Check the envelope and stream message shapes; handlers check control payloads."""
    if not isinstance(obj, list) or not obj or type(obj[0]) is not int:
        raise ProtocolError("a message must be an array starting with an integer type")
    kind = obj[0]
    n = len(obj)
    if kind in (INPUT, OUTPUT):
        if n != 2 or not isinstance(obj[1], bytes):
            raise ProtocolError("INPUT/OUTPUT carry one bin")
    elif kind == RESIZE:
        if n != 3 or not all(type(v) is int and 0 <= v <= MAX_SIDE for v in obj[1:]):
            raise ProtocolError("RESIZE carries cols and rows")
    elif kind == REQUEST:
        if n != 4 or type(obj[1]) is not int or not isinstance(obj[2], str):
            raise ProtocolError("REQUEST is [type, id, command, args]")
        if not isinstance(obj[3], dict):
            raise ProtocolError("REQUEST args must be a map")
    elif kind == REPLY:
        if n != 3 or type(obj[1]) is not int:
            raise ProtocolError("REPLY is [type, id, result]")
    elif kind == ERROR:
        if n != 4 or not isinstance(obj[2], str) or not isinstance(obj[3], str):
            raise ProtocolError("ERROR is [type, id, code, text]")
    elif kind == HELLO:
        if n != 3 or type(obj[1]) is not int or not isinstance(obj[2], dict):
            raise ProtocolError("HELLO is [type, version, info]")
    elif kind == EXITED:
        if n != 2 or type(obj[1]) is not int:
            raise ProtocolError("EXITED carries the exit code")
    elif kind == DETACHED:
        if n != 2 or not isinstance(obj[1], str):
            raise ProtocolError("DETACHED carries a reason")
    elif kind == DETACH:
        if n != 1:
            raise ProtocolError("DETACH has no arguments")
    elif kind == EVENT:
        if n != 3 or not isinstance(obj[1], str):
            raise ProtocolError("EVENT is [type, name, data]")
    else:
        raise ProtocolError(f"unknown message type {kind}")
    return obj


def version_mismatch_text(ours: int, theirs: int, side: str) -> str:
    """The one message users see when client and server disagree, with the way out."""
    return (
        f"protocol version mismatch: this {side} speaks version {ours}, the other side speaks "
        f"version {theirs}; run 'tmuxish server upgrade' to move the running server and its "
        f"sessions to the installed version, or use the tmuxish that started the server"
    )
