"""Remote servers over SSH: `tmuxish -H ssh://[user@]host[:port] COMMAND`, like DOCKER_HOST=ssh://.

The local client runs `ssh HOST tmuxish dial-stdio` with one end of a socketpair as ssh's stdin
and stdout, and speaks the ordinary protocol through it; on the host, `dial-stdio` copies bytes
between its stdio and the server socket (starting the server as a local client would). Nothing
here decodes what passes through. ssh reads passwords and host-key answers from /dev/tty, so an
interactive login still works although stdin is a socket.
"""

from __future__ import annotations

import _socket
import contextlib
import os
import re
import select
import shlex
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from tmuxish import protocol
from tmuxish.client.connection import Connection
from tmuxish.errors import (
    ProgramNotFound,
    RemoteError,
    ServerGone,
    TmuxishError,
    UsageError,
)

#: How the host is named on the command line and in $TMUXISH_HOST.
HOST_ENV = "TMUXISH_HOST"
#: Extra ssh options, split like a shell would (e.g. "-i ~/.ssh/work -o ConnectTimeout=5").
SSH_OPTS_ENV = "TMUXISH_SSH_OPTS"
#: The tmuxish command on the host when it is not `tmuxish` on the remote PATH.
REMOTE_COMMAND_ENV = "TMUXISH_REMOTE_COMMAND"

#: What ssh reports when its remote command does not exist (the remote shell's status).
COMMAND_NOT_FOUND = 127
#: ssh's own exit status for its own failures (unreachable, refused, auth).
SSH_FAILED = 255
#: How long closing waits for ssh to go before it is killed.
CLOSE_GRACE = 2.0
#: After the server's greeting, requests get the usual deadline; ssh adds a network round trip.
REQUEST_TIMEOUT = 30.0

_HOST_RE = re.compile(
    r"^(?:(?P<user>[^@/:\s]+)@)?"  # user@
    r"(?P<host>\[[^\]\s]+\]|[^@/:\s\[\]]+)"  # host, or [IPv6]
    r"(?::(?P<port>\d+))?/?$"  # :port
)


@dataclass(frozen=True)
class SshHost:
    host: str
    user: str | None = None
    port: int | None = None

    def __str__(self) -> str:
        user = f"{self.user}@" if self.user else ""
        host = f"[{self.host}]" if ":" in self.host else self.host
        port = f":{self.port}" if self.port is not None else ""
        return f"ssh://{user}{host}{port}"


def parse_host(url: str) -> SshHost:
    """``ssh://[user@]host[:port]`` (IPv6 in brackets); anything else is a usage error."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme != "ssh":
        raise UsageError(f"-H wants ssh://[user@]host[:port], got {url!r}")
    match = _HOST_RE.match(rest)
    if match is None:
        raise UsageError(f"-H wants ssh://[user@]host[:port], got {url!r}")
    port = match["port"]
    if port is not None and not 0 < int(port) < 65536:
        raise UsageError(f"-H: port {port} is out of range")
    return SshHost(match["host"].strip("[]"), match["user"], int(port) if port else None)


def remote_command(env: dict[str, str] | os._Environ[str] = os.environ) -> list[str]:
    value = env.get(REMOTE_COMMAND_ENV, "").strip()
    return _words(REMOTE_COMMAND_ENV, value) if value else ["tmuxish"]


def _words(variable: str, value: str) -> list[str]:
    """``value`` split as a shell would; a bad one is the user's to fix, said in one line."""
    try:
        return shlex.split(value)
    except ValueError as exc:  # "No closing quotation"
        raise UsageError(f"env {variable}: cannot be split into words: {exc}") from None


def ssh_argv(host: SshHost, remote_argv: list[str], env: dict[str, str] | None = None) -> list[str]:
    """The ssh command line that runs ``remote_argv`` on ``host``.

    -T: no terminal on the far side, the stream carries protocol frames; -e none: a "~." inside a
    frame must not be taken for an ssh escape.
    """
    environ = os.environ if env is None else env
    argv = ["ssh", "-T", "-e", "none"]
    if host.port is not None:
        argv += ["-p", str(host.port)]
    if host.user:
        argv += ["-l", host.user]
    argv += _words(SSH_OPTS_ENV, environ.get(SSH_OPTS_ENV, ""))
    # The remote side hands the words to a shell: quote each one.
    argv += ["--", host.host, " ".join(shlex.quote(word) for word in remote_argv)]
    return argv


