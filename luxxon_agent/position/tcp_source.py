"""`TcpSource`: raw NMEA over TCP (`tcp://HOST:PORT`), reconnecting with backoff."""

from __future__ import annotations

import asyncio
import logging

from luxxon_agent.backoff import Backoff
from luxxon_agent.clock import SYSTEM_CLOCK, Clock
from luxxon_agent.position.fix import SourceKind
from luxxon_agent.position.position_source import QUIET_FLUSH_S
from luxxon_agent.position.reconnecting_source import RECONNECT_BACKOFF
from luxxon_agent.position.stream_source import StreamSource

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 5.0
STREAM_LIMIT = 1 << 16
"""asyncio's per-line buffer bound (what `readline()` may hold)."""


class TcpSource(StreamSource):
    """Connects to a receiver or phone app serving NMEA on TCP; never gives up.

    `GpsdSource` is the same connection with a greeting and JSON lines.
    """

    kind = SourceKind.TCP
    greeting = b""
    """Sent once on every connect."""
    unreachable = "cannot connect to"
    """`NoFix` reason prefix when the connect fails."""

    def __init__(
        self,
        description: str,
        host: str,
        port: int,
        *,
        backoff: Backoff = RECONNECT_BACKOFF,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        super().__init__(description, backoff, clock)
        self.host, self.port = host, port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def _open(self) -> str | None:
        try:
            self._reader, writer = await asyncio.wait_for(
                asyncio.open_connection(self.host, self.port, limit=STREAM_LIMIT),
                CONNECT_TIMEOUT_S,
            )
            self._writer = writer
            if self.greeting:
                writer.write(self.greeting)
                await writer.drain()
        except (OSError, TimeoutError) as exc:
            await self._disconnect()
            return f"{self.unreachable} {self.description}: {str(exc) or type(exc).__name__}"
        logger.info("%r connected", self)
        return None

    async def _read(self) -> bytes | None:
        assert self._reader is not None
        try:
            return await asyncio.wait_for(self._receive(self._reader), QUIET_FLUSH_S)
        except TimeoutError:
            return None

    async def _receive(self, reader: asyncio.StreamReader) -> bytes:
        return await reader.read(4096)

    async def _disconnect(self) -> None:
        writer, self._reader, self._writer = self._writer, None, None
        if writer is None:
            return
        writer.close()
        try:
            await writer.wait_closed()
        except OSError as exc:
            logger.debug("%r close: %s", self, exc)
