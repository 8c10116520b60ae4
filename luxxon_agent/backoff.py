"""Exponential backoff with full jitter: one helper for every retry loop."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime


@dataclass(frozen=True)
class Backoff:
    """Delays of `initial * multiplier**attempt`, capped at `maximum`, with jitter.

    `jitter` is the fraction of each delay that is randomised (0 = none,
    1 = "full jitter": uniform in [0, delay]).
    """

    initial: float = 0.5
    maximum: float = 30.0
    multiplier: float = 2.0
    jitter: float = 0.5

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Delay before retry number `attempt` (0 for the first retry)."""
        base = min(self.maximum, self.initial * self.multiplier ** max(0, attempt))
        if self.jitter <= 0:
            return base
        high = base * self.jitter
        spread = rng.uniform(0, high) if rng is not None else random.uniform(0, high)
        return base * (1 - self.jitter) + spread


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    now = now or datetime.now(UTC)
    return max(0.0, (when - now).total_seconds())
