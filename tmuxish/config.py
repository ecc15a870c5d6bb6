"""Settings from flags, environment and the TOML config file, in one precedence order.

flag > environment > config file > built-in default, for every command. Each effective value
remembers where it came from, for `tmuxish config --show`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

from tmuxish.errors import ConfigError
from tmuxish.keys import DEFAULT_DETACH_KEYS, parse_detach_keys
from tmuxish.protocol import MAX_HISTORY_LINES


def _parse_size(value: Any) -> tuple[int, int]:
    if isinstance(value, str) and "x" in value:
        cols, _, rows = value.partition("x")
        if _digits(cols) and _digits(rows) and 0 < int(cols) <= 10000 and 0 < int(rows) <= 10000:
            return int(cols), int(rows)
    raise ValueError("must look like COLSxROWS, each from 1 to 10000, e.g. 80x24")


def _digits(text: str) -> bool:
    """ASCII digits only: str.isdigit also passes Arabic-Indic digits, which int() takes, and
    superscripts, which it refuses."""
    return text.isascii() and text.isdigit()


def _parse_float(value: Any) -> float:
    """A non-negative number of seconds (TOML number, or a string from the environment)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError("must be a number of seconds, e.g. 0.5")
    try:
        number = float(value)
    except ValueError:
        raise ValueError("must be a number of seconds, e.g. 0.5") from None
    if not 0 <= number < float("inf"):
        raise ValueError("must be a number of seconds from 0 up, e.g. 0.5")
    return number


def _parse_int(value: Any) -> int:
    """A number of lines from -1 up (-1: the option's automatic value)."""
    if isinstance(value, bool):
        raise ValueError("must be an integer")
    if isinstance(value, str) and _digits(value.strip().removeprefix("-")):
        value = int(value)
    if not isinstance(value, int):
        raise ValueError("must be an integer")
    if not -1 <= value <= MAX_HISTORY_LINES:
        raise ValueError(f"must be from -1 to {MAX_HISTORY_LINES}")
    return value


def _parse_count(value: Any) -> int:
    """A number of lines from 0 up."""
    if isinstance(value, bool):
        raise ValueError("must be an integer")
    if isinstance(value, str) and _digits(value.strip()):
        value = int(value)
    if not isinstance(value, int):
        raise ValueError("must be an integer")
    if not 0 <= value <= MAX_HISTORY_LINES:
        raise ValueError(f"must be from 0 to {MAX_HISTORY_LINES}")
    return value


