"""`ReconnectingSource`: the loop that network and device sources share.

Open the link; read until it is lost; report the loss as `NoFix` (after the
epoch it interrupted); reopen with backoff; forever, until `close()`. A
subclass says how to open, read and drop its link (`StreamSource` is the
reading half for byte streams).
"""

from __future__ import annotations

import asyncio
import logging
from abc import abstractmethod
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from typing import Any, Protocol

from luxxon_agent.backoff import Backoff
from luxxon_agent.clock import SYSTEM_CLOCK, Clock
from luxxon_agent.position.fix import Fix, NoFix
from luxxon_agent.position.position_source import QUIET_FLUSH_S, PositionSource

logger = logging.getLogger(__name__)

RECONNECT_BACKOFF = Backoff(initial=0.2, maximum=5.0)
"""The default delays between reopening attempts of every reconnecting source."""


class LinkLost(Exception):
    """The connection or device went away; the message is the `NoFix` reason."""


class ReconnectingSource(PositionSource):
    """A source whose link can drop: subclasses implement `_open`, `_session`, `_disconnect`."""

    def __init__(self, description: str, backoff: Backoff, clock: Clock = SYSTEM_CLOCK) -> None:
        super().__init__(description, clock)
        self.backoff = backoff

    async def _reports(self) -> AsyncIterator[Fix | NoFix]:
        attempt = 0
        while not self._closed:
            reason = await self._open()
            if reason is None and self._closed:
                await self._disconnect()  # opened while close() ran
                return
            if reason is None:
                attempt = 0
                try:
                    # aclosing: a consumer that stops iterating also ends the session at once
                    async with aclosing(self._session()) as session:
                        async for report in session:
                            yield report
                except LinkLost as exc:
                    reason = str(exc)
                else:
                    return  # a session ends without LinkLost only once closed
                await self._disconnect()
                if self._closed:
                    return
                logger.warning("%r: %s; reconnecting", self, reason)
                self.stats.reconnects += 1
                for report in self._flush():
                    yield report
            yield self._no_fix(reason)
            await self._clock.sleep(self.backoff.delay(attempt))
            attempt += 1

    def _flush(self) -> list[Fix | NoFix]:
        """Reports held back for an epoch the dropped link interrupted (none by default)."""
        return []

    async def _release(self) -> None:
        await self._disconnect()

    @abstractmethod
    async def _open(self) -> str | None:
        """Open the link; None on success, else why it failed (a `NoFix` reason)."""

    @abstractmethod
    def _session(self) -> AsyncGenerator[Fix | NoFix, None]:
        """Reports from one open link (an async generator); raises `LinkLost` when it drops."""

    @abstractmethod
    async def _disconnect(self) -> None:
        """Drop the link (safe when none is open)."""


class BlockingHandle(Protocol):
    """A pyserial port or a pymavlink link: closed by a blocking call."""

    def close(self) -> None: ...


async def close_blocking(
    handle: BlockingHandle | None, pending: asyncio.Future[Any] | None
) -> None:
    """Close a blocking handle (pyserial port, pymavlink link) in the executor.

    Never under a read still running there (pyserial fails in odd ways then):
    that read ends within its QUIET_FLUSH_S timeout, so wait for it first.
    """
    if pending is not None and not pending.done():
        await asyncio.wait([pending], timeout=2 * QUIET_FLUSH_S + 1.0)
    if handle is not None:
        await asyncio.get_running_loop().run_in_executor(None, handle.close)
