"""Upgrade across protocol versions: `pip install -U` of a release that bumps PROTOCOL_VERSION
over a running server. Every command but the frozen ones (`server upgrade`, `server info`,
`kill-server`) is refused with a one-line 'protocol version mismatch'; those three work between
any two versions, so the new client can move the server to the installed version.

The install is played by a copy of the package on PYTHONPATH (it wins over the editable
install), the server started from it, then the copy's protocol version and version raised.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from helpers import Cli, pid_alive, wait_for

import tmuxish

BUMPED = "0.1.0+bumped"


def install_copy(dest: Path) -> Path:
    """The package as `pip install` lays it out (client/ and server/ inside tmuxish/)."""
    source = Path(tmuxish.__file__).resolve().parent
    shutil.copytree(source, dest / "tmuxish", ignore=shutil.ignore_patterns("__pycache__"))
    return dest / "tmuxish"


def set_versions(package: Path, protocol_version: int, version: str) -> None:
    """What installing another release changes, as far as the handshake is concerned."""
    for name, pattern, value in (
        (
            "protocol.py",
            r"PROTOCOL_VERSION: Final = \d+",
            f"PROTOCOL_VERSION: Final = {protocol_version}",
        ),
        ("__init__.py", r'__version__ = "[^"]*"', f'__version__ = "{version}"'),
    ):
        path = package / name
        text, count = re.subn(pattern, value, path.read_text())
        assert count == 1, (name, pattern)
        path.write_text(text)
    # Same size, same second: a cached .pyc would still be taken for the old source.
    for cache in package.rglob("__pycache__"):
        shutil.rmtree(cache)


@pytest.mark.parametrize("keeper", ["1", "0"], ids=["keeper", "no-keeper"])
def test_upgrade_info_and_kill_server_work_between_protocol_versions(
    cli: Cli, tmp_path: Path, keeper: str
) -> None:
    package = install_copy(tmp_path / "site")
    cli.env["PYTHONPATH"] = str(tmp_path / "site")
    cli.env["TMUXISH_KEEPER"] = keeper
    sid = cli.new("sleep", "100000", name="kept")
    pid = cli.session(sid)["pid"]
    assert f"tmuxish {tmuxish.__version__}" in cli.run("server", "info").stdout

    # `pip install -U` of a release that speaks protocol version 2.
    set_versions(package, 2, BUMPED)
    refused = cli.run("ls", check=False)
    assert refused.returncode != 0 and refused.stdout == ""
    assert refused.stderr.count("\n") == 1 and "protocol version mismatch" in refused.stderr
    assert "tmuxish server upgrade" in refused.stderr
    assert f"tmuxish {tmuxish.__version__}" in cli.run("server", "info").stdout

    out = cli.run("server", "upgrade").stdout
    assert f"tmuxish {tmuxish.__version__} -> {BUMPED}" in out and "1 sessions kept" in out
    assert f"tmuxish {BUMPED}" in cli.run("server", "info").stdout
    after = cli.session(sid)
    assert (after["name"], after["pid"], after["status"]) == ("kept", pid, "running")

    # And back: a client of the older version still reaches the newer server's frozen requests.
    set_versions(package, 1, tmuxish.__version__)
    assert "protocol version mismatch" in cli.run("ls", check=False).stderr
    assert f"tmuxish {BUMPED}" in cli.run("server", "info").stdout
    cli.run("kill-server")
    wait_for(lambda: not pid_alive(pid), 10, "the program to end with the server")
    wait_for(lambda: not cli.socket_path.exists(), 10, "the socket to go")


def test_an_unusable_installed_keeper_is_not_executed(cli: Cli, tmp_path: Path) -> None:
    """The keeper re-executes itself only into a keeper that compiles: one that died after
    exec would take every program's terminal with it."""
    package = install_copy(tmp_path / "site")
    cli.env["PYTHONPATH"] = str(tmp_path / "site")
    sid = cli.new("sleep", "100000", name="kept")
    pid = cli.session(sid)["pid"]
    keeper = package / "server" / "keeper.py"
    keeper.write_text(keeper.read_text() + "\ndef broken(:\n")
    out = cli.run("server", "upgrade").stdout
    assert "1 sessions kept" in out
    log = Path(f"{cli.socket_path}.log").read_text()
    assert "the installed keeper is unusable" in log and "re-executed in place" not in log
    after = cli.session(sid)
    assert (after["pid"], after["status"]) == (pid, "running") and pid_alive(pid)
