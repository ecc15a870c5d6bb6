"""The pytest plugin, as a user meets it: installed with tmuxish (entry point ``pytest11``), used
by a test file of their own in a separate pytest run."""

from __future__ import annotations

import json
import os
from importlib.metadata import entry_points
from pathlib import Path

import pytest
from helpers import pid_alive

pytest_plugins = ["pytester"]

USER_TESTS = r"""
import json, os, subprocess, sys

def test_my_program(tmuxish_server, tmp_path):
    s = tmuxish_server.new(["sh", "-c", "echo ready; read x; echo you-typed-$x; sleep 100"])
    tmuxish_server.wait_for_text(s.id, "ready")
    tmuxish_server.send(s.id, ["abc", "Enter"])
    tmuxish_server.wait_for_text(s.id, r"^you-typed-abc$")
    # A program that ignores the hang-up must not outlive the test either.
    stubborn = tmuxish_server.new(["sh", "-c", "trap '' HUP; echo stubborn; sleep 100"])
    tmuxish_server.wait_for_text(stubborn.id, "stubborn")
    # The CLI, run from the test, reaches the same private server.
    out = subprocess.run(
        [sys.executable, "-P", "-m", "tmuxish", "ls", "--json"],
        capture_output=True, text=True, check=True, timeout=30,
    ).stdout
    assert [x["id"] for x in json.loads(out)] == [s.id, stubborn.id]
    with open(os.environ["REPORT"], "w") as f:
        json.dump({
            "server": tmuxish_server.server_info["pid"],
            "programs": [s.pid, stubborn.pid],
            "socket": os.environ["TMUXISH_SOCKET"],
        }, f)

def test_servers_are_private(tmuxish_server, tmuxish_socket):
    assert tmuxish_server.socket_path == tmuxish_socket
    assert os.environ["TMUXISH_SOCKET"] == str(tmuxish_socket)
    assert tmuxish_server.sessions() == []  # the first test's sessions are not here

def test_no_server_is_started_until_needed(tmuxish_server, tmuxish_socket):
    assert not tmuxish_socket.exists()
"""

LIGHT_TESTS = r"""
import sys

def test_unused_plugin_is_loaded_but_light(request):
    assert request.config.pluginmanager.has_plugin("tmuxish")
    heavy = [m for m in ("tmuxish.client.api", "tmuxish.client.sync_client", "msgpack")
             if m in sys.modules]
    assert heavy == []
"""


def test_the_entry_point_is_installed() -> None:
    found = [e for e in entry_points(group="pytest11") if e.name == "tmuxish"]
    assert [e.value for e in found] == ["tmuxish.client.pytest_plugin"]


def test_each_test_gets_a_private_server_that_is_cleaned_up(
    pytester: pytest.Pytester, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    report = tmp_path / "report.json"
    monkeypatch.setenv("REPORT", str(report))
    monkeypatch.setenv("TMUXISH_CONFIG", "/nonexistent")
    monkeypatch.delenv("TMUXISH_SOCKET", raising=False)
    pytester.makepyfile(test_user=USER_TESTS)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q")
    result.assert_outcomes(passed=3)
    seen = json.loads(report.read_text())
    # Teardown is over when the run is: nothing may be left.
    assert not pid_alive(seen["server"])
    assert [p for p in seen["programs"] if pid_alive(p)] == []
    assert not os.path.exists(os.path.dirname(seen["socket"]))


def test_a_run_that_does_not_use_it_stays_light(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_light=LIGHT_TESTS)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q")
    result.assert_outcomes(passed=1)
