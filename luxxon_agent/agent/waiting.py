"""Waiting on a clock or an event, whichever comes first (no polling of flags)."""

from __future__ import annotations

import asyncio

from luxxon_agent.clock import Clock


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
