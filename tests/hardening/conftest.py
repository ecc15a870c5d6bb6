"""Hardening tests: shared fixtures. The helpers live in hardkit.py next to this file."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from hardkit import Kit
from helpers import Cli


@pytest.fixture
def kit(cli: Cli) -> Iterator[Kit]:
    """The `cli` fixture plus protocol clients and attach processes that are always cleaned up.

    Our own clean-up runs before the `cli` fixture stops the server.
    """
    k = Kit(cli)
    try:
        yield k
    finally:
        k.close()
