"""The meter and the earnings formula, shared by the stub and the CLI.

Earnings (seed, "Earnings"), in exact integer micro-USDC:

    charged         = cleanSeconds × ratePerSecond
    operator_earned = floor(charged × (10000 − feeBps) / 10000)
    fee             = charged − operator_earned

Rounding: the operator's share is rounded down to the whole µUSDC and the
remainder (< 1 µUSDC) goes to the fee, so charged = fee + operator_earned
always holds and no fraction of a µUSDC is created or lost.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from luxxon_agent.geo import haversine_meters

BPS_DENOMINATOR = 10_000


@dataclass(frozen=True)
class Earnings:
    """What one session's chargeable seconds are worth, in µUSDC."""

    clean_seconds: int
    charged_micro_usdc: int
    fee_micro_usdc: int
    operator_earned_micro_usdc: int


def earnings(clean_seconds: int, rate_per_second_micro_usdc: int, fee_bps: int) -> Earnings:
    """Split the charge for `clean_seconds` between fee and operator (see module doc)."""
    if clean_seconds < 0 or rate_per_second_micro_usdc < 0:
        raise ValueError("seconds and rate must not be negative")
    if not 0 <= fee_bps <= BPS_DENOMINATOR:
        raise ValueError(f"fee_bps must lie in 0..{BPS_DENOMINATOR}, got {fee_bps}")
    charged = clean_seconds * rate_per_second_micro_usdc
    operator = charged * (BPS_DENOMINATOR - fee_bps) // BPS_DENOMINATOR
    return Earnings(
        clean_seconds=clean_seconds,
        charged_micro_usdc=charged,
        fee_micro_usdc=charged - operator,
        operator_earned_micro_usdc=operator,
    )


def session_seconds(started_at: datetime, ended_at: datetime) -> int:
    """Whole seconds a session was LIVE; a started partial second is not billed."""
    return max(0, math.floor((ended_at - started_at).total_seconds()))


def wallclock_clean_seconds(
    started_at: datetime,
    ended_at: datetime,
    disconnect_windows: list[tuple[datetime, datetime]] = [],  # noqa: B006 - read only
) -> int:
    """Wall-clock meter: LIVE seconds minus the time the publisher was disconnected.

    Windows are clipped to [started_at, ended_at] and merged where they
    overlap, so a second is never subtracted twice.
    """
    total = session_seconds(started_at, ended_at)
    clipped = sorted(
        (max(a, started_at), min(b, ended_at))
        for a, b in disconnect_windows
        if min(b, ended_at) > max(a, started_at)
    )
    lost = 0.0
    current: tuple[datetime, datetime] | None = None
    for a, b in clipped:
        if current and a <= current[1]:
            current = (current[0], max(current[1], b))
            continue
        if current:
            lost += (current[1] - current[0]).total_seconds()
        current = (a, b)
    if current:
        lost += (current[1] - current[0]).total_seconds()
    return max(0, total - math.ceil(lost))


# ---- the telemetry-anchored meter (roadmap; `luxxon-agent stub --meter telemetry`) ----

MAX_SAMPLE_ACCURACY_M = 100.0
"""A sample whose accuracy is worse than this does not count at all."""
DEFAULT_TELEMETRY_FRESHNESS_S = 2.0
"""How old a sample may be at the end of a second and still cover it."""


class MeteredSample(Protocol):
    """A validly signed sample as the meter sees it."""

    @property
    def captured_at(self) -> datetime: ...
    @property
    def lat(self) -> float: ...
    @property
    def lng(self) -> float: ...
    @property
    def accuracy_m(self) -> float: ...


def telemetry_clean_seconds(
    started_at: datetime,
    ended_at: datetime,
    samples: Iterable[MeteredSample],
    geofence_center: tuple[float, float],
    radius_m: float,
    freshness_s: float = DEFAULT_TELEMETRY_FRESHNESS_S,
) -> tuple[int, int]:
    """Telemetry meter: (clean, failed) seconds of a session; clean + failed = session seconds.

    Second i is [started_at + i, started_at + i + 1). It is clean when the most
    recent counting sample captured before the second ends was captured at
    most `freshness_s` (at least 1) seconds before that end, and lies within
    `radius_m` of `geofence_center` (haversine). Otherwise it is failed: no
    sample, only stale ones, or the newest one outside the geofence.
    Samples with accuracy worse than MAX_SAMPLE_ACCURACY_M don't count.
    The newest sample decides, so a second after leaving the geofence fails
    even while an older in-fence sample is still fresh.
    """
    if freshness_s <= 0 or radius_m <= 0:
        raise ValueError("freshness_s and radius_m must be positive")
    total = session_seconds(started_at, ended_at)
    window = timedelta(seconds=max(1.0, freshness_s))
    lat0, lng0 = geofence_center
    # at equal times the outside sample sorts last, so a tie is judged against the operator
    timeline = sorted(
        (s.captured_at, haversine_meters(lat0, lng0, s.lat, s.lng) > radius_m)
        for s in samples
        if s.accuracy_m <= MAX_SAMPLE_ACCURACY_M
    )
    clean = 0
    newest = -1
    for i in range(total):
        end = started_at + timedelta(seconds=i + 1)
        while newest + 1 < len(timeline) and timeline[newest + 1][0] < end:
            newest += 1
        if newest >= 0:
            captured_at, outside = timeline[newest]
            if captured_at >= end - window and not outside:
                clean += 1
    return clean, total - clean
