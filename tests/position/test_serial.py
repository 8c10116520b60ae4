"""Serial NMEA over a real pseudo-terminal: fixes, unplug, replug, recovery in one run."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from luxxon_agent.position import Fix, NoFix, SourceKind, open_source
from luxxon_agent.position.serial_source import SerialSource
from tests.position.replay import PtyReceiver, capture_lines

WAIT_S = 15.0


async def next_matching(queue: asyncio.Queue[Fix | NoFix], predicate, count: int = 1) -> list:
    """Reports from the queue until `count` satisfy `predicate` (bounded by WAIT_S)."""
    found: list[Fix | NoFix] = []

    async def collect() -> None:
        while len(found) < count:
            report = await queue.get()
            if predicate(report):
                found.append(report)

    await asyncio.wait_for(collect(), WAIT_S)
    return found


def is_fix(report: Fix | NoFix) -> bool:
    return isinstance(report, Fix)


async def test_unplug_and_replug_recover_without_restart(tmp_path: Path) -> None:
    link = tmp_path / "usb-u-blox_GNSS-if00"
    receiver = PtyReceiver(link, capture_lines("bu353s4.log"))
    receiver.plug()
    source = open_source(f"serial://{link}")
    assert isinstance(source, SerialSource)
    queue: asyncio.Queue[Fix | NoFix] = asyncio.Queue()

    async def consume() -> None:
        async for report in source:
            queue.put_nowait(report)

    consumer = asyncio.create_task(consume())
    try:
        fixes = await next_matching(queue, is_fix, 3)
        assert source.detected_baud == 9600  # first rate that shows valid NMEA
        for fix in fixes:
            assert fix.source is SourceKind.SERIAL
            assert fix.lat == pytest.approx(-37.7848, abs=1e-3)
            assert fix.lng == pytest.approx(175.3149, abs=1e-3)
            assert fix.time.year == 2014  # the capture's own receiver time, not ours

        await receiver.unplug()
        [lost] = await next_matching(queue, lambda r: isinstance(r, NoFix) and "lost" in r.reason)
        [absent] = await next_matching(
            queue, lambda r: isinstance(r, NoFix) and "cannot open" in r.reason
        )
        assert lost.source is SourceKind.SERIAL and absent.source is SourceKind.SERIAL
        assert not consumer.done()  # unplugging never ends or crashes the source

        receiver.plug()
        again = await next_matching(queue, is_fix, 3)
        assert all(f.lat == pytest.approx(-37.7848, abs=1e-3) for f in again)
        assert source.stats.reconnects >= 1
        assert source.stats.checksum_failures == 0
        assert not consumer.done()
    finally:
        await receiver.unplug()
        consumer.cancel()
        await asyncio.gather(consumer, return_exceptions=True)
        await source.close()


async def test_fixed_baud_and_missing_device_reports_no_fix(tmp_path: Path) -> None:
    source = open_source(f"serial://{tmp_path / 'nothing-here'}?baud=4800")
    try:
        report = await asyncio.wait_for(anext(aiter(source)), WAIT_S)
        assert isinstance(report, NoFix)
        assert "cannot open serial device" in report.reason
    finally:
        await source.close()


async def test_close_while_another_task_iterates_ends_it_cleanly(tmp_path: Path) -> None:
    receiver = PtyReceiver(tmp_path / "gps", capture_lines("bu353s4.log"))
    receiver.plug()
    source = open_source(f"serial://{tmp_path / 'gps'}?baud=9600")
    first_fix = asyncio.Event()
    seen: list[Fix | NoFix] = []

    async def consume() -> str:
        async for report in source:
            seen.append(report)
            if isinstance(report, Fix):
                first_fix.set()
        return "ended"

    consumer = asyncio.create_task(consume())
    try:
        await asyncio.wait_for(first_fix.wait(), WAIT_S)
        await source.close()
        assert await asyncio.wait_for(consumer, WAIT_S) == "ended"
        assert not any(isinstance(r, NoFix) and "lost" in r.reason for r in seen)
    finally:
        consumer.cancel()
        await asyncio.gather(consumer, return_exceptions=True)
        await receiver.unplug()


async def test_autobaud_waits_for_real_nmea(tmp_path: Path) -> None:
    """Noise first (a receiver at another baud rate looks like this), then NMEA: detected."""
    noise = [bytes((i * 37 + 11) % 256 for i in range(n, n + 64)) for n in range(40)]
    receiver = PtyReceiver(tmp_path / "gps", noise)
    receiver.plug()
    source = SerialSource(str(tmp_path / "gps"), str(tmp_path / "gps"), probe_s=0.3)
    iterator = aiter(source)
    try:
        report = await asyncio.wait_for(anext(iterator), WAIT_S)
        assert isinstance(report, NoFix) and "no NMEA at any baud rate" in report.reason
        receiver.lines = capture_lines("bu353s4.log")
        fix = await asyncio.wait_for(_first_fix(iterator), WAIT_S)
        assert fix.lat == pytest.approx(-37.7848, abs=1e-3)
        assert source.detected_baud == 9600
    finally:
        await source.close()
        await receiver.unplug()


async def _first_fix(iterator) -> Fix:
    while not isinstance(report := await anext(iterator), Fix):
        pass
    return report
