"""Remote attach end to end: the real CLI, -H ssh://, a real sshd on 127.0.0.1."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pexpect
import pytest
from helpers import Cli, detach, wait_for
from sshd_host import RemoteCli, Sshd, free_port, ssh_opts

pytestmark = pytest.mark.timeout(120)


def test_new_ls_attach_type_resize_detach(remote: RemoteCli, cli: Cli) -> None:
    # No server on the far side yet: `new` starts one there, as it would locally.
    assert cli.server_pid() is None
    sid = int(remote.run("new", "-d", "-x", "100", "-y", "30", "--", "sh").stdout)
    assert cli.server_pid() is not None
    listed = remote.run("ls").stdout
    assert re.search(rf"^{sid}\s+-\s+sh\s+running", listed, re.M), listed

    child: Any = remote.spawn("attach", str(sid), rows=30, cols=100)
    child.send(b"echo hi-$((6*7))\r")
    child.expect(b"hi-42")
    child.setwinsize(33, 91)
    wait_for(lambda: cli.session(sid)["cols"] == 91, 15, "the resize to reach the far side")
    child.send(b"stty size\r")
    child.expect(b"33 91")
    detach(child)
    assert cli.session(sid)["status"] == "running"
    assert cli.session(sid)["clients"] == 0

    # The far session kept what was typed: a second attach through ssh repaints it.
    again: Any = remote.spawn("attach", str(sid), rows=33, cols=91)
    again.expect(b"hi-42")
    again.send(b"exit 3\r")
    again.expect(pexpect.EOF)
    again.close()
    assert again.exitstatus == 3


def test_new_attached_uses_the_hosts_shell_and_home(remote: RemoteCli, cli: Cli) -> None:
    child: Any = remote.spawn("new", rows=24, cols=80)
    # Our $TERM travels, the host's $HOME is where the shell starts.
    child.send(b'echo "T=$TERM P=$(pwd)"\r')
    home = os.path.expanduser("~")
    child.expect(rf"T=xterm-256color P={re.escape(home)}".encode())
    child.send(b"exit\r")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


def test_scripting_commands_through_ssh(remote: RemoteCli, cli: Cli, tmp_path: Path) -> None:
    sid = int(remote.run("new", "-d", "-s", "far", "--", "cat").stdout)
    remote.run("send", "far", "-l", "over ssh")
    remote.run("send", "far", "Enter")
    wait_for(lambda: "over ssh" in remote.run("capture", "far").stdout, 15, "the echo")
    remote.run("rename", "far", "there")
    assert cli.session(sid)["name"] == "there"
    remote.run("kill", "-s", "TERM", "there")
    waited = remote.run("wait", "there", check=False)
    assert waited.returncode == 128 + 15, waited
    remote.run("kill-server")
    wait_for(lambda: cli.server_pid() is None, 10, "the far server to stop")


def test_host_from_environment(remote: RemoteCli, cli: Cli) -> None:
    cli.new("sh", name="local-view")
    env = dict(remote.env, TMUXISH_HOST=remote.sshd.url)
    import subprocess

    from helpers import TMUXISH

    out = subprocess.run(
        [*TMUXISH, "-S", str(cli.socket_path), "ls"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0, out.stderr
    assert "local-view" in out.stdout


def test_no_far_server_is_the_usual_error(remote: RemoteCli, cli: Cli) -> None:
    # The far dial-stdio reports it as a protocol error: the same words as locally.
    local = cli.run("kill", "1", check=False)
    far = remote.run("kill", "1", check=False)
    assert far.returncode == local.returncode == 1
    assert far.stderr == local.stderr
    assert far.stderr.startswith("tmuxish: no server running on "), far.stderr
    # Listing an absent server says so, there as here (as tmux ls; issue 14), and starts nothing.
    far_ls, local_ls = remote.run("ls", check=False), cli.run("ls", check=False)
    assert far_ls.stdout == local_ls.stdout == ""
    assert far_ls.returncode == local_ls.returncode == 1
    assert far_ls.stderr == local_ls.stderr == local.stderr
    assert cli.server_pid() is None


def _one_line(out: Any) -> str:
    assert out.stderr.count("\n") == 1, out.stderr
    assert "Traceback" not in out.stderr
    return str(out.stderr)


def test_unreachable_host(remote: RemoteCli) -> None:
    remote.sshd = Sshd(free_port(), remote.sshd.key, remote.sshd.stranger_key, remote.sshd.dir)
    out = remote.run("ls", check=False)
    assert out.returncode == 255
    assert "Connection refused" in _one_line(out)
    assert out.stderr.startswith(f"tmuxish: {remote.sshd.url}"), out.stderr


def test_authentication_failure(remote: RemoteCli) -> None:
    remote.env["TMUXISH_SSH_OPTS"] = ssh_opts(remote.sshd.stranger_key)
    out = remote.run("ls", check=False)
    assert out.returncode == 255
    assert "Permission denied" in _one_line(out)


def test_tmuxish_missing_on_the_host(remote: RemoteCli) -> None:
    remote.env["TMUXISH_REMOTE_COMMAND"] = "/nonexistent/bin/tmuxish"
    out = remote.run("ls", check=False)
    assert out.returncode == 127
    line = _one_line(out)
    assert "/nonexistent/bin/tmuxish not found on ssh://" in line
    assert "TMUXISH_REMOTE_COMMAND" in line


def test_bad_host_url_is_a_usage_error(remote: RemoteCli) -> None:
    out = remote.run("-H", "http://example.com", "ls", check=False)
    assert out.returncode == 2
    assert "ssh://[user@]host[:port]" in _one_line(out)


def test_chooser_over_ssh(remote: RemoteCli, cli: Cli) -> None:
    cli.new("sh", name="web")
    other = cli.new("sh", name="db")
    child: Any = remote.spawn()  # `tmuxish -H URL` alone: the chooser, fed from the far server
    child.expect(b"2 sessions")
    child.send(b"db")  # type to filter, then Enter attaches
    child.expect(b"db")
    child.send(b"\r")
    wait_for(lambda: cli.session(other)["clients"] == 1, 15, "the chooser to attach db")
    child.send(b"echo chosen-$((3*3))\r")
    child.expect(b"chosen-9")
    detach(child)


def test_attached_over_ssh_survives_a_server_upgrade(remote: RemoteCli, cli: Cli) -> None:
    sid = cli.new("sh")
    child: Any = remote.spawn("attach", str(sid))
    child.send(b"echo before-$((2*21))\r")
    child.expect(b"before-42")
    cli.run("server", "upgrade")
    # The client dials ssh again by itself and keeps going on the same session.
    wait_for(lambda: cli.session(sid)["clients"] == 1, 20, "the remote client to reconnect")
    child.send(b"echo after-$((2*22))\r")
    child.expect(b"after-44")
    detach(child)