class RemoteConnection(Connection):
    """A protocol connection whose other end is ssh; closing it ends ssh too."""

    def __init__(
        self, sock: socket.socket, proc: subprocess.Popen[bytes], host: SshHost, stderr: IO[bytes]
    ) -> None:
        super().__init__(sock)
        self.proc = proc
        self.host = host
        self.stderr = stderr

    def close(self) -> None:
        super().close()
        try:
            self.proc.wait(CLOSE_GRACE)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.stderr.close()

    def link_lost(self, wait: float = 2.0) -> str | None:
        """Why an established stream ended when it was the ssh link (ssh exits 255), not the
        far server; None otherwise (issue 14: a dropped link read as '[server exited]')."""
        try:
            status = self.proc.wait(wait)
        except subprocess.TimeoutExpired:
            return None
        if status != SSH_FAILED:
            return None
        self.stderr.seek(0)
        lines = [
            line.strip()
            for line in self.stderr.read()[-4096:].decode(errors="replace").splitlines()
            if line.strip() and not line.startswith("Warning: Permanently added")
        ]
        detail = f": {lines[-1].removeprefix('ssh: ')}" if lines else ""
        return f"lost the ssh connection to {self.host}{detail}"

    def failure(self) -> TmuxishError:
        """Why the stream ended before the server greeted us, in ssh's or the host's words."""
        try:
            status = self.proc.wait(10.0)
        except subprocess.TimeoutExpired:
            return RemoteError(f"{self.host}: ssh closed the connection but did not exit")
        self.stderr.seek(0)
        lines = [
            line.strip()
            for line in self.stderr.read()[-4096:].decode(errors="replace").splitlines()
            if line.strip() and not line.startswith("Warning: Permanently added")
        ]
        last = lines[-1] if lines else f"ssh exited with status {status}"
        if status == COMMAND_NOT_FOUND:
            program = remote_command()[0]
            return ProgramNotFound(
                f"{program} not found on {self.host} (install tmuxish there, or set "
                f"{REMOTE_COMMAND_ENV})"
            )
        if status == SSH_FAILED:
            return RemoteError(f"{self.host}: {last.removeprefix('ssh: ')}")
        return RemoteError(f"{self.host}: {last.removeprefix('tmuxish: ')}")


def dial(host: SshHost, remote_args: list[str], start: bool) -> RemoteConnection:
    """Run `tmuxish dial-stdio` on ``host`` through ssh and greet its server."""
    argv = ssh_argv(
        host, [*remote_command(), *remote_args, "dial-stdio", *(() if start else ("--no-start",))]
    )
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    # A file, not a pipe: nobody reads it until something fails, and ssh must never block on it.
    stderr = tempfile.TemporaryFile()  # noqa: SIM115 (closed by RemoteConnection.close)
    try:
        # Not a new session: ssh asks for passwords on the controlling terminal.
        proc = subprocess.Popen(
            argv, stdin=theirs.fileno(), stdout=theirs.fileno(), stderr=stderr, close_fds=True
        )
    except FileNotFoundError:
        ours.close()
        stderr.close()
        raise ProgramNotFound("ssh not found: install an OpenSSH client for -H") from None
    finally:
        theirs.close()
    conn = RemoteConnection(ours, proc, host, stderr)
    try:
        # No deadline for the greeting: ssh may be waiting for a password, and it has its own
        # ConnectTimeout for hosts that do not answer.
        ours.settimeout(None)
        try:
            conn.handshake()
        except ServerGone:
            raise conn.failure() from None
        ours.settimeout(REQUEST_TIMEOUT)
    except BaseException:
        conn.close()
        raise
    return conn


def dial_stdio(socket_path: Path, start: bool) -> int:
    """The host's end of -H: copy bytes between stdin/stdout and the server socket.

    A failure to reach the server is sent as a protocol ERROR, so the far client reports it as
    if it had connected itself.
    """
    from tmuxish.client.autostart import dial

    try:
        sock = dial(socket_path, start)
    except TmuxishError as exc:
        _write_all(1, protocol.error(None, exc.code, str(exc)))
        return exc.exit_status
    try:
        _copy(sock)
    finally:
        sock.close()
    return 0


def _copy(sock: _socket.socket) -> None:
    """Both directions until the server closes; stdin's EOF is passed on as a half-close."""
    sock.setblocking(True)
    sock.settimeout(None)
    server = sock.fileno()
    poller = select.poll()
    poller.register(0, select.POLLIN)
    poller.register(server, select.POLLIN)
    stdin_open = True
    while True:
        for fd, _ in poller.poll():
            if fd == server:
                try:
                    data = sock.recv(262144)
                except OSError:
                    return
                if not data:
                    return
                try:
                    _write_all(1, data)
                except OSError:
                    return  # ssh is gone: nobody is left to read
            elif stdin_open:
                try:
                    data = os.read(0, 262144)
                except OSError:
                    data = b""
                if data:
                    try:
                        sock.sendall(data)
                    except OSError:
                        return
                else:
                    stdin_open = False
                    poller.unregister(0)
                    with contextlib.suppress(OSError):
                        sock.shutdown(socket.SHUT_WR)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]
