"""`dump_fixes`: the loop behind `luxxon-agent gps dump`."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from luxxon_agent.position.fix import Fix
from luxxon_agent.position.position_source import PositionSource


async def dump_fixes(
    source: PositionSource, seconds: float | None, write: Callable[[dict[str, object]], None]
) -> int:
    """Pass every Fix's JSON to `write` until the source ends or `seconds` pass; count them."""
    count = 0

    async def pump() -> None:
        nonlocal count
        async for report in source:
            if isinstance(report, Fix):
                write(report.to_json())
                count += 1

    try:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(pump(), seconds)
    finally:
        await source.close()
    return count
