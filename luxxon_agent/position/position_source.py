"""`PositionSource`: the one shape every GPS source has (async iterator of reports)."""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from types import TracebackType

from luxxon_agent.clock import SYSTEM_CLOCK, Clock
from luxxon_agent.position.fix import Fix, NoFix, SourceKind
from luxxon_agent.position.source_stats import SourceStats

logger = logging.getLogger(__name__)

QUIET_FLUSH_S = 0.25
"""A receiver silent this long has finished its cycle: close the open epoch now."""
SILENT_NO_FIX_S = 2.0
"""A source with no data for this long reports NoFix (again every this many seconds)."""
RECONNECT_AFTER_SILENT_S = 10.0
"""A network source silent this long is assumed half-open and reconnected."""


class Silence:
    """Counts quiet reads (each QUIET_FLUSH_S long) and says when to speak up about it."""

    def __init__(self) -> None:
        self.quiet_s = 0.0
        self._next_report_s = SILENT_NO_FIX_S

    def heard(self) -> None:
        """Data arrived."""
        self.quiet_s = 0.0
        self._next_report_s = SILENT_NO_FIX_S

    def quiet(self) -> bool:
        """A read timed out; True when a "no data" NoFix is due."""
        self.quiet_s += QUIET_FLUSH_S
        if self.quiet_s + 1e-9 < self._next_report_s:
            return False
        self._next_report_s += SILENT_NO_FIX_S
        return True

    def reason(self) -> str:
        return f"no data for {self.quiet_s:.0f} s"


class PositionSource(ABC):
    """Async iterator of `Fix | NoFix`; `close()` releases the device (safe twice).

    Sources never raise for bad data or a lost device: they yield `NoFix` and
    recover. Only a source that cannot exist at all (bad URL, missing file,
    missing optional extra) raises `PositionSourceError`, from `open_source`.
    """

    kind: SourceKind

    def __init__(self, description: str, clock: Clock = SYSTEM_CLOCK) -> None:
        self.description = description
        """The source URL with any credentials redacted (fit for logs)."""
        self.stats = SourceStats()
        self._clock = clock
        self._closed = False
        self._gen: AsyncIterator[Fix | NoFix] | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.description})"

    def __aiter__(self) -> PositionSource:
        return self

    async def __anext__(self) -> Fix | NoFix:
        if self._closed:
            raise StopAsyncIteration
        if self._gen is None:
            self._gen = self._reports()
        report = await self._gen.__anext__()
        if isinstance(report, Fix):
            self.stats.fixes += 1
        else:
            self.stats.no_fixes += 1
        return report

    async def close(self) -> None:
        """Stop reading and release the device or connection."""
        if self._closed:
            return
        self._closed = True
        gen = self._gen
        if gen is not None and hasattr(gen, "aclose") and not getattr(gen, "ag_running", False):
            await gen.aclose()
        await self._release()
        logger.debug("%r closed", self)

    async def __aenter__(self) -> PositionSource:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @abstractmethod
    def _reports(self) -> AsyncIterator[Fix | NoFix]:
        """The source's report stream (an async generator)."""

    @abstractmethod
    async def _release(self) -> None:
        """Free what `_reports` holds open after the generator is closed."""

    def _no_fix(self, reason: str) -> NoFix:
        return NoFix(time=self._clock.now(), source=self.kind, reason=reason)
