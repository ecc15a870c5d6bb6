"""The event loop both the server and the attach client run on."""

from __future__ import annotations

import asyncio
import os


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop when importable (and not disabled with TMUXISH_LOOP=asyncio), plain asyncio else."""
    if os.environ.get("TMUXISH_LOOP", "") != "asyncio":
        try:
            import uvloop
        except ImportError:
            pass
        else:
            return uvloop.new_event_loop()
    return asyncio.new_event_loop()
