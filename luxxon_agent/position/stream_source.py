"""`StreamSource`: reading a byte stream (socket, serial port) for `ReconnectingSource`.

Each read waits at most QUIET_FLUSH_S: a quiet link closes the epoch in
progress, says "no data" every SILENT_NO_FIX_S, and after
`reconnect_after_silent_s` counts as lost (a half-open socket).
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import AsyncGenerator

from luxxon_agent.backoff import Backoff
from luxxon_agent.clock import SYSTEM_CLOCK, Clock
from luxxon_agent.position.fix import Fix, NoFix
from luxxon_agent.position.line_splitter import LineSplitter
from luxxon_agent.position.nmea import NmeaAssembler
from luxxon_agent.position.position_source import RECONNECT_AFTER_SILENT_S, Silence
from luxxon_agent.position.reconnecting_source import LinkLost, ReconnectingSource


class StreamSource(ReconnectingSource):
    """NMEA bytes by default (`_feed`/`_flush` decode them); subclasses implement `_read`."""

    lost_reason = "connection lost"
    """`NoFix` reason for a failed read (the exception's class name is appended)."""
    eof_reason = "connection closed by peer"
    """`NoFix` reason when the peer ends the stream."""
    reconnect_after_silent_s: float | None = RECONNECT_AFTER_SILENT_S
    """Reopen after this much silence; None: silence is not a loss."""

    def __init__(self, description: str, backoff: Backoff, clock: Clock = SYSTEM_CLOCK) -> None:
        super().__init__(description, backoff, clock)
        self._assembler = NmeaAssembler(self.kind, host_date=True, stats=self.stats, clock=clock)
        self._splitter = LineSplitter()

    async def _session(self) -> AsyncGenerator[Fix | NoFix, None]:
        silence = Silence()
        self._splitter.clear()  # a partial line from the last link is noise
        while True:
            try:
                data = await self._read()
            except (OSError, ValueError) as exc:  # ValueError: a line over the stream limit
                raise LinkLost(f"{self.lost_reason}: {exc.__class__.__name__}") from exc
            if self._closed:
                return
            if data is None:
                for report in self._flush():
                    yield report
                if silence.quiet():  # link up, receiver mute (powered off, cable)
                    yield self._no_fix(silence.reason())
                limit = self.reconnect_after_silent_s
                if limit is not None and silence.quiet_s >= limit:
                    raise LinkLost(silence.reason())
                continue
            if not data:
                raise LinkLost(self.eof_reason)
            silence.heard()
            for report in self._feed(data):
                yield report

    def _feed(self, data: bytes) -> list[Fix | NoFix]:
        """Decode received bytes (NMEA by default); return the closed epochs."""
        now = self._clock.now()
        lines = self._splitter.feed(data)
        return [report for line in lines for report in self._assembler.feed_line(line, now)]

    def _flush(self) -> list[Fix | NoFix]:
        """Close the epoch in progress (the link went quiet or dropped)."""
        return self._assembler.flush(self._clock.now())

    @abstractmethod
    async def _read(self) -> bytes | None:
        """Some data; None after QUIET_FLUSH_S of silence; b"" at end of stream."""
