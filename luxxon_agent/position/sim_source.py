"""`SimSource`: a deterministic circular path for demos and tests (`sim://`)."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator

from luxxon_agent.clock import SYSTEM_CLOCK, Clock
from luxxon_agent.position.fix import Fix, FixQuality, NoFix, SourceKind, TimeSource
from luxxon_agent.position.position_source import PositionSource

METRES_PER_DEGREE_LAT = 111_320.0


class SimSource(PositionSource):
    """Walks a circle of `radius_m` around (lat, lng) at `speed_mps`, `hz` fixes a second.

    Fix k is at angle `speed_mps * k / hz / radius_m`: the path depends only on
    k, so runs are reproducible; `time` is the clock's now (`TimeSource.HOST`).
    """

    kind = SourceKind.SIM

    def __init__(
        self,
        description: str,
        *,
        lat: float,
        lng: float,
        radius_m: float = 50.0,
        speed_mps: float = 2.0,
        hz: float = 1.0,
        accuracy_m: float = 3.0,
        count: int | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        super().__init__(description, clock)
        self.lat, self.lng = lat, lng
        self.radius_m, self.speed_mps = radius_m, speed_mps
        self.hz, self.accuracy_m, self.count = hz, accuracy_m, count

    def position(self, k: int) -> tuple[float, float]:
        """(lat, lng) of fix number k."""
        if self.radius_m <= 0:
            return self.lat, self.lng
        angle = self.speed_mps * k / self.hz / self.radius_m
        north = self.radius_m * math.sin(angle)
        east = self.radius_m * math.cos(angle)
        per_deg_lng = METRES_PER_DEGREE_LAT * max(1e-6, math.cos(math.radians(self.lat)))
        return self.lat + north / METRES_PER_DEGREE_LAT, self.lng + east / per_deg_lng

    async def _reports(self) -> AsyncIterator[Fix | NoFix]:
        k = 0
        course = 0.0
        while self.count is None or k < self.count:
            lat, lng = self.position(k)
            if self.radius_m > 0:
                # tangent of a counter-clockwise circle, degrees from north
                angle = self.speed_mps * k / self.hz / self.radius_m
                course = math.degrees(math.atan2(-math.sin(angle), math.cos(angle))) % 360.0
            yield Fix(
                time=self._clock.now(),
                lat=lat,
                lng=lng,
                accuracy_m=self.accuracy_m,
                source=self.kind,
                quality=FixQuality.SIMULATED,
                altitude_m=0.0,
                speed_mps=self.speed_mps,
                course_deg=round(course, 3),
                satellites=None,
                time_source=TimeSource.HOST,
                received_at=self._clock.now(),
            )
            self.stats.lines += 1
            self.stats.sentences["SIM"] += 1
            k += 1
            if self.count is None or k < self.count:
                await self._clock.sleep(1.0 / self.hz)

    async def _release(self) -> None:
        """Nothing to release: the path is computed."""
