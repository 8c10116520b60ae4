"""gpsd://: a real gpsd daemon on 127.0.0.1, fed NMEA through a pty, read over its JSON protocol."""

from __future__ import annotations

import asyncio
import os
import pty
import subprocess
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from luxxon_agent.position import Fix, LatestFix, NoFix, SourceKind, TimeSource, open_source
from tests.conftest import free_port, require_tool
from tests.position.replay import live_cycle

WAIT_S = 20.0


class LiveReceiver:
    """Writes a cycle stamped with the current time every 0.2 s into a pty master."""

    def __init__(self) -> None:
        self.master, self.slave = pty.openpty()
        os.set_blocking(self.master, False)
        self.path = os.ttyname(self.slave)
        self.fix = True
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            try:
                os.write(self.master, live_cycle(datetime.now(UTC), fix=self.fix))
            except BlockingIOError:
                pass  # gpsd not reading yet
            await asyncio.sleep(0.2)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        os.close(self.master)
        os.close(self.slave)


@pytest.fixture
async def gpsd() -> AsyncIterator[tuple[int, LiveReceiver]]:
    binary = require_tool("gpsd")
    receiver = LiveReceiver()
    port = free_port()
    # -N foreground, -n poll without clients, -b never write to the device, -S port
    process = subprocess.Popen(
        [binary, "-N", "-n", "-b", "-S", str(port), receiver.path],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    receiver.start()
    try:
        yield port, receiver
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
        await receiver.stop()


async def test_gpsd_fixes_are_current_with_gst_accuracy(gpsd: tuple[int, LiveReceiver]) -> None:
    port, receiver = gpsd
    source = open_source(f"gpsd://127.0.0.1:{port}")
    latest = LatestFix()
    fixes: list[Fix] = []

    async def until_fixes_then_loss() -> NoFix:
        async for report in source:
            latest.update(report)
            if isinstance(report, Fix):
                assert latest.current() is report  # receiver time is now: fresh
                fixes.append(report)
                if len(fixes) == 3:
                    receiver.fix = False  # antenna covered
            elif fixes and len(fixes) >= 3:
                return report
        raise AssertionError("gpsd source ended")

    try:
        lost = await asyncio.wait_for(until_fixes_then_loss(), WAIT_S)
    finally:
        await source.close()
    for fix in fixes:
        assert fix.source is SourceKind.GPSD
        assert fix.time_source is TimeSource.RECEIVER
        assert fix.lat == pytest.approx(4.711, abs=1e-6)
        assert fix.lng == pytest.approx(-74.072, abs=1e-6)
    # GST lat/lon sigmas 3 m and 4 m -> 5 m, once the GST of the cycle was seen
    assert any(fix.accuracy_m == pytest.approx(5.0) for fix in fixes)
    assert len({fix.time for fix in fixes}) == len(fixes)  # one report per epoch
    assert "mode 1" in lost.reason
    assert latest.current() is None
    assert source.stats.sentences["TPV"] > 0


async def test_gpsd_not_running_is_no_fix() -> None:
    source = open_source(f"gpsd://127.0.0.1:{free_port()}")
    try:
        report = await asyncio.wait_for(anext(aiter(source)), WAIT_S)
    finally:
        await source.close()
    assert isinstance(report, NoFix) and "cannot reach gpsd" in report.reason
