"""`FileSource`: replay an NMEA capture (`nmea-file://PATH?speed=N`)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from datetime import date
from pathlib import Path
from typing import IO

from luxxon_agent.clock import SYSTEM_CLOCK, Clock
from luxxon_agent.errors import PositionSourceError
from luxxon_agent.position.fix import Fix, NoFix, SourceKind
from luxxon_agent.position.nmea import NmeaAssembler
from luxxon_agent.position.position_source import PositionSource

MAX_REPLAY_GAP_S = 5.0
"""Longest pause replay makes between two epochs (captures have hours-long gaps)."""

_HEADER_DATE = re.compile(r"^#\s*Date:\s*(\d{4})-(\d{1,2})-(\d{1,2})\b")
_CHUNK_BYTES = 1 << 16


class FileSource(PositionSource):
    """Replays a capture at `speed` times its recorded pace; `speed=0` as fast as possible.

    The pace comes from the receiver's epoch times. Lines starting with `#`
    are comments; a `# Date: YYYY-MM-DD` header (gpsd's regression format)
    dates the capture for GPS week-rollover repair. The source ends with the file.
    """

    kind = SourceKind.FILE

    def __init__(
        self, description: str, path: Path, *, speed: float = 1.0, clock: Clock = SYSTEM_CLOCK
    ) -> None:
        super().__init__(description, clock)
        if speed < 0:
            raise PositionSourceError(f"nmea-file speed must be >= 0, got {speed}")
        if not path.is_file():
            raise PositionSourceError(f"NMEA capture not found: {path}")
        self.path = path
        self.speed = speed
        self._fh: IO[bytes] | None = None
        self._reference: date | None = None

    async def _reports(self) -> AsyncIterator[Fix | NoFix]:
        loop = asyncio.get_running_loop()
        try:
            self._fh = await loop.run_in_executor(None, self.path.open, "rb")
        except OSError as exc:
            yield self._no_fix(f"cannot read {self.path.name}: {exc.strerror}")
            return
        assembler: NmeaAssembler | None = None
        previous: Fix | None = None
        while True:
            lines = await loop.run_in_executor(None, self._fh.readlines, _CHUNK_BYTES)
            if not lines:
                break
            for line in lines:
                if line.startswith(b"#"):
                    if assembler is None:
                        self._reference = _header_date(line) or self._reference
                    continue
                if assembler is None:
                    assembler = NmeaAssembler(
                        self.kind, reference=self._reference, stats=self.stats, clock=self._clock
                    )
                for report in assembler.feed_line(line):
                    previous = await self._pace(previous, report)
                    yield report
        if assembler is not None:
            for report in assembler.flush():
                previous = await self._pace(previous, report)
                yield report

    async def _pace(self, previous: Fix | None, report: Fix | NoFix) -> Fix | None:
        """Sleep the receiver-time gap between fixes / speed; return the new pace anchor."""
        if not isinstance(report, Fix):
            return previous  # NoFix times may be host times: no pace from them
        if self.speed > 0 and previous is not None:
            gap = (report.time - previous.time).total_seconds() / self.speed
            if gap > 0:
                await self._clock.sleep(min(gap, MAX_REPLAY_GAP_S))
        return report

    async def _release(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def _header_date(line: bytes) -> date | None:
    match = _HEADER_DATE.match(line.decode("ascii", errors="replace"))
    if match is None:
        return None
    try:
        return date(int(match.group(1)), int(match.group(2)), int(match.group(3)))
    except ValueError:
        return None
