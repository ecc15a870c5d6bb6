"""Other users: refused by SO_PEERCRED even through an open socket; untrusted directories refused.

A second uid needs root (setpriv from util-linux switches to nobody). The directory checks apply
to the default socket directory ($XDG_RUNTIME_DIR/tmuxish), which the tests point at a temp dir.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hardkit import CAT, Kit, echo_check
from helpers import TMUXISH, Cli, pid_alive, wait_for

from tmuxish import protocol

NOBODY = 65534
SYSTEM_PYTHON = "/usr/bin/python3"

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="a second uid needs root (setpriv)")
needs_setpriv = pytest.mark.skipif(
    shutil.which("setpriv") is None or not os.path.exists(SYSTEM_PYTHON),
    reason="needs util-linux setpriv and a system python3 that nobody can run",
)

#: Runs as nobody: connect, say HELLO, print whatever the server answers (hex) until it closes.
PEER = r"""
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(10)
s.connect(sys.argv[1])
s.sendall(bytes.fromhex(sys.argv[2]))
got = b""
while True:
    try:
        b = s.recv(65536)
    except ConnectionResetError:
        break
    if not b:
        break
    got += b
print(got.hex())
"""


def as_nobody(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", *argv],
        capture_output=True,
        text=True,
        timeout=30,
        cwd="/",
    )


@needs_root
@needs_setpriv
def test_another_uid_is_refused_even_through_an_open_socket(kit: Kit) -> None:
    sid = kit.cli.new(*CAT)
    pid = kit.server_pid()
    # Open everything up: only SO_PEERCRED stands between nobody and the server now.
    os.chmod(kit.path.parent, 0o777)
    os.chmod(kit.path, 0o777)
    hello = protocol.hello({"pid": 1}) + protocol.request(1, "ls", {})
    hello += protocol.request(2, "send", {"target": sid, "data": b"pwned"})
    result = as_nobody(SYSTEM_PYTHON, "-c", PEER, str(kit.path), hello.hex())
    assert result.returncode == 0, result.stderr
    messages = list(protocol.Decoder().feed(bytes.fromhex(result.stdout.strip())))
    assert len(messages) == 1, messages  # no HELLO, no reply: just the refusal
    kind, req_id, code, text = messages[0]
    assert (kind, req_id, code) == (protocol.ERROR, None, "permission-denied")
    assert f"uid {NOBODY} may not use it" in text and f"belongs to uid {os.getuid()}" in text
    print(f"\nrefusal seen by uid {NOBODY}: {text}")
    # Nothing reached the session; the server and its owner carry on.
    assert pid_alive(pid)
    echo_check(kit, sid, b"owner-ok")
    log = (kit.path.parent / "s.log").read_text()
    assert f"refused connection from uid {NOBODY}" in log


@contextlib.contextmanager
def runtime_dir() -> Iterator[tuple[Path, dict[str, str]]]:
    """A private XDG_RUNTIME_DIR, so the CLI uses (and polices) $XDG_RUNTIME_DIR/tmuxish."""
    base = Path(tempfile.mkdtemp(dir="/tmp", prefix="txr"))
    env = Cli(base / "unused").env
    env["XDG_RUNTIME_DIR"] = str(base)
    env.pop("TMUXISH_SOCKET", None)
    try:
        yield base, env
    finally:
        # Stop any server the test started there, then remove everything.
        with contextlib.suppress(Exception):
            d = base / "tmuxish"
            os.chown(d, os.getuid(), os.getgid())
            os.chmod(d, 0o700)
            subprocess.run([*TMUXISH, "kill-server"], env=env, capture_output=True, timeout=15)
        shutil.rmtree(base, ignore_errors=True)


def tmuxish(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*TMUXISH, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
    )


def test_default_directory_is_created_private_and_used() -> None:
    with runtime_dir() as (base, env):
        made = tmuxish(env, "new", "-d", "--", "sleep", "1000")
        assert made.returncode == 0, made.stderr
        d = base / "tmuxish"
        st = os.lstat(d)
        assert stat.S_IMODE(st.st_mode) == 0o700 and st.st_uid == os.getuid()
        assert stat.S_IMODE(os.lstat(d / "default").st_mode) & 0o077 == 0
        assert "sleep 1000" in tmuxish(env, "ls").stdout
        assert tmuxish(env, "kill-server").returncode == 0
        wait_for(lambda: not (d / "default").exists(), 10, "socket removed")


@pytest.mark.parametrize("mode", [0o750, 0o705, 0o777, 0o710])
def test_group_or_world_accessible_directory_is_refused(mode: int) -> None:
    with runtime_dir() as (base, env):
        d = base / "tmuxish"
        d.mkdir(mode=0o700)
        os.chmod(d, mode)
        for args in (("ls",), ("new", "-d", "--", "true"), ("-L", "other", "ls")):
            r = tmuxish(env, *args)
            assert r.returncode != 0, f"{args} accepted a {mode:o} directory"
            assert "accessible by other users" in r.stderr and f"chmod 700 {d}" in r.stderr, (
                r.stderr
            )
        # The server itself refuses to start there too, and nothing was created.
        r = tmuxish(env, "server")
        assert r.returncode != 0 and "accessible by other users" in r.stderr, r.stderr
        assert os.listdir(d) == []
        assert stat.S_IMODE(os.lstat(d).st_mode) == mode  # we never "fix" it behind the user's back


@needs_root
def test_directory_owned_by_someone_else_is_refused() -> None:
    with runtime_dir() as (base, env):
        d = base / "tmuxish"
        d.mkdir(mode=0o700)
        os.chown(d, NOBODY, NOBODY)
        for args in (("ls",), ("new", "-d", "--", "true"), ("server",)):
            r = tmuxish(env, *args)
            assert r.returncode != 0, f"{args} accepted a directory owned by nobody"
            assert f"owned by uid {NOBODY}, not by you (uid {os.getuid()})" in r.stderr, r.stderr
        assert os.listdir(d) == []


def test_symlinked_directory_is_refused() -> None:
    with runtime_dir() as (base, env):
        real = base / "elsewhere"
        real.mkdir(mode=0o700)
        (base / "tmuxish").symlink_to(real)
        r = tmuxish(env, "new", "-d", "--", "true")
        assert r.returncode != 0 and "is not a directory" in r.stderr, r.stderr
        assert os.listdir(real) == []