def _parse_keys(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("must be a string like 'ctrl-p,ctrl-q'")
    parse_detach_keys(value)
    return value


def _parse_command(value: Any) -> list[str]:
    """A list of strings, or one string split like a shell would (``"bash -l"``)."""
    if isinstance(value, str):
        import shlex

        try:
            value = shlex.split(value)
        except ValueError as exc:
            raise ValueError(f"cannot be split into words: {exc}") from None
    if isinstance(value, list) and value and all(isinstance(v, str) and v for v in value):
        return list(value)
    raise ValueError('must be a non-empty string or list of strings, e.g. ["bash", "-l"]')


def _parse_policy(value: Any) -> str:
    from tmuxish.protocol import WINDOW_SIZES

    if value not in WINDOW_SIZES:
        raise ValueError(f"must be one of {', '.join(WINDOW_SIZES)}")
    return str(value)


#: Lines of history a session keeps, whatever its width (the server's screen model).
DEFAULT_HISTORY_LIMIT = 14_000


# A NamedTuple and a plain class rather than dataclasses: importing dataclasses (and the
# inspect module it pulls in) costs ~8 ms, and every command loads this module.
class Option(NamedTuple):
    key: str
    env: str | None
    default: Any
    parse: Callable[[Any], Any]
    help: str


OPTIONS: tuple[Option, ...] = (
    Option(
        "detach_keys",
        "TMUXISH_DETACH_KEYS",
        DEFAULT_DETACH_KEYS,
        _parse_keys,
        "key sequence that detaches, docker format; empty disables",
    ),
    Option(
        "detach_timeout",
        "TMUXISH_DETACH_TIMEOUT",
        0.5,
        _parse_float,
        "seconds before a partly typed detach sequence is sent to the program",
    ),
    Option(
        "default_command",
        "TMUXISH_DEFAULT_COMMAND",
        None,
        _parse_command,
        "program for `new` without a command (default: $SHELL, else /bin/sh)",
    ),
    Option(
        "default_size",
        "TMUXISH_DEFAULT_SIZE",
        "80x24",
        _parse_size,
        "size of a detached new session, COLSxROWS",
    ),
    Option(
        "window_size",
        "TMUXISH_WINDOW_SIZE",
        "latest",
        _parse_policy,
        "size policy with several clients: latest, smallest or largest",
    ),
    Option(
        "history_lines",
        "TMUXISH_HISTORY_LINES",
        -1,
        _parse_int,
        "lines of history written before the repaint on attach (-1: one screenful)",
    ),
    Option(
        "history_limit",
        "TMUXISH_HISTORY_LIMIT",
        DEFAULT_HISTORY_LIMIT,
        _parse_count,
        "lines of history each session keeps, at any width (read when the server starts)",
    ),
)
_BY_KEY = {o.key: o for o in OPTIONS}


def _unknown_key(key: str) -> str:
    import difflib

    close = difflib.get_close_matches(key, list(_BY_KEY), n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"unknown key ({hint}known keys: {', '.join(_BY_KEY)})"


def config_path(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    if env.get("TMUXISH_CONFIG"):
        return Path(env["TMUXISH_CONFIG"])
    base = env.get("XDG_CONFIG_HOME") or os.path.join(env.get("HOME", "~"), ".config")
    return Path(os.path.expanduser(base)) / "tmuxish" / "config.toml"


#: A config file is a few lines; anything past this is not one.
MAX_CONFIG_BYTES = 1024 * 1024


def _read_config(path: Path) -> bytes | None:
    """The file's bytes, or None if there is none. Opened non-blocking and checked to be a
    regular file first: a FIFO would hang every command, a device could be endless."""
    import errno
    import stat

    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            return None
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError(f"{path}: cannot read: not a regular file")
        if st.st_size > MAX_CONFIG_BYTES:
            raise ConfigError(f"{path}: cannot read: larger than {MAX_CONFIG_BYTES} bytes")
        chunks: list[bytes] = []
        size = 0
        while chunk := os.read(fd, 65536):
            size += len(chunk)
            if size > MAX_CONFIG_BYTES:
                raise ConfigError(f"{path}: cannot read: larger than {MAX_CONFIG_BYTES} bytes")
            chunks.append(chunk)
        return b"".join(chunks)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    finally:
        os.close(fd)


def _parse_toml(path: Path, data: bytes) -> dict[str, Any]:
    import tomllib  # only when there is a file to parse: the import costs ~6 ms

    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: not UTF-8 text (byte {exc.start})") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        problem = " ".join(str(exc).split())
        raise ConfigError(f"{path}: invalid TOML: {problem}") from exc
    except RecursionError:
        raise ConfigError(f"{path}: invalid TOML: nested too deeply") from None


class Settings:
    """Effective values by option key, and where each came from (for `config --show`)."""

    __slots__ = ("sources", "values")

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}
        self.sources: dict[str, str] = {}

    def __repr__(self) -> str:
        return f"Settings(values={self.values!r}, sources={self.sources!r})"

    def __getitem__(self, key: str) -> Any:
        return self.values[key]


def load(flags: Mapping[str, Any] | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """Effective settings; ``flags`` maps option keys to command-line values (None: not given)."""
    env = os.environ if env is None else env
    path = config_path(env)
    file_values: dict[str, Any] = {}
    data = _read_config(path)
    if data is not None:
        file_values = _parse_toml(path, data)
        for key in file_values:
            if key not in _BY_KEY:
                raise ConfigError(f"{path}: {key}: {_unknown_key(key)}")
    settings = Settings()
    for option in OPTIONS:
        flag = (flags or {}).get(option.key)
        if flag is not None:
            raw, source = flag, "flag"
        elif option.env and option.env in env:
            raw, source = env[option.env], f"env {option.env}"
        elif option.key in file_values:
            raw, source = file_values[option.key], str(path)
        else:
            default = option.default
            settings.values[option.key] = (
                option.parse(default) if isinstance(default, str) and default else default
            )
            settings.sources[option.key] = "default"
            continue
        try:
            settings.values[option.key] = option.parse(raw)
        except Exception as exc:  # ValueError, or a UsageError from the key parser
            problem = " ".join(str(exc).split())
            if source == "flag":
                # Name the option as the user typed it, not our key (issue 14).
                flag_name = "--" + option.key.replace("_", "-")
                raise ConfigError(f"{flag_name} {raw!r}: {problem}") from exc
            raise ConfigError(f"{source}: {option.key} = {raw!r}: {problem}") from exc
        settings.sources[option.key] = source
    return settings


def _toml_value(value: Any) -> str:
    """``value`` as TOML: JSON's strings, numbers and arrays of strings are valid TOML too."""
    import json

    if isinstance(value, tuple):  # default_size, parsed: written back as the file takes it
        return json.dumps("x".join(str(v) for v in value))
    return json.dumps(value)


def show(settings: Settings) -> str:
    """`config --show`: the effective settings as a config file the loader accepts, each with
    where it came from; an option without a value is shown commented out."""
    lines = [f"# {config_path()}\n"]
    for option in OPTIONS:
        value = settings.values[option.key]
        source = settings.sources[option.key]
        if value is None:
            lines.append(f"# {option.key} = (unset)  # {source}: {option.help}\n")
        else:
            lines.append(f"{option.key} = {_toml_value(value)}  # {source}\n")
    return "".join(lines)
