"""The drain before /end: on while it makes progress, within its overall bound."""

from __future__ import annotations

from luxxon_agent.agent.session import drain_while_progressing
from luxxon_agent.clock import FakeClock
from luxxon_agent.telemetry import DrainResult


class _SlowLink:
    """An uploader whose link delivers `rate` samples a second (0: the API takes nothing)."""

    def __init__(self, clock: FakeClock, backlog: int, rate: int) -> None:
        self.clock = clock
        self.pending = backlog
        self.delivered = 0
        self.rate = rate
        self.calls: list[float] = []

    async def drain(self, timeout: float, session_id: str | None = None) -> DrainResult:
        assert session_id == "s-1"
        self.calls.append(timeout)
        needed = self.pending / self.rate if self.rate else float("inf")
        spent = min(timeout, needed)
        sent = min(self.pending, int(spent * self.rate))
        self.pending -= sent
        self.delivered += sent
        await self.clock.advance(spent)
        return DrainResult(self.pending == 0, self.pending, self.delivered, 0)


async def test_a_large_backlog_drains_past_one_window() -> None:
    clock = FakeClock()
    link = _SlowLink(clock, backlog=900, rate=10)  # 90 s of upload, windows of 20 s
    result = await drain_while_progressing(link, "s-1", clock, window=20, bound=600)  # type: ignore[arg-type]
    assert result.complete and result.delivered == 900
    assert 89 <= clock.monotonic() <= 91


async def test_no_progress_stops_after_one_window() -> None:
    clock = FakeClock()
    link = _SlowLink(clock, backlog=50, rate=0)
    result = await drain_while_progressing(link, "s-1", clock, window=20, bound=600)  # type: ignore[arg-type]
    assert not result.complete and result.pending == 50
    assert clock.monotonic() == 20


async def test_the_overall_bound_holds() -> None:
    clock = FakeClock()
    link = _SlowLink(clock, backlog=100_000, rate=10)
    result = await drain_while_progressing(link, "s-1", clock, window=20, bound=60)  # type: ignore[arg-type]
    assert not result.complete and result.delivered == 600
    assert clock.monotonic() == 60
