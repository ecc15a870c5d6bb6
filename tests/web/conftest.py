"""Fixtures for `tmuxish web`: the real command beside a private server (webkit.py), and
Debian's Chromium driven by playwright (skipped with a reason when either is missing)."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from helpers import Cli
from webkit import Web, start_web, stop_web

CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture
def web(cli: Cli, tmp_path: Path) -> Iterator[Web]:
    w = start_web(cli, tmp_path)
    try:
        yield w
    finally:
        stop_web(w)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip("/usr/bin/chromium is missing (apt-get install chromium; CI installs it)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            yield b
        finally:
            with contextlib.suppress(Exception):
                b.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 900, "height": 500})
    p = context.new_page()
    p.set_default_timeout(15000)
    try:
        yield p
    finally:
        context.close()
