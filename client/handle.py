"""Session handles: what ``new()`` returns. A handle is the ``SessionInfo`` of the session (every
field as before) bound to the client that made it, with the per-session methods, so a script
does not have to pass the id around::

    s = client.new("bash")
    result = s.run("make test")
    s.expect(r"^ok$", since=s.send("./check\\r"))

Every client method that takes a target also takes a handle or a ``SessionInfo``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

from tmuxish.client.session_info import SessionInfo

if TYPE_CHECKING:
    import re
    from collections.abc import Sequence

    from tmuxish.client.async_client import AttachStream, Client
    from tmuxish.client.run import OutputSink, RunResult, Sent
    from tmuxish.client.session_info import Keys, Pattern
    from tmuxish.client.sync_client import SyncAttachStream, SyncClient

#: The default timeout of the waiting methods (seconds), as the clients'.
_TIMEOUT = 10.0


def _fields(info: SessionInfo) -> dict[str, Any]:
    return {f.name: getattr(info, f.name) for f in fields(SessionInfo)}


@dataclass(frozen=True)
class SessionHandle(SessionInfo):
    """A session of a ``SyncClient``: its info fields, and its methods."""

    client: SyncClient | None = field(default=None, compare=False, repr=False, hash=False)

    @classmethod
    def bind(cls, info: SessionInfo, client: SyncClient) -> SessionHandle:
        return cls(**_fields(info), client=client)

    @property
    def _c(self) -> SyncClient:
        assert self.client is not None
        return self.client

    def refresh(self) -> SessionHandle:
        """The session as it is now (status, exit code, size, ...)."""
        return SessionHandle.bind(self._c.get(self.id), self._c)

    def send(self, keys: Keys, *, literal: bool = False) -> Sent:
        return self._c.send(self.id, keys, literal=literal)

    def run(
        self,
        command: str | Sequence[str],
        *,
        timeout: float | None = None,
        input: bytes | str | None = None,
        output: OutputSink | None = None,
        raw: bool = False,
    ) -> RunResult:
        return self._c.run(self.id, command, timeout=timeout, input=input, output=output, raw=raw)

    def expect(
        self,
        pattern: Pattern,
        timeout: float = _TIMEOUT,
        *,
        since: int | None = None,
        history: bool = False,
    ) -> re.Match[str]:
        return self._c.wait_for_text(self.id, pattern, timeout, since=since, history=history)

    def wait_idle(self, quiet: float = 0.5, timeout: float = _TIMEOUT) -> None:
        self._c.wait_idle(self.id, quiet=quiet, timeout=timeout)

    def wait_for_prompt(self, timeout: float = _TIMEOUT) -> None:
        self._c.wait_for_prompt(self.id, timeout=timeout)

    def capture(self, history: bool = False, escapes: bool = False) -> str:
        return self._c.capture(self.id, history=history, escapes=escapes)

    def wait(self, timeout: float | None = None) -> int:
        return self._c.wait(self.id, timeout=timeout)

    def resize(self, cols: int, rows: int) -> SessionInfo:
        return self._c.resize(self.id, cols, rows)

    def kill(self, signal: str | int = "HUP") -> SessionInfo:
        return self._c.kill(self.id, signal)

    def rm(self, force: bool = False) -> SessionInfo:
        return self._c.rm(self.id, force=force)

    def attach(self, **kwargs: Any) -> SyncAttachStream:
        return self._c.attach(self.id, **kwargs)


@dataclass(frozen=True)
class AsyncSessionHandle(SessionInfo):
    """A session of an asyncio ``Client``: its info fields, and its (async) methods."""

    client: Client | None = field(default=None, compare=False, repr=False, hash=False)

    @classmethod
    def bind(cls, info: SessionInfo, client: Client) -> AsyncSessionHandle:
        return cls(**_fields(info), client=client)

    @property
    def _c(self) -> Client:
        assert self.client is not None
        return self.client

    async def refresh(self) -> AsyncSessionHandle:
        return AsyncSessionHandle.bind(await self._c.get(self.id), self._c)

    async def send(self, keys: Keys, *, literal: bool = False) -> Sent:
        return await self._c.send(self.id, keys, literal=literal)

    async def run(
        self,
        command: str | Sequence[str],
        *,
        timeout: float | None = None,
        input: bytes | str | None = None,
        output: OutputSink | None = None,
        raw: bool = False,
    ) -> RunResult:
        return await self._c.run(
            self.id, command, timeout=timeout, input=input, output=output, raw=raw
        )

    async def expect(
        self,
        pattern: Pattern,
        timeout: float = _TIMEOUT,
        *,
        since: int | None = None,
        history: bool = False,
    ) -> re.Match[str]:
        return await self._c.wait_for_text(self.id, pattern, timeout, since=since, history=history)

    async def wait_idle(self, quiet: float = 0.5, timeout: float = _TIMEOUT) -> None:
        await self._c.wait_idle(self.id, quiet=quiet, timeout=timeout)

    async def wait_for_prompt(self, timeout: float = _TIMEOUT) -> None:
        await self._c.wait_for_prompt(self.id, timeout=timeout)

    async def capture(self, history: bool = False, escapes: bool = False) -> str:
        return await self._c.capture(self.id, history=history, escapes=escapes)

    async def wait(self, timeout: float | None = None) -> int:
        return await self._c.wait(self.id, timeout=timeout)

    async def resize(self, cols: int, rows: int) -> SessionInfo:
        return await self._c.resize(self.id, cols, rows)

    async def kill(self, signal: str | int = "HUP") -> SessionInfo:
        return await self._c.kill(self.id, signal)

    async def rm(self, force: bool = False) -> SessionInfo:
        return await self._c.rm(self.id, force=force)

    async def attach(self, **kwargs: Any) -> AttachStream:
        return await self._c.attach(self.id, **kwargs)
