"""Fixtures for the remote tests: one sshd for the run, and a CLI that goes through it."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
from collections.abc import Iterator

import pytest
from helpers import Cli, wait_for
from sshd_host import SSHD, RemoteCli, Sshd, free_port, keygen


@pytest.fixture(scope="session")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    if not os.path.exists(SSHD) or shutil.which("ssh") is None:
        pytest.skip("OpenSSH server and client are not installed (.ci/run installs them)")
    d = tmp_path_factory.mktemp("sshd")
    for name in ("host_key", "client_key", "stranger_key"):
        keygen(d / name)
    (d / "authorized_keys").write_text((d / "client_key.pub").read_text())
    port = free_port()
    (d / "sshd_config").write_text(
        f"Port {port}\n"
        "ListenAddress 127.0.0.1\n"
        f"HostKey {d / 'host_key'}\n"
        f"AuthorizedKeysFile {d / 'authorized_keys'}\n"
        f"PidFile {d / 'sshd.pid'}\n"
        "PasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\n"
        "PubkeyAuthentication yes\n"
        "PermitRootLogin yes\n"
        "StrictModes no\n"
        "UsePAM no\n"
        "LogLevel ERROR\n"
    )
    if os.geteuid() == 0:
        # The privilege-separation directory; Debian's init scripts normally make it.
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
    log = open(d / "sshd.log", "wb")  # noqa: SIM115 (closed below)
    proc = subprocess.Popen(
        [SSHD, "-D", "-e", "-f", str(d / "sshd_config")], stdout=log, stderr=log
    )

    def listening() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"sshd exited: {(d / 'sshd.log').read_text()}")
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", port)) == 0

    try:
        wait_for(listening, 15, "sshd to listen")
        yield Sshd(port, d / "client_key", d / "stranger_key", d)
    finally:
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(5)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture
def remote(sshd: Sshd, cli: Cli) -> RemoteCli:
    """A CLI on the sshd host whose far server is ``cli``'s (stopped by ``cli``'s teardown)."""
    r = RemoteCli(cli.socket_path, sshd)
    r.children = cli.children
    return r
