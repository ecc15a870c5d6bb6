"""tmux-style key names (``Enter``, ``C-c``, ``M-Left``, ``F5``) to the bytes a terminal sends.

Follows ``tmux send-keys``: an argument that is not a key name is sent as its own text, so
``send 1 'echo hi' Enter`` types the command and presses Enter. Modifier prefixes are ``C-``,
``M-`` and ``S-`` in any order and case, and ``^x`` means ``C-x``; multi-letter names are
case-insensitive, single characters are themselves. ``0x41``-style hexadecimal key codes work
as in tmux.

Where tmux and xterm differ, xterm wins because that is what programs expect from a terminal:
Home and End are ``ESC[H``/``ESC[F``, and Meta on a special key uses the xterm modifier
parameter (``M-Up`` is ``ESC[1;3A``) rather than an ESC prefix.
"""

from __future__ import annotations

from tmuxish.errors import UsageError

#: Not typing.TYPE_CHECKING: importing typing (and re with it) costs `tmuxish ls` ~15 ms.
TYPE_CHECKING = False

if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any, Final

#: xterm modifier parameter bits (the parameter sent is 1 + these).
_SHIFT: Final = 1
_META: Final = 2
_CTRL: Final = 4
_MODIFIER_PREFIXES: Final[dict[str, int]] = {"c": _CTRL, "m": _META, "s": _SHIFT}

#: Names that stand for a character, so modifiers apply to them as to that character.
_CHAR_NAMES: Final[dict[str, str]] = {
    "enter": "\r",
    "tab": "\t",
    "space": " ",
    "escape": "\x1b",
    "bspace": "\x7f",
}


def _csi(first: str, final: str) -> tuple[bytes, bytes]:
    """Plain form and modified template of an xterm key: ``ESC[<first><final>``."""
    plain = f"\x1b[{'' if first == '1' and final != '~' else first}{final}"
    return plain.encode(), f"\x1b[{first};%d{final}".encode()


#: Special keys: (unmodified bytes, template taking the xterm modifier parameter or None).
_SPECIAL: Final[dict[str, tuple[bytes, bytes | None]]] = {
    "up": _csi("1", "A"),
    "down": _csi("1", "B"),
    "right": _csi("1", "C"),
    "left": _csi("1", "D"),
    "home": _csi("1", "H"),
    "end": _csi("1", "F"),
    "ic": _csi("2", "~"),
    "insert": _csi("2", "~"),
    "dc": _csi("3", "~"),
    "delete": _csi("3", "~"),
    "ppage": _csi("5", "~"),
    "pageup": _csi("5", "~"),
    "pgup": _csi("5", "~"),
    "npage": _csi("6", "~"),
    "pagedown": _csi("6", "~"),
    "pgdn": _csi("6", "~"),
    "btab": (b"\x1b[Z", None),
    # F1-F4 are SS3 sequences unmodified but CSI ones with a modifier.
    **{
        f"f{n}": (b"\x1bO" + c, b"\x1b[1;%d" + c) for n, c in enumerate((b"P", b"Q", b"R", b"S"), 1)
    },
    **{
        f"f{n}": _csi(code, "~")
        for n, code in enumerate(("15", "17", "18", "19", "20", "21", "23", "24"), 5)
    },
    # Keypad keys as xterm sends them outside application keypad mode (tmux sends \n for Enter).
    **{f"kp{c}": (c.encode(), None) for c in "0123456789/*-+."},
    "kpenter": (b"\r", None),
}

#: Unmodified cursor keys while the program has set application cursor keys (DECCKM, as vi
#: and less do): terminals then send SS3 forms, and some programs only understand those.
_APP_CURSOR: Final[dict[str, bytes]] = {
    "up": b"\x1bOA",
    "down": b"\x1bOB",
    "right": b"\x1bOC",
    "left": b"\x1bOD",
    "home": b"\x1bOH",
    "end": b"\x1bOF",
}

#: Control characters beyond the letters and @[\]^_ (legacy xterm and tmux conventions).
_CTRL_EXTRA: Final[dict[str, int]] = {
    " ": 0x00,
    "2": 0x00,
    "3": 0x1B,
    "4": 0x1C,
    "5": 0x1D,
    "6": 0x1E,
    "7": 0x1F,
    "8": 0x7F,
    "/": 0x1F,
    "-": 0x1F,
    "?": 0x7F,
}


def key_bytes(name: str) -> bytes:
    """The bytes for one key name; UsageError if ``name`` is not a key or cannot be sent."""
    data = _lookup(name)
    if data is None:
        raise UsageError(f"unknown key name '{name}'")
    return data


