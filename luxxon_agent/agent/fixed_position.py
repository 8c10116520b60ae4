"""`fixed://?lat=..&lng=..&accuracy_m=..`: a surveyed position for a camera that never moves.

A mast camera has no GPS receiver worth the name; its position was surveyed
once. This source reports that position once a second, stamped with the host
clock (so the box's clock must be NTP-synced: telemetry is dated by it).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from luxxon_agent.agent.config import parse_fixed_url
from luxxon_agent.clock import SYSTEM_CLOCK, Clock
from luxxon_agent.position import Fix, FixQuality, NoFix, PositionSource, SourceKind, TimeSource


class FixedPositionSource(PositionSource):
    kind = SourceKind.FIXED

    def __init__(self, url: str, clock: Clock = SYSTEM_CLOCK, hz: float = 1.0) -> None:
        super().__init__(url, clock)
        self.position = parse_fixed_url(url)
        self._period = 1.0 / hz

    async def _reports(self) -> AsyncIterator[Fix | NoFix]:
        while True:
            now = self._clock.now()
            yield Fix(
                time=now,
                lat=self.position.lat,
                lng=self.position.lng,
                accuracy_m=self.position.accuracy_m,
                source=self.kind,
                quality=FixQuality.GPS,
                time_source=TimeSource.HOST,
                received_at=now,
            )
            self.stats.lines += 1
            await self._clock.sleep(self._period)

    async def _release(self) -> None:
        """Nothing to release."""
