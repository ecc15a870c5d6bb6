"""In-process server fixture for the integration tests (runs under asyncio and uvloop)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from helpers import DEADLINE

from tmuxish.server.daemon import Server


@pytest.fixture
async def server(sock_dir: Path) -> AsyncIterator[Server]:
    srv = Server(sock_dir / "s")
    task = asyncio.ensure_future(srv.serve(srv.bind()))
    try:
        yield srv
    finally:
        srv.request_stop()
        await asyncio.wait_for(task, DEADLINE)
