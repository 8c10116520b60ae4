"""`SourceCheck`: what `luxxon-agent gps check` measures while it watches a source."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field

from luxxon_agent.clock import SYSTEM_CLOCK, Clock
from luxxon_agent.position.fix import Fix, NoFix
from luxxon_agent.position.position_source import PositionSource

USABLE_ACCURACY_M = 100.0
"""The meter honours accuracy up to 100 m; a fix without a known accuracy is not usable."""


@dataclass
class SourceCheck:
    """Running summary of a source: last report, fix counts, sentence rate."""

    source: PositionSource
    started: float
    last: Fix | NoFix | None = None
    last_fix: Fix | None = None
    fixes: int = 0
    usable_fixes: int = 0
    no_fixes: int = 0
    elapsed_s: float = 0.0
    reasons: list[str] = field(default_factory=list)

    @property
    def usable(self) -> bool:
        """True once a fix with known accuracy within USABLE_ACCURACY_M was seen."""
        return self.usable_fixes > 0

    @property
    def sentence_rate_hz(self) -> float:
        """Accepted sentences (or messages) per second since the check started."""
        total = sum(self.source.stats.sentences.values())
        return total / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def record(self, report: Fix | NoFix) -> None:
        self.last = report
        if isinstance(report, Fix):
            self.fixes += 1
            self.last_fix = report
            if report.accuracy_m is not None and report.accuracy_m <= USABLE_ACCURACY_M:
                self.usable_fixes += 1
        else:
            self.no_fixes += 1
            if report.reason not in self.reasons:
                self.reasons = [*self.reasons[-4:], report.reason]

    def to_json(self) -> dict[str, object]:
        stats = self.source.stats
        return {
            "source": self.source.description,
            "usable": self.usable,
            "fixes": self.fixes,
            "usable_fixes": self.usable_fixes,
            "no_fixes": self.no_fixes,
            "seconds": round(self.elapsed_s, 3),
            "sentence_rate_hz": round(self.sentence_rate_hz, 2),
            "sentence_types": dict(sorted(stats.sentences.items())),
            "checksum_failures": stats.checksum_failures,
            "parse_failures": stats.parse_failures,
            "reconnects": stats.reconnects,
            "last_fix": self.last_fix.to_json() if self.last_fix else None,
            "no_fix_reasons": self.reasons,
        }


async def check_source(
    source: PositionSource,
    seconds: float,
    *,
    stop_on_fix: bool = False,
    on_update: Callable[[SourceCheck], None] | None = None,
    clock: Clock = SYSTEM_CLOCK,
) -> SourceCheck:
    """Watch `source` for `seconds` (less if it ends, or at the first usable fix if asked)."""
    check = SourceCheck(source=source, started=clock.monotonic())

    async def watch() -> None:
        async for report in source:
            check.record(report)
            check.elapsed_s = clock.monotonic() - check.started
            if on_update is not None:
                on_update(check)
            if stop_on_fix and check.usable:
                return

    try:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(watch(), seconds)
    finally:
        check.elapsed_s = clock.monotonic() - check.started
        await source.close()
    return check
