"""Settings: flag > environment > config file > default for every option, and one-line errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tmuxish import config
from tmuxish.errors import ConfigError

#: For every option: (TOML text of a file value, env text, flag value, expected parsed value of
#: file, env and flag, and the parsed default).
CASES: dict[str, tuple[str, str, Any, Any, Any, Any, Any]] = {
    "detach_keys": (
        '"ctrl-a,d"',
        "ctrl-x",
        "ctrl-q",
        "ctrl-a,d",
        "ctrl-x",
        "ctrl-q",
        "ctrl-p,ctrl-q",
    ),
    "detach_timeout": ("1.5", "0.25", 2, 1.5, 0.25, 2.0, 0.5),
    "default_command": (
        '["bash", "-l"]',
        "zsh -i",
        ["fish"],
        ["bash", "-l"],
        ["zsh", "-i"],
        ["fish"],
        None,
    ),
    "default_size": ('"100x30"', "120x40", "90x20", (100, 30), (120, 40), (90, 20), (80, 24)),
    "window_size": ('"smallest"', "largest", "latest", "smallest", "largest", "latest", "latest"),
    "history_lines": ("100", "200", 0, 100, 200, 0, -1),
    "history_limit": ("5000", "3000", 0, 5000, 3000, 0, 14_000),
}


def env_var(key: str) -> str:
    option = next(o for o in config.OPTIONS if o.key == key)
    assert option.env is not None, f"{key} has no environment variable"
    return option.env


def write(tmp_path: Path, text: str) -> dict[str, str]:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return {"TMUXISH_CONFIG": str(path)}


def test_every_option_is_covered() -> None:
    assert set(CASES) == {o.key for o in config.OPTIONS}


@pytest.mark.parametrize("key", sorted(CASES))
def test_precedence(tmp_path: Path, key: str) -> None:
    file_text, env_text, flag, from_file, from_env, from_flag, default = CASES[key]
    var = env_var(key)
    path = tmp_path / "config.toml"
    empty = {"TMUXISH_CONFIG": str(tmp_path / "missing.toml")}

    s = config.load({}, empty)
    assert (s[key], s.sources[key]) == (default, "default")

    env = write(tmp_path, f"{key} = {file_text}\n")
    s = config.load({}, env)
    assert (s[key], s.sources[key]) == (from_file, str(path))

    s = config.load({key: None}, {**env, var: env_text})  # None: the flag was not given
    assert (s[key], s.sources[key]) == (from_env, f"env {var}")

    s = config.load({key: flag}, {**env, var: env_text})
    assert (s[key], s.sources[key]) == (from_flag, "flag")

    # Other options keep their defaults whatever one option does.
    for other, case in CASES.items():
        if other != key:
            assert config.load({key: flag}, {**env, var: env_text})[other] == case[-1]


def test_default_config_path_follows_xdg(tmp_path: Path) -> None:
    assert config.config_path({"XDG_CONFIG_HOME": str(tmp_path)}) == (
        tmp_path / "tmuxish" / "config.toml"
    )
    assert config.config_path({"HOME": "/home/u"}) == Path("/home/u/.config/tmuxish/config.toml")
    assert config.config_path({"TMUXISH_CONFIG": "/x.toml", "XDG_CONFIG_HOME": "/y"}) == Path(
        "/x.toml"
    )
    (tmp_path / "tmuxish").mkdir()
    (tmp_path / "tmuxish" / "config.toml").write_text("history_lines = 7\n")
    s = config.load({}, {"XDG_CONFIG_HOME": str(tmp_path)})
    assert s["history_lines"] == 7


def one_line_error(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        config.load({}, {**write(tmp_path, text), **(env or {})})
    message = str(info.value)
    assert "\n" not in message
    return message


def test_bad_toml(tmp_path: Path) -> None:
    message = one_line_error(tmp_path, 'detach_keys = "ctrl-p\nhistory_lines = \n')
    assert message.startswith(f"{tmp_path / 'config.toml'}: invalid TOML: ")
    assert "line 1" in message


def test_unknown_key(tmp_path: Path) -> None:
    message = one_line_error(tmp_path, 'detach_key = "ctrl-a"\n')
    assert message.startswith(f"{tmp_path / 'config.toml'}: detach_key: unknown key")
    assert "did you mean 'detach_keys'?" in message
    assert "history_lines" in message  # the known keys are listed
    message = one_line_error(tmp_path, "[server]\nport = 1\n")
    assert ": server: unknown key" in message


@pytest.mark.parametrize(
    ("key", "toml", "problem"),
    [
        ("detach_keys", "5", "must be a string"),
        ("detach_keys", '"ctrl-p,ctrl-shift-x"', "invalid detach key"),
        ("detach_timeout", '"soon"', "must be a number of seconds"),
        ("detach_timeout", "-1", "from 0 up"),
        ("detach_timeout", "true", "must be a number"),
        ("default_command", "[]", "non-empty"),
        ("default_command", '["bash", 3]', "list of strings"),
        ("default_command", '"bash \\"unclosed"', "cannot be split"),
        ("default_size", '"80by24"', "COLSxROWS"),
        ("default_size", '"0x24"', "COLSxROWS"),
        ("default_size", "80", "COLSxROWS"),
        ("window_size", '"biggest"', "latest, smallest, largest"),
        ("history_lines", '"many"', "must be an integer"),
        ("history_lines", "-2", "from -1 to 1000000"),
        ("history_lines", "1.5", "must be an integer"),
        ("history_limit", "-1", "from 0 to 1000000"),
        ("history_limit", '"lots"', "must be an integer"),
    ],
)
def test_bad_value_in_file(tmp_path: Path, key: str, toml: str, problem: str) -> None:
    message = one_line_error(tmp_path, f"{key} = {toml}\n")
    assert message.startswith(f"{tmp_path / 'config.toml'}: {key} = ")
    assert problem in message


def test_bad_value_in_env_and_flag(tmp_path: Path) -> None:
    env = {"TMUXISH_CONFIG": str(tmp_path / "missing.toml"), "TMUXISH_DEFAULT_SIZE": "big"}
    with pytest.raises(ConfigError, match=r"^env TMUXISH_DEFAULT_SIZE: default_size = 'big': "):
        config.load({}, env)
    # The option as the user typed it, not the internal key (issue 14).
    with pytest.raises(ConfigError, match=r"^--window-size 'wide': must be one of"):
        config.load({"window_size": "wide"}, {"TMUXISH_CONFIG": "/nonexistent"})
    # A good flag hides a bad environment value: the flag wins and the env is not consulted.
    assert config.load({"default_size": "10x10"}, env)["default_size"] == (10, 10)


def test_unreadable_config(tmp_path: Path) -> None:
    (tmp_path / "dir.toml").mkdir()
    with pytest.raises(ConfigError, match=r"dir\.toml: cannot read: "):
        config.load({}, {"TMUXISH_CONFIG": str(tmp_path / "dir.toml")})


def test_empty_detach_keys_disable_detaching(tmp_path: Path) -> None:
    s = config.load({}, {**write(tmp_path, 'detach_keys = ""\n')})
    assert s["detach_keys"] == ""


def run_cli(env_extra: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("TMUXISH")}
    env.update(env_extra)
    return subprocess.run(
        [sys.executable, "-P", "-m", "tmuxish", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
    )


def test_cli_reports_bad_config_in_one_line(tmp_path: Path) -> None:
    env = write(tmp_path, 'window_size = "wide"\n')
    proc = run_cli(env, "config", "--show")
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.count("\n") == 1
    assert proc.stderr.startswith(f"tmuxish: {tmp_path / 'config.toml'}: window_size = 'wide': ")


def test_cli_config_show_names_sources(tmp_path: Path) -> None:
    env = {**write(tmp_path, "history_lines = 50\n"), "TMUXISH_DETACH_KEYS": "ctrl-a"}
    proc = run_cli(env, "config", "--show")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == f"# {tmp_path / 'config.toml'}"
    assert f"history_lines = 50  # {tmp_path / 'config.toml'}" in lines
    assert 'detach_keys = "ctrl-a"  # env TMUXISH_DETACH_KEYS' in lines
    assert 'window_size = "latest"  # default' in lines
