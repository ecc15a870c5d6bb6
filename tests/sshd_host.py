"""A real OpenSSH server on 127.0.0.1 for the remote-attach tests: keys, config, a CLI using it.

The "remote" host is this machine: the far tmuxish is this checkout's Python
(`TMUXISH_REMOTE_COMMAND`), and the far server listens on the test's private socket, which
`-S` carries through ssh. So a test can check the far side with a plain local CLI.
"""

from __future__ import annotations

import os
import shlex
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from helpers import TMUXISH, Cli

SSHD = "/usr/sbin/sshd"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def keygen(path: Path) -> None:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)],
        check=True,
        capture_output=True,
    )


def ssh_opts(key: Path) -> str:
    """What every test's ssh needs: our key only, no prompts, no known_hosts on disk."""
    return " ".join(
        shlex.quote(word)
        for word in (
            "-F",
            "/dev/null",
            "-i",
            str(key),
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "LogLevel=ERROR",
            "-o",
            "ConnectTimeout=10",
        )
    )


@dataclass
class Sshd:
    port: int
    key: Path
    #: A key the server does not accept.
    stranger_key: Path
    dir: Path

    @property
    def url(self) -> str:
        return f"ssh://{os.environ.get('USER') or 'root'}@127.0.0.1:{self.port}"


class RemoteCli(Cli):
    """The real CLI, every command sent to the sshd host with -H."""

    def __init__(self, socket_path: Path, sshd: Sshd) -> None:
        super().__init__(socket_path)
        self.sshd = sshd
        self.env["TMUXISH_SSH_OPTS"] = ssh_opts(sshd.key)
        self.env["TMUXISH_REMOTE_COMMAND"] = f"{shlex.quote(sys.executable)} -P -m tmuxish"
        self.env.pop("TMUXISH_HOST", None)

    def argv(self, *args: str) -> list[str]:
        return [*TMUXISH, "-H", self.sshd.url, "-S", str(self.socket_path), *args]
