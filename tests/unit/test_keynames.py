"""tmux-style key names for ``tmuxish send``: names, modifiers, literal fallback, errors."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tmuxish.errors import UsageError
from tmuxish.keynames import key_bytes, keys_to_bytes


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Enter", b"\r"),
        ("Tab", b"\t"),
        ("BTab", b"\x1b[Z"),
        ("Escape", b"\x1b"),
        ("Space", b" "),
        ("BSpace", b"\x7f"),
        ("Up", b"\x1b[A"),
        ("Down", b"\x1b[B"),
        ("Right", b"\x1b[C"),
        ("Left", b"\x1b[D"),
        ("Home", b"\x1b[H"),
        ("End", b"\x1b[F"),
        ("PageUp", b"\x1b[5~"),
        ("PgUp", b"\x1b[5~"),
        ("PPage", b"\x1b[5~"),
        ("PageDown", b"\x1b[6~"),
        ("PgDn", b"\x1b[6~"),
        ("NPage", b"\x1b[6~"),
        ("IC", b"\x1b[2~"),
        ("Insert", b"\x1b[2~"),
        ("DC", b"\x1b[3~"),
        ("Delete", b"\x1b[3~"),
        ("F1", b"\x1bOP"),
        ("F2", b"\x1bOQ"),
        ("F3", b"\x1bOR"),
        ("F4", b"\x1bOS"),
        ("F5", b"\x1b[15~"),
        ("F6", b"\x1b[17~"),
        ("F7", b"\x1b[18~"),
        ("F8", b"\x1b[19~"),
        ("F9", b"\x1b[20~"),
        ("F10", b"\x1b[21~"),
        ("F11", b"\x1b[23~"),
        ("F12", b"\x1b[24~"),
        ("KP5", b"5"),
        ("KPEnter", b"\r"),
        ("KP*", b"*"),
    ],
)
def test_names(name: str, expected: bytes) -> None:
    assert key_bytes(name) == expected
    assert key_bytes(name.lower()) == expected
    assert key_bytes(name.upper()) == expected


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("C-a", b"\x01"),
        ("C-A", b"\x01"),
        ("c-c", b"\x03"),
        ("C-z", b"\x1a"),
        ("^c", b"\x03"),
        ("^[", b"\x1b"),
        ("C-@", b"\x00"),
        ("C-Space", b"\x00"),
        ("C-space", b"\x00"),
        ("C-[", b"\x1b"),
        ("C-\\", b"\x1c"),
        ("C-]", b"\x1d"),
        ("C-^", b"\x1e"),
        ("C-_", b"\x1f"),
        ("C-?", b"\x7f"),
        ("C-2", b"\x00"),
        ("C-6", b"\x1e"),
        ("C-/", b"\x1f"),
        ("C--", b"\x1f"),
        ("M-a", b"\x1ba"),
        ("m-x", b"\x1bx"),
        ("M-C-a", b"\x1b\x01"),
        ("C-M-a", b"\x1b\x01"),
        ("^M-a", b"\x1b\x01"),
        ("M-Enter", b"\x1b\r"),
        ("M-Space", b"\x1b "),
        ("M-é", "\x1bé".encode()),
        ("S-a", b"A"),
        ("S-Tab", b"\x1b[Z"),
        ("M-BTab", b"\x1b\x1b[Z"),
        ("C-Up", b"\x1b[1;5A"),
        ("S-Up", b"\x1b[1;2A"),
        ("M-Up", b"\x1b[1;3A"),
        ("C-M-Left", b"\x1b[1;7D"),
        ("C-S-M-Right", b"\x1b[1;8C"),
        ("S-Home", b"\x1b[1;2H"),
        ("C-End", b"\x1b[1;5F"),
        ("C-PageUp", b"\x1b[5;5~"),
        ("S-Delete", b"\x1b[3;2~"),
        ("C-F1", b"\x1b[1;5P"),
        ("S-F4", b"\x1b[1;2S"),
        ("C-F5", b"\x1b[15;5~"),
        ("M-F12", b"\x1b[24;3~"),
        ("M-KP1", b"\x1b1"),
    ],
)
def test_modifiers(name: str, expected: bytes) -> None:
    assert key_bytes(name) == expected


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("a", b"a"),
        ("A", b"A"),
        ("-", b"-"),
        ("^", b"^"),
        ("é", "é".encode()),
        ("\u2603", "\u2603".encode()),
        ("0x41", b"A"),
        ("0x1b", b"\x1b"),
        ("0xe9", "é".encode()),
    ],
)
def test_single_characters_and_hex(name: str, expected: bytes) -> None:
    assert key_bytes(name) == expected


@pytest.mark.parametrize(
    "name",
    ["", "hello", "echo hi", "Enterr", "M-", "C-", "X-a", "a-b", "--", "0x", "0xzz", "\x01", "F13"],
)
def test_unknown_names(name: str) -> None:
    with pytest.raises(UsageError, match="unknown key name"):
        key_bytes(name)


@pytest.mark.parametrize(
    "name",
    ["C-1", "C-Enter", "C-Tab", "C-Escape", "S-1", "C-S-a", "C-BTab", "S-KP1", "C-é", "0xd800"],
)
def test_names_no_terminal_can_send(name: str) -> None:
    with pytest.raises(UsageError, match="cannot send key"):
        key_bytes(name)


def test_keys_to_bytes_mixes_names_and_text() -> None:
    assert keys_to_bytes(["echo hi", "Enter"]) == b"echo hi\r"
    assert keys_to_bytes(["ls", "Space", "-l", "C-m"]) == b"ls -l\r"
    assert keys_to_bytes(["Up", "Up", "Enter"]) == b"\x1b[A\x1b[A\r"
    assert keys_to_bytes(["hello", "a-b", "M-"]) == b"helloa-bM-"
    assert keys_to_bytes([]) == b""
    assert keys_to_bytes([""]) == b""


def test_keys_to_bytes_literal() -> None:
    assert keys_to_bytes(["Enter", "C-c", " ", "é"], literal=True) == "EnterC-c é".encode()


def test_keys_to_bytes_refuses_names_no_terminal_can_send() -> None:
    with pytest.raises(UsageError):
        keys_to_bytes(["C-Enter"])
    assert keys_to_bytes(["C-Enter"], literal=True) == b"C-Enter"


def test_undecodable_argv_bytes_go_out_unchanged() -> None:
    raw = b"caf\xe9 \xff"
    arg = raw.decode("utf-8", "surrogateescape")
    assert keys_to_bytes([arg]) == raw
    assert keys_to_bytes([arg], literal=True) == raw


@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=20))
def test_literal_is_utf8(text: str) -> None:
    assert keys_to_bytes([text], literal=True) == text.encode()


@given(st.text(alphabet="abcdefghijklmnopqrstuvwxyz ,.!?", min_size=2, max_size=20))
def test_words_that_are_not_names_are_text(text: str) -> None:
    try:
        expected = key_bytes(text)
    except UsageError:
        expected = text.encode()
    assert keys_to_bytes([text]) == expected


def test_application_cursor_keys() -> None:
    keys = ["Up", "Down", "Right", "Left", "Home", "End"]
    assert keys_to_bytes(keys, app_cursor=True) == b"\x1bOA\x1bOB\x1bOC\x1bOD\x1bOH\x1bOF"
    # Modified cursor keys, other keys and text are the same in both modes.
    assert keys_to_bytes(["C-Up", "F5", "Up"], literal=True, app_cursor=True) == b"C-UpF5Up"
    assert keys_to_bytes(["C-Up", "PageUp", "x"], app_cursor=True) == keys_to_bytes(
        ["C-Up", "PageUp", "x"]
    )
