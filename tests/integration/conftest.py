"""In-process server fixture for the integration tests (runs under asyncio and uvloop)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from helpers import serving

from tmuxish.server.daemon import Server


@pytest.fixture
async def server(sock_dir: Path) -> AsyncIterator[Server]:
    async with serving(sock_dir / "s") as srv:
        yield srv
