"""`LatestFix`: the one place that decides whether a position is current."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterable
from datetime import datetime, timedelta

from luxxon_agent.clock import SYSTEM_CLOCK, Clock
from luxxon_agent.position.fix import Fix, NoFix

logger = logging.getLogger(__name__)

DEFAULT_MAX_AGE_S = 2.0
"""A fix whose capture time is older than this is never current."""


class LatestFix:
    """Holds the newest report of a source and answers "where are we now?".

    `current()` returns the last `Fix` only while its capture time is within
    `max_age_s` of now (and not more than `max_age_s` in the future, which
    would mean the receiver's clock is wrong). A `NoFix` clears it at once.
    """

    def __init__(self, max_age_s: float = DEFAULT_MAX_AGE_S, clock: Clock = SYSTEM_CLOCK) -> None:
        if max_age_s <= 0:
            raise ValueError("max_age_s must be positive")
        self._max_age = timedelta(seconds=max_age_s)
        self._clock = clock
        self._fix: Fix | None = None
        self._last: Fix | NoFix | None = None

    @property
    def max_age_s(self) -> float:
        return self._max_age.total_seconds()

    @property
    def last(self) -> Fix | NoFix | None:
        """The newest report, current or not (for status displays)."""
        return self._last

    def update(self, report: Fix | NoFix) -> None:
        """Record a source's newest report; an older fix never replaces a newer one."""
        self._last = report
        if isinstance(report, NoFix):
            self._fix = None
        elif self._fix is None or report.time >= self._fix.time:
            self._fix = report

    def current(self, now: datetime | None = None) -> Fix | None:
        """The last fix if it is fresh at `now` (default: the clock's now), else None."""
        fix = self._fix
        if fix is None:
            return None
        now = now if now is not None else self._clock.now()
        age = now - fix.time
        if age > self._max_age or -age > self._max_age:
            return None
        return fix

    async def follow(self, source: AsyncIterable[Fix | NoFix]) -> None:
        """Update from `source` until it ends (a replayed file) or the task is cancelled."""
        async for report in source:
            self.update(report)
