"""URLs pick sources; bad URLs are one-line PositionSourceErrors; sim is deterministic."""

from __future__ import annotations

import asyncio

import pytest

from luxxon_agent.clock import FakeClock
from luxxon_agent.errors import PositionSourceError
from luxxon_agent.position import Fix, FixQuality, SourceKind, TimeSource, open_source
from luxxon_agent.position.file_source import FileSource
from luxxon_agent.position.gpsd_source import GpsdSource
from luxxon_agent.position.mavlink_source import MavlinkSource
from luxxon_agent.position.serial_source import SerialSource
from luxxon_agent.position.sim_source import SimSource
from luxxon_agent.position.tcp_source import TcpSource
from tests.position.conftest import CORPUS


def test_each_scheme_builds_its_source() -> None:
    serial = open_source("serial:///dev/ttyUSB0?baud=4800")
    assert isinstance(serial, SerialSource) and serial.path == "/dev/ttyUSB0"
    assert serial.baud == 4800
    assert open_source("serial:///dev/ttyACM0").baud is None  # type: ignore[attr-defined]
    tcp = open_source("tcp://192.168.1.20:10110")
    assert isinstance(tcp, TcpSource) and (tcp.host, tcp.port) == ("192.168.1.20", 10110)
    gpsd = open_source("gpsd://localhost")
    assert isinstance(gpsd, GpsdSource) and gpsd.port == 2947
    mav = open_source("mavlink://udpin:0.0.0.0:14550")
    assert isinstance(mav, MavlinkSource) and mav.device == "udpin:0.0.0.0:14550"
    mav_serial = open_source("mavlink:///dev/ttyAMA0?baud=921600")
    assert isinstance(mav_serial, MavlinkSource)
    assert (mav_serial.device, mav_serial.baud) == ("/dev/ttyAMA0", 921600)
    replay = open_source(f"nmea-file://{CORPUS / 'bu353s4.log'}?speed=0")
    assert isinstance(replay, FileSource) and replay.speed == 0
    assert isinstance(open_source("sim://?lat=1&lng=2"), SimSource)


@pytest.mark.parametrize(
    "url",
    [
        "gps://x",
        "/dev/ttyUSB0",
        "sim://?lat=1",
        "sim://?lat=91&lng=0",
        "sim://?lat=nan&lng=0",
        "tcp://host-without-port",
        "tcp://host:notaport",
        "serial://",
        "serial:///dev/ttyUSB0?baud=fast",
        "nmea-file:///no/such/file.log",
        "nmea-file://x.log?speed=-1",
    ],
)
def test_bad_urls_are_one_line_errors(url: str) -> None:
    with pytest.raises(PositionSourceError) as info:
        open_source(url)
    assert "\n" not in str(info.value)


def test_credentials_never_appear_in_descriptions_or_errors() -> None:
    source = open_source("tcp://user:hunter2@10.0.0.5:5000")
    assert "hunter2" not in source.description and "hunter2" not in repr(source)
    with pytest.raises(PositionSourceError) as info:
        open_source("tcp://user:hunter2@10.0.0.5:bad")
    assert "hunter2" not in str(info.value)


async def test_sim_path_is_deterministic_circle() -> None:
    url = "sim://?lat=4.711&lng=-74.072&radius_m=100&speed_mps=10&hz=100&count=3"
    runs = []
    for _ in range(2):
        source = open_source(url)
        fixes = [report async for report in source]
        assert all(isinstance(f, Fix) for f in fixes)
        await source.close()
        runs.append([(f.lat, f.lng) for f in fixes])
    assert runs[0] == runs[1] and len(runs[0]) == 3
    sim = open_source(url)
    assert isinstance(sim, SimSource)
    # every point is radius_m from the centre (equirectangular, fine at 100 m)
    import math

    for k in range(0, 400, 37):
        lat, lng = sim.position(k)
        north = (lat - 4.711) * 111_320.0
        east = (lng + 74.072) * 111_320.0 * math.cos(math.radians(4.711))
        assert math.hypot(north, east) == pytest.approx(100.0, rel=1e-6)
    assert fixes[0].quality is FixQuality.SIMULATED
    assert fixes[0].time_source is TimeSource.HOST
    assert fixes[0].source is SourceKind.SIM


def test_public_surface_is_exactly_all() -> None:
    import luxxon_agent.position as position

    assert position.__all__ == sorted(position.__all__)
    public = {name for name in vars(position) if not name.startswith("_")}
    modules = {name for name in public if type(getattr(position, name)).__name__ == "module"}
    assert public - modules == set(position.__all__)


async def test_replay_keeps_the_recorded_pace_scaled_by_speed() -> None:
    clock = FakeClock()
    source = open_source(f"nmea-file://{CORPUS / 'bu353s4.log'}?speed=2", clock=clock)
    fixes: list[Fix] = []
    first = asyncio.Event()

    async def consume() -> None:
        async for report in source:
            if isinstance(report, Fix):
                fixes.append(report)
                first.set()

    task = asyncio.create_task(consume())
    try:
        await asyncio.wait_for(first.wait(), 10)  # the file is read in the executor
        await clock.advance(0)  # the replay now sleeps on the fake clock
        assert len(fixes) == 1
        await clock.advance(0.49)  # 1 s epochs at speed 2: the next fix is 0.5 s away
        assert len(fixes) == 1
        await clock.advance(0.02)
        assert len(fixes) == 2
        assert (fixes[1].time - fixes[0].time).total_seconds() == 1.0
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await source.close()
