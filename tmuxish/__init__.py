"""tmuxish: a terminal multiplexer for programs and containers, byte-exact and fast."""

from __future__ import annotations

#: Not typing.TYPE_CHECKING: importing typing (and re with it) costs `tmuxish ls` ~15 ms.
TYPE_CHECKING = False

if TYPE_CHECKING:
    from typing import Any

__version__ = "0.1.0"
__all__ = ["Client", "SyncClient", "__version__"]


def __getattr__(name: str) -> Any:
    # The API pulls in asyncio; `tmuxish ls` must not pay for it unless it is used.
    if name in ("Client", "SyncClient"):
        from tmuxish.client import api

        return getattr(api, name)
    raise AttributeError(name)
