"""The Python API: ``tmuxish.Client`` (asyncio) and ``tmuxish.SyncClient`` (blocking).

Both speak the wire protocol (``tmuxish.protocol``) directly; nothing shells out to the CLI.
Errors are the ``tmuxish.errors`` classes the CLI reports (``SessionNotFound``, ``NameInUse``,
``ServerNotRunning``, ...). A target is a session id (int, or a string of digits) or a name.

    with SyncClient() as c:                      # default socket, like the CLI
        s = c.new(["sh"], name="calc")           # starts the server if none runs
        c.send(s.id, ["echo $((2+3))", "Enter"])
        c.wait_for_text(s.id, r"^5$", timeout=5)

    async with Client() as c:
        s = await c.new("sh")
        async with await c.attach(s.id) as stream:
            await stream.write(b"exit 3\\n")
            async for chunk in stream:
                ...
        assert stream.exit_code == 3

This module is the public face; the work is split around one client core without I/O:
``core`` (greeting, request ids, stream state, connection failures), ``session_info`` (the
session record and request arguments), ``sync_client`` and ``async_client`` (thin shells that
move bytes). It must stay cheap to import and free of asyncio at import time: the CLI's ``ls``,
``kill``, ``send`` and ``capture`` run through ``SyncClient``. ``Client`` and ``AttachStream``
(and asyncio with them) are loaded when first used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tmuxish.client.handle import AsyncSessionHandle, SessionHandle
from tmuxish.client.run import CommandTimeout, RunResult, Sent
from tmuxish.client.session_info import (
    Keys,
    Pattern,
    SessionInfo,
    SocketPath,
    Target,
    new_args,
)
from tmuxish.client.sync_client import (
    DEFAULT_TIMEOUT,
    Connector,
    SyncAttachStream,
    SyncClient,
)

if TYPE_CHECKING:
    from tmuxish.client.async_client import AttachStream, Client

__all__ = [
    "DEFAULT_TIMEOUT",
    "AsyncSessionHandle",
    "AttachStream",
    "Client",
    "CommandTimeout",
    "Connector",
    "Keys",
    "Pattern",
    "RunResult",
    "Sent",
    "SessionHandle",
    "SessionInfo",
    "SocketPath",
    "SyncAttachStream",
    "SyncClient",
    "Target",
    "new_args",
]


def __getattr__(name: str) -> Any:
    if name in ("Client", "AttachStream"):
        from tmuxish.client import async_client

        return getattr(async_client, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
