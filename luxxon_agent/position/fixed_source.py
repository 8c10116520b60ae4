"""`FixedSource` (`fixed://`): a surveyed position for a camera that never moves.

A mast camera has no GPS receiver worth the name; its position was surveyed
once. This source reports that position once a second, stamped with the host
clock (so the box's clock must be NTP-synced: telemetry is dated by it).

    fixed://52.52,13.405            lat,lng (accuracy 3 m)
    fixed://52.52,13.405,1.5        lat,lng,accuracy_m
    fixed://?lat=52.52&lng=13.405&accuracy_m=1.5
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import parse_qs

from luxxon_agent.clock import SYSTEM_CLOCK, Clock
from luxxon_agent.position.fix import Fix, FixQuality, NoFix, SourceKind, TimeSource
from luxxon_agent.position.position_source import PositionSource

DEFAULT_ACCURACY_M = 3.0
MAX_ACCURACY_M = 1000.0


@dataclass(frozen=True)
class FixedPoint:
    lat: float
    lng: float
    accuracy_m: float = DEFAULT_ACCURACY_M


def parse_fixed_url(url: str) -> FixedPoint:
    """The point a `fixed://` URL names; ValueError saying what is wrong."""
    _, _, rest = url.partition("://")
    target, _, query = rest.partition("?")
    params = {k: v[-1] for k, v in parse_qs(query, keep_blank_values=True).items()}
    unknown = set(params) - {"lat", "lng", "accuracy_m"}
    if unknown:
        raise ValueError(f"fixed:// takes lat, lng, accuracy_m, not {', '.join(sorted(unknown))}")
    if target.strip("/") and params:
        raise ValueError("fixed:// takes lat,lng[,accuracy_m] or ?lat=&lng=, not both")
    if target.strip("/"):
        parts = target.strip("/").split(",")
        if len(parts) not in (2, 3):
            raise ValueError("fixed:// needs lat,lng[,accuracy_m]")
        params = dict(zip(("lat", "lng", "accuracy_m"), parts, strict=False))
    if "lat" not in params or "lng" not in params:
        raise ValueError("fixed:// needs lat and lng (and optionally accuracy_m)")
    lat = _number(params["lat"], "lat", -90, 90)
    lng = _number(params["lng"], "lng", -180, 180)
    accuracy = params.get("accuracy_m")
    if accuracy is None:
        return FixedPoint(lat, lng)
    accuracy_m = _number(accuracy, "accuracy_m", 0, MAX_ACCURACY_M)
    if accuracy_m == 0:
        raise ValueError("fixed:// accuracy_m must be above 0 (no survey is exact)")
    return FixedPoint(lat, lng, accuracy_m)


def _number(text: str, name: str, low: float, high: float) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"fixed:// {name} must be a number, not {text!r}") from None
    if math.isnan(value) or not low <= value <= high:
        raise ValueError(f"fixed:// {name} must be in [{low:g}, {high:g}], not {text!r}")
    return value


class FixedSource(PositionSource):
    """Reports `point` every `1 / hz` seconds for ever."""

    kind = SourceKind.FIXED

    def __init__(
        self, description: str, point: FixedPoint, *, hz: float = 1.0, clock: Clock = SYSTEM_CLOCK
    ) -> None:
        super().__init__(description, clock)
        self.point = point
        self._period = 1.0 / hz

    async def _reports(self) -> AsyncIterator[Fix | NoFix]:
        while True:
            now = self._clock.now()
            yield Fix(
                time=now,
                lat=self.point.lat,
                lng=self.point.lng,
                accuracy_m=self.point.accuracy_m,
                source=self.kind,
                quality=FixQuality.GPS,
                time_source=TimeSource.HOST,
                received_at=now,
            )
            self.stats.lines += 1
            await self._clock.sleep(self._period)

    async def _release(self) -> None:
        """Nothing to release."""
