"""mavlink://: a pymavlink "flight controller" sends GPS_RAW_INT / GLOBAL_POSITION_INT over UDP."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest
from pymavlink.dialects.v20 import ardupilotmega as mavlink2

from luxxon_agent.position import (
    UERE_M,
    Fix,
    FixQuality,
    NoFix,
    SourceKind,
    TimeSource,
    open_source,
)
from tests.conftest import free_port

WAIT_S = 15.0
BOOT_UNIX_S = 1_780_000_000.0  # the autopilot booted at this UNIX time (2026-05-28)


class _Udp:
    """The file-like pymavlink writes frames to: one datagram per frame."""

    def __init__(self, port: int) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.port = port

    def write(self, frame: bytes) -> None:
        self.sock.sendto(frame, ("127.0.0.1", self.port))


class Autopilot:
    """Sends one GPS cycle per call (MAVLink 2), as ArduPilot streams them to a companion."""

    def __init__(self, port: int) -> None:
        self.udp = _Udp(port)
        self.mav = mavlink2.MAVLink(self.udp, srcSystem=1, srcComponent=1)
        self.boot_ms = 0

    def cycle(self, *, fix_type: int, h_acc_mm: int = 0, eph: int = 120) -> None:
        self.boot_ms += 200
        mav = self.mav
        mav.system_time_send(int((BOOT_UNIX_S + self.boot_ms / 1000) * 1e6), self.boot_ms)
        mav.gps_raw_int_send(
            int((BOOT_UNIX_S + self.boot_ms / 1000) * 1e6),
            fix_type,
            47_3977420,
            8_5455940,
            488_000,
            eph,
            200,
            150,
            9000,
            12,
            h_acc=h_acc_mm,
        )
        mav.global_position_int_send(
            self.boot_ms, 47_3977419, 8_5455938, 488_100, 20_000, 100, 50, 0, 9000
        )

    def close(self) -> None:
        self.udp.sock.close()


async def collect(source, autopilot: Autopilot, cycles: list[tuple[dict[str, int], Any]]) -> list:
    """Send each cycle and wait for the report it must cause (bounded waits, no sleeps)."""
    queue: asyncio.Queue[Fix | NoFix] = asyncio.Queue()

    async def consume() -> None:
        async for report in source:
            if not (isinstance(report, NoFix) and "no MAVLink" in report.reason):
                queue.put_nowait(report)

    consumer = asyncio.create_task(consume())
    try:
        # the source binds its UDP port when first iterated: repeat until it hears us
        for _ in range(50):
            autopilot.cycle(fix_type=3, h_acc_mm=2500)
            try:
                await asyncio.wait_for(queue.get(), 0.2)
                break
            except TimeoutError:
                continue
        else:
            raise AssertionError("the MAVLink source never heard the autopilot")
        reports: list[Fix | NoFix] = []
        for kwargs, expected in cycles:
            autopilot.cycle(**kwargs)

            async def matching(expected: Any = expected) -> Fix | NoFix:
                while not expected(report := await queue.get()):
                    pass  # an earlier cycle's second report
                return report

            reports.append(await asyncio.wait_for(matching(), WAIT_S))
        return reports
    finally:
        consumer.cancel()
        await asyncio.gather(consumer, return_exceptions=True)


def is_rtk(report: Fix | NoFix) -> bool:
    return isinstance(report, Fix) and report.quality is FixQuality.RTK_FIXED


def has_hdop_1_5(report: Fix | NoFix) -> bool:
    return isinstance(report, Fix) and report.hdop == 1.5


def is_no_fix(report: Fix | NoFix) -> bool:
    return isinstance(report, NoFix)


async def test_fix_accuracy_time_and_loss_of_fix() -> None:
    port = free_port()
    source = open_source(f"mavlink://udpin:127.0.0.1:{port}")
    autopilot = Autopilot(port)
    try:
        reports = await collect(
            source,
            autopilot,
            [
                ({"fix_type": 6, "h_acc_mm": 20}, is_rtk),
                ({"fix_type": 3, "h_acc_mm": 0, "eph": 150}, has_hdop_1_5),
                ({"fix_type": 1}, is_no_fix),
            ],
        )
    finally:
        autopilot.close()
        await source.close()
    fixes = [r for r in reports if isinstance(r, Fix)]
    assert len(fixes) >= 2
    for fix in fixes:
        assert fix.source is SourceKind.MAVLINK
        assert fix.lat == pytest.approx(47.397742, abs=1e-6)
        assert fix.lng == pytest.approx(8.545594, abs=1e-6)
        assert fix.time_source is TimeSource.RECEIVER
        assert abs(fix.time.timestamp() - BOOT_UNIX_S) < 10
    rtk = [f for f in fixes if f.quality is FixQuality.RTK_FIXED]
    assert rtk and rtk[0].accuracy_m == pytest.approx(0.02)
    # the reported position is the autopilot's fused GLOBAL_POSITION_INT, not the raw GPS
    assert rtk[0].lat == 47.3977419 and rtk[0].altitude_m == pytest.approx(488.1)
    eph_based = [f for f in fixes if f.hdop == pytest.approx(1.5)]
    assert eph_based and eph_based[0].accuracy_m == pytest.approx(1.5 * UERE_M[FixQuality.GPS])
    assert isinstance(reports[-1], NoFix) and "fix_type 1" in reports[-1].reason
    assert source.stats.sentences["GPS_RAW_INT"] >= 4
