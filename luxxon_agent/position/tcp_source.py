"""`TcpSource`: raw NMEA over TCP (`tcp://HOST:PORT`), reconnecting with backoff."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from luxxon_agent.backoff import Backoff
from luxxon_agent.clock import SYSTEM_CLOCK, Clock
from luxxon_agent.position.fix import Fix, NoFix, SourceKind
from luxxon_agent.position.line_splitter import LineSplitter
from luxxon_agent.position.nmea import NmeaAssembler
from luxxon_agent.position.position_source import (
    QUIET_FLUSH_S,
    RECONNECT_AFTER_SILENT_S,
    PositionSource,
    Silence,
)

logger = logging.getLogger(__name__)

RECONNECT = Backoff(initial=0.2, maximum=5.0)
CONNECT_TIMEOUT_S = 5.0


class TcpSource(PositionSource):
    """Connects to a receiver or phone app serving NMEA on TCP; never gives up."""

    kind = SourceKind.TCP

    def __init__(
        self,
        description: str,
        host: str,
        port: int,
        *,
        backoff: Backoff = RECONNECT,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        super().__init__(description, clock)
        self.host, self.port, self.backoff = host, port, backoff
        self._writer: asyncio.StreamWriter | None = None

    async def _reports(self) -> AsyncIterator[Fix | NoFix]:
        attempt = 0
        assembler = NmeaAssembler(self.kind, host_date=True, stats=self.stats, clock=self._clock)
        while not self._closed:
            try:
                reader, self._writer = await asyncio.wait_for(
                    asyncio.open_connection(self.host, self.port), CONNECT_TIMEOUT_S
                )
            except (OSError, TimeoutError) as exc:
                why = str(exc) or type(exc).__name__
                yield self._no_fix(f"cannot connect to {self.description}: {why}")
                await self._clock.sleep(self.backoff.delay(attempt))
                attempt += 1
                continue
            logger.info("%r connected", self)
            attempt = 0
            splitter = LineSplitter()
            silence = Silence()
            reason = "connection closed by peer"
            while True:
                try:
                    chunk = await asyncio.wait_for(reader.read(4096), QUIET_FLUSH_S)
                except TimeoutError:
                    for report in assembler.flush(self._clock.now()):
                        yield report
                    if silence.quiet():
                        yield self._no_fix(silence.reason())
                    if silence.quiet_s >= RECONNECT_AFTER_SILENT_S:
                        reason = silence.reason()
                        break
                    continue
                except OSError as exc:
                    reason = f"connection lost: {exc}"
                    break
                if not chunk:
                    break
                silence.heard()
                now = self._clock.now()
                for line in splitter.feed(chunk):
                    for report in assembler.feed_line(line, now):
                        yield report
            await self._drop_connection()
            if self._closed:
                return
            self.stats.reconnects += 1
            for report in assembler.flush(self._clock.now()):
                yield report
            yield self._no_fix(reason)
            await self._clock.sleep(self.backoff.delay(attempt))
            attempt += 1

    async def _drop_connection(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()
            try:
                await writer.wait_closed()
            except OSError as exc:
                logger.debug("%r close: %s", self, exc)

    async def _release(self) -> None:
        await self._drop_connection()
