"""Fixtures: a private socket per test and a CLI whose server is always stopped afterwards."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from helpers import Cli, pid_alive, server_info, stop_server, wait_for

try:
    import uvloop
except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
    uvloop = None


def pytest_asyncio_loop_factories(config: Any, item: Any) -> Mapping[str, Callable[[], Any]]:
    """Every async test runs under plain asyncio and under uvloop."""
    factories: dict[str, Callable[[], Any]] = {"asyncio": asyncio.new_event_loop}
    if uvloop is not None:
        factories["uvloop"] = uvloop.new_event_loop
    return factories


@pytest.fixture
def sock_dir() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(dir="/tmp", prefix="tx"))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def cli(sock_dir: Path) -> Iterator[Cli]:
    c = Cli(sock_dir / "s")
    c.children = []
    try:
        yield c
    finally:
        for child in c.children:
            with contextlib.suppress(Exception):
                child.close(force=True)
        stop_server(c)


@pytest.fixture
def kept(cli: Cli) -> Iterator[Cli]:
    """The CLI with a keeper (the default) that is always stopped afterwards, whatever state
    the test left it in (a crash loop leaves no server to answer `kill-server`)."""
    cli.env.pop("TMUXISH_KEEPER", None)
    cli.new("true")  # starts keeper and server
    keeper = int(server_info(cli)["keeper"])
    try:
        yield cli
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(keeper, signal.SIGTERM)
        wait_for(lambda: not pid_alive(keeper), 15, "the keeper to exit")
