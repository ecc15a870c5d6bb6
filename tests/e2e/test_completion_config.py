"""Shell completion run in a real bash (and zsh when installed), and `--help` examples."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from helpers import TMUXISH, Cli

from tmuxish.cli import build_parser


@pytest.fixture
def shell_env(cli: Cli, tmp_path: Path) -> dict[str, str]:
    """An environment whose `tmuxish` on PATH is this checkout's CLI."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    wrapper = bin_dir / "tmuxish"
    wrapper.write_text("#!/bin/sh\nexec " + " ".join(TMUXISH) + ' "$@"\n')
    wrapper.chmod(0o755)
    env = dict(cli.env)
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    return env


def bash_complete(env: dict[str, str], *lines: list[str]) -> list[list[str]]:
    """COMPREPLY for each command line (the last word is the one being completed)."""
    script = ['eval "$(tmuxish completion bash)"']
    for words in lines:
        quoted = " ".join("'" + w.replace("'", "'\\''") + "'" for w in words)
        script.append(
            f"COMP_WORDS=({quoted}); COMP_CWORD={len(words) - 1}; COMPREPLY=(); _tmuxish; "
            'printf "%s\\n" "${COMPREPLY[*]}"'
        )
    proc = subprocess.run(
        ["bash", "--norc", "--noprofile", "-c", "\n".join(script)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    return [line.split() for line in proc.stdout.splitlines()]


def test_bash_completes_subcommands_and_options(shell_env: dict[str, str]) -> None:
    result = bash_complete(
        shell_env,
        ["tmuxish", "at"],
        ["tmuxish", "k"],
        ["tmuxish", "-"],
        ["tmuxish", "ls", "--j"],
        ["tmuxish", "new", "--window-size", "l"],
        ["tmuxish", "-S", "/tmp/x", "new", "-d", "--det"],
        ["tmuxish", "kill", "-s", "TE"],
        ["tmuxish", "completion", ""],
        ["tmuxish", "new", "--", "bas"],
    )
    assert result[0] == ["attach"]
    assert result[1] == ["kill", "kill-server"]
    assert {"-S", "-L", "--version", "--help"} <= set(result[2])
    assert result[3] == ["--json"]
    assert result[4] == ["latest", "largest"]
    assert result[5] == ["--detach-keys"]
    assert result[6] == ["TERM"]
    assert result[7] == ["bash", "zsh"]
    assert "bash" in result[8]  # program names after `new --`
    # Hidden internals are not offered.
    assert not any(w.startswith("_") for w in bash_complete(shell_env, ["tmuxish", ""])[0])


def test_bash_completes_session_ids_and_names(cli: Cli, shell_env: dict[str, str]) -> None:
    cli.new("cat", name="web")
    cli.new("cat", name="worker")
    cli.new("cat")
    sock = str(cli.socket_path)
    result = bash_complete(
        shell_env,
        ["tmuxish", "-S", sock, "attach", ""],
        ["tmuxish", "-S", sock, "attach", "w"],
        ["tmuxish", "-S", sock, "kill", "-s", "TERM", "wor"],
        ["tmuxish", "-S", sock, "send", "web", "Ent"],
        ["tmuxish", "-S", sock, "rename", "3", ""],  # the new name is free text
        ["tmuxish", "attach", "w"],  # another server (none runs there): nothing, quietly
    )
    assert sorted(result[0]) == ["1", "2", "3", "web", "worker"]
    assert result[1] == ["web", "worker"]
    assert result[2] == ["worker"]
    assert result[3] == ["Enter"]
    assert result[4] == []
    assert result[5] == []


def test_complete_targets_is_quiet_and_never_starts_a_server(cli: Cli) -> None:
    proc = cli.run("_complete-targets")
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")
    assert not cli.socket_path.exists()
    sid = cli.new("cat", name="svc")
    assert cli.run("_complete-targets").stdout.split() == [str(sid), "svc"]


@pytest.mark.skipif(shutil.which("zsh") is None, reason="zsh is not installed")
def test_zsh_script_loads(shell_env: dict[str, str], tmp_path: Path) -> None:
    script = tmp_path / "tmuxish.zsh"
    script.write_text(
        subprocess.run(
            ["tmuxish", "completion", "zsh"],
            env=shell_env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    check = subprocess.run(["zsh", "-n", str(script)], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    zdot = tmp_path / "zdot"
    zdot.mkdir()
    loaded = subprocess.run(
        [
            "zsh",
            "-f",
            "-c",
            f"autoload -Uz compinit && compinit -u -d {zdot}/.zcompdump; "
            f"source {script}; print -r -- $_comps[tmuxish]",
        ],
        capture_output=True,
        text=True,
        env=shell_env,
        timeout=60,
    )
    assert (loaded.returncode, loaded.stdout.strip(), loaded.stderr) == (0, "_tmuxish", "")


@pytest.mark.skipif(shutil.which("zsh") is None, reason="zsh is not installed")
def test_zsh_completes_for_real(cli: Cli, shell_env: dict[str, str], tmp_path: Path) -> None:
    """An interactive zsh under zpty: type a partial word and Tab, read until it is completed."""
    cli.new("cat", name="web")
    sock = cli.socket_path
    driver = tmp_path / "drive.zsh"
    driver.write_text(
        f"""
zmodload zsh/zpty
zpty z zsh -f -i
zpty -w z "PS1='> '; autoload -Uz compinit; compinit -u -d {tmp_path}/.zcompdump; \
eval \\"\\$(tmuxish completion zsh)\\"; print RE''ADY"
zpty -r z out '*READY*'  # the output, not the echo of the command line
complete() {{
    zpty -w -n z "$1"$'\\t'
    zpty -r z out "*$2*"  # the typed prefix alone never contains $2
    print -r -- "ok: $2"
    zpty -w -n z $'\\x15'
}}
complete 'tmuxish comp' completion
complete 'tmuxish -S {sock} attach w' web
complete 'tmuxish new --window-size sm' smallest
zpty -d z
"""
    )
    proc = subprocess.run(
        ["zsh", "-f", str(driver)], capture_output=True, text=True, env=shell_env, timeout=60
    )
    assert proc.stdout.split("\n")[:3] == ["ok: completion", "ok: web", "ok: smallest"], (
        proc.stdout + proc.stderr
    )


def subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    visible = {a.dest for a in action._choices_actions}
    return {name: sub for name, sub in action.choices.items() if name in visible}


@pytest.mark.parametrize("name", sorted(subcommands()))
def test_every_command_help_has_an_example(name: str) -> None:
    text = subcommands()[name].format_help()
    assert "example:\n  " in text, text
    example = text.split("example:\n", 1)[1].strip()
    assert "tmuxish" in example


def test_top_level_help_has_examples() -> None:
    text = build_parser().format_help()
    assert "examples:" in text
    assert "completion" in text
