"""A server run by another user on our socket path is refused before it hears a byte from us.

With ``-S`` in a shared directory, another user can listen on the path first; tmux would hand
that server the user's terminal and environment. The client checks SO_PEERCRED right after
connecting. A second uid needs root (setpriv from util-linux switches to nobody).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest
from helpers import Cli

SYSTEM_PYTHON = "/usr/bin/python3"
AS_NOBODY = ("setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups")

#: Runs as nobody: listen on the path, and report every byte any client sends until killed.
SQUATTER = r"""
import os, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind(sys.argv[1])
os.chmod(sys.argv[1], 0o777)
s.listen(8)
print("listening", flush=True)
while True:
    conn, _ = s.accept()
    conn.settimeout(2)
    try:
        data = conn.recv(65536)
    except OSError:
        data = b""
    print(f"got {len(data)} bytes", flush=True)
    conn.close()
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="a second uid needs root (setpriv)")
@pytest.mark.skipif(
    shutil.which("setpriv") is None or not os.path.exists(SYSTEM_PYTHON),
    reason="needs util-linux setpriv and a system python3 that nobody can run",
)
def test_a_server_of_another_uid_is_refused_before_anything_is_sent() -> None:
    shared = Path(tempfile.mkdtemp(dir="/tmp", prefix="tx"))
    os.chmod(shared, 0o1777)  # like /tmp: anyone may create a socket here
    path = shared / "s"
    squatter = subprocess.Popen(
        [*AS_NOBODY, SYSTEM_PYTHON, "-c", SQUATTER, str(path)],
        stdout=subprocess.PIPE,
        text=True,
        cwd="/",
    )
    try:
        assert squatter.stdout is not None
        assert squatter.stdout.readline() == "listening\n"
        cli = Cli(path)
        for args in (("ls",), ("send", "1", "secret"), ("new", "-d", "--", "true")):
            proc = cli.run(*args, check=False)
            assert proc.returncode == 1, (args, proc)
            assert proc.stderr == (
                f"tmuxish: the server on {path} belongs to uid 65534, not to you (uid 0); "
                "refusing to talk to it\n"
            ), proc.stderr
        # A last connection of our own: once it is reported, every earlier one has been.
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sentinel:
            sentinel.connect(str(path))
            sentinel.sendall(b"end")
        lines = list(iter(squatter.stdout.readline, "got 3 bytes\n"))
        assert len(lines) >= 3 and set(lines) == {"got 0 bytes\n"}, lines
    finally:
        squatter.kill()
        squatter.wait(10)
        shutil.rmtree(shared, ignore_errors=True)
