"""Time as an injected dependency, so tests drive it instead of sleeping.

`sleep_or_event` is the one way to wait "this long, unless told to stop" on a clock.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """Wall-clock time, timezone-aware UTC."""

    def monotonic(self) -> float:
        """Seconds from an arbitrary origin; never goes back."""

    async def sleep(self, seconds: float) -> None:
        """Wait `seconds` of this clock's time."""


class SystemClock:
    """The real clock."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


class FakeClock:
    """A clock that moves only when told to.

    `sleep()` parks the caller until `advance()` moves time past its deadline.
    """

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 1, 1, tzinfo=UTC)
        self._mono = 0.0
        self._sleepers: list[tuple[float, asyncio.Future[None]]] = []

    def now(self) -> datetime:
        return self._now

    def monotonic(self) -> float:
        return self._mono

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._sleepers.append((self._mono + seconds, future))
        await future

    async def advance(self, seconds: float) -> None:
        """Move time forward and wake every sleeper whose deadline passed."""
        self._mono += seconds
        self._now += timedelta(seconds=seconds)
        due = [f for deadline, f in self._sleepers if deadline <= self._mono]
        self._sleepers = [(d, f) for d, f in self._sleepers if d > self._mono]
        for future in due:
            if not future.done():
                future.set_result(None)
        # let the woken tasks run before the caller looks at their effects
        for _ in range(5):
            await asyncio.sleep(0)


SYSTEM_CLOCK = SystemClock()


async def sleep_or_event(
    clock: Clock, seconds: float, event: asyncio.Event, *wake: asyncio.Event
) -> bool:
    """Sleep `seconds` of `clock` time unless `event` (or one of `wake`) fires first.

    Returns whether `event` (the stop signal) is set.
    """
    if event.is_set():
        return True
    if seconds <= 0:
        await asyncio.sleep(0)
        return event.is_set()
    sleeper = asyncio.ensure_future(clock.sleep(seconds))
    waiters = [asyncio.ensure_future(e.wait()) for e in (event, *wake)]
    try:
        await asyncio.wait({sleeper, *waiters}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        # cancelled, not awaited: awaiting here could swallow our own caller's cancellation
        for task in (sleeper, *waiters):
            task.cancel()
    return event.is_set()
