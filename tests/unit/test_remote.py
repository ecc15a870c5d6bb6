"""The pure parts of -H: the host URL and the ssh command line."""

from __future__ import annotations

import shlex

import pytest

from tmuxish.client.remote import SshHost, parse_host, remote_command, ssh_argv
from tmuxish.errors import UsageError


@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("ssh://box", SshHost("box")),
        ("ssh://me@box", SshHost("box", "me")),
        ("ssh://me@box:2222", SshHost("box", "me", 2222)),
        ("ssh://box.example.com:22/", SshHost("box.example.com", None, 22)),
        ("ssh://[::1]:2222", SshHost("::1", None, 2222)),
        ("ssh://me@[fe80::1]", SshHost("fe80::1", "me")),
    ],
)
def test_parse_host(url: str, host: SshHost) -> None:
    assert parse_host(url) == host
    assert parse_host(str(host)) == host


@pytest.mark.parametrize(
    "url",
    [
        "box",
        "http://box",
        "ssh://",
        "ssh://a:b:c",
        "ssh://box:0",
        "ssh://box:65536",
        "ssh://me@",
        "ssh://box/path",
        "ssh://a b",
    ],
)
def test_bad_host_is_a_usage_error(url: str) -> None:
    with pytest.raises(UsageError):
        parse_host(url)


def test_ssh_argv_quotes_the_remote_words() -> None:
    argv = ssh_argv(
        SshHost("box", "me", 2222),
        ["/opt/my tmuxish/bin/tmuxish", "-S", "/tmp/a b", "dial-stdio"],
        env={"TMUXISH_SSH_OPTS": "-i '/keys/my key' -o ConnectTimeout=5"},
    )
    assert argv[:4] == ["ssh", "-T", "-e", "none"]
    assert argv[4:8] == ["-p", "2222", "-l", "me"]
    assert argv[8:12] == ["-i", "/keys/my key", "-o", "ConnectTimeout=5"]
    # A host named like an option cannot become one.
    assert argv[12:14] == ["--", "box"]
    # The far shell splits the command back into exactly our words.
    assert shlex.split(argv[14]) == [
        "/opt/my tmuxish/bin/tmuxish",
        "-S",
        "/tmp/a b",
        "dial-stdio",
    ]


def test_remote_command_from_environment() -> None:
    assert remote_command({}) == ["tmuxish"]
    assert remote_command({"TMUXISH_REMOTE_COMMAND": "python3 -m tmuxish"}) == [
        "python3",
        "-m",
        "tmuxish",
    ]