def keys_to_bytes(keys: Sequence[str], literal: bool = False, app_cursor: bool = False) -> bytes:
    """Join the bytes of every argument: key names, or text for anything that is not a name.

    With ``literal`` every argument is text. Text is UTF-8; undecodable command-line bytes
    (surrogate escapes) go out as the original bytes. ``app_cursor``: the cursor keys as a
    terminal sends them in application cursor mode.
    """
    parts: list[bytes] = []
    for key in keys:
        data = None if literal else _lookup(key, app_cursor)
        parts.append(_text(key) if data is None else data)
    return b"".join(parts)


def _text(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def _lookup(name: str, app_cursor: bool = False) -> bytes | None:
    """Bytes for a key name, None if it is not one; UsageError if it is but cannot be sent."""
    if name.startswith("0x") and len(name) > 2:
        return _hex_key(name)
    modifiers, base = _split_modifiers(name)
    if base is None:
        return None
    lower = base.lower()
    if len(base) == 1:
        # Like tmux, a raw control character is not a key name; it still goes out as text.
        return None if ord(base) < 0x20 else _modified_char(name, base, modifiers)
    if lower in _CHAR_NAMES:
        return _modified_char(name, _CHAR_NAMES[lower], modifiers)
    if app_cursor and not modifiers and lower in _APP_CURSOR:
        return _APP_CURSOR[lower]
    if lower in _SPECIAL:
        return _modified_special(name, lower, modifiers)
    return None


def _hex_key(name: str) -> bytes | None:
    try:
        code = int(name[2:], 16)
    except ValueError:
        return None
    if not name[2:].isalnum() or code > 0x10FFFF:
        return None
    try:
        return chr(code).encode("utf-8")
    except UnicodeEncodeError:
        raise UsageError(f"cannot send key '{name}': not a character") from None


def _split_modifiers(name: str) -> tuple[int, str | None]:
    """Strip ``^`` and ``C-``/``M-``/``S-`` prefixes; base None means not a key name."""
    modifiers = 0
    rest = name
    if len(rest) > 1 and rest[0] == "^":
        modifiers |= _CTRL
        rest = rest[1:]
    while len(rest) > 1 and rest[1] == "-":
        bit = _MODIFIER_PREFIXES.get(rest[0].lower())
        if bit is None:
            return 0, None
        modifiers |= bit
        rest = rest[2:]
    return modifiers, (rest or None)


def _modified_char(name: str, char: str, modifiers: int) -> bytes:
    meta = b"\x1b" if modifiers & _META else b""
    if modifiers & _SHIFT:
        if modifiers & _CTRL:
            raise _cannot(name)
        if char == "\t":
            return meta + _SPECIAL["btab"][0]
        if not ("a" <= char.lower() <= "z"):
            raise _cannot(name)
        char = char.upper()
    if modifiers & _CTRL:
        code = ord(char)
        if 0x40 <= code <= 0x5F or ord("a") <= code <= ord("z"):
            char = chr(code & 0x1F)
        elif char in _CTRL_EXTRA:
            char = chr(_CTRL_EXTRA[char])
        else:
            raise _cannot(name)
    return meta + _text(char)


def _modified_special(name: str, lower: str, modifiers: int) -> bytes:
    plain, template = _SPECIAL[lower]
    if not modifiers:
        return plain
    if template is not None:
        return template % (1 + modifiers)
    if modifiers == _META:
        return b"\x1b" + plain
    raise _cannot(name)


def _cannot(name: str) -> UsageError:
    return UsageError(f"cannot send key '{name}': no terminal sends that combination")


def send_args(
    keys: str | Sequence[str] | bytes | bytearray | memoryview, literal: bool = False
) -> dict[str, Any]:
    """The ``send`` request's arguments: bytes as they are, a str as UTF-8 text, a list as key
    names. For key names that differ in application cursor mode (Up, Home, ...) the other form
    rides along as ``app_data``; the server picks by the mode the program has set, as tmux does.
    """
    if isinstance(keys, bytes | bytearray | memoryview):
        return {"data": bytes(keys)}
    if isinstance(keys, str):
        return {"data": keys.encode("utf-8", "surrogateescape")}
    data = keys_to_bytes(list(keys), literal=literal)
    app_data = keys_to_bytes(list(keys), literal=literal, app_cursor=True)
    return {"data": data} if app_data == data else {"data": data, "app_data": app_data}
