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
from dataclasses import dataclass
from datetime import datetime

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
