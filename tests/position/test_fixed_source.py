"""`fixed://`: a surveyed position, opened by `open_source` like every other source."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

from luxxon_agent.clock import FakeClock
from luxxon_agent.errors import PositionSourceError
from luxxon_agent.position import Fix, SourceKind, open_source
from luxxon_agent.position.fixed_source import FixedPoint, FixedSource, parse_fixed_url

AGENT_CLI = str(Path(sys.executable).parent / "luxxon-agent")


@pytest.mark.parametrize(
    ("url", "point"),
    [
        ("fixed://52.52,13.405", FixedPoint(52.52, 13.405, 3.0)),
        ("fixed://-33.9,151.2,1.5", FixedPoint(-33.9, 151.2, 1.5)),
        ("fixed://?lat=1.5&lng=-2&accuracy_m=0.5", FixedPoint(1.5, -2.0, 0.5)),
        ("fixed://?lat=1.5&lng=-2", FixedPoint(1.5, -2.0, 3.0)),
    ],
)
def test_both_spellings_name_the_point(url: str, point: FixedPoint) -> None:
    assert parse_fixed_url(url) == point
    source = open_source(url)
    assert isinstance(source, FixedSource) and source.point == point


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("fixed://", "needs lat and lng"),
        ("fixed://52.5", "needs lat,lng"),
        ("fixed://1,2,3,4", "needs lat,lng"),
        ("fixed://91,0", "lat must be in [-90, 90]"),
        ("fixed://0,181", "lng must be in [-180, 180]"),
        ("fixed://nan,0", "lat must be in"),
        ("fixed://north,0", "lat must be a number"),
        ("fixed://1,2,0", "accuracy_m must be above 0"),
        ("fixed://1,2,5000", "accuracy_m must be in [0, 1000]"),
        ("fixed://?lat=1&lng=2&alt=3", "not alt"),
        ("fixed://1,2?lat=1&lng=2", "not both"),
    ],
)
def test_bad_fixed_urls_are_one_line_errors(url: str, why: str) -> None:
    with pytest.raises(PositionSourceError) as info:
        open_source(url)
    message = str(info.value)
    assert why in message and url in message and "\n" not in message


async def test_reports_the_point_once_a_second_on_the_host_clock() -> None:
    clock = FakeClock()
    source = open_source("fixed://4.711,-74.072,2", clock=clock)
    fixes: list[Fix] = []

    async def collect() -> None:
        async for report in source:
            assert isinstance(report, Fix)
            fixes.append(report)
            if len(fixes) == 3:
                return

    task = asyncio.create_task(collect())
    async with source:
        for _ in range(10):  # bounded: the source sleeps 1 s of the fake clock between fixes
            await asyncio.sleep(0)
            if task.done():
                break
            await clock.advance(1.0)
        await asyncio.wait_for(task, 5)
    assert [(f.lat, f.lng, f.accuracy_m, f.source) for f in fixes] == [
        (4.711, -74.072, 2.0, SourceKind.FIXED)
    ] * 3
    assert [(f.time - fixes[0].time).total_seconds() for f in fixes] == [0.0, 1.0, 2.0]


def test_gps_check_accepts_fixed() -> None:
    result = subprocess.run(
        [AGENT_CLI, "gps", "check", "fixed://4.711,-74.072,2", "--seconds", "5",
         "--stop-on-fix", "--json"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["usable"] is True
    assert summary["last_fix"]["lat"] == 4.711 and summary["last_fix"]["accuracy_m"] == 2.0


def test_gps_check_names_a_bad_fixed_url() -> None:
    result = subprocess.run(
        [AGENT_CLI, "gps", "check", "fixed://91,0"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode != 0
    assert "lat must be in [-90, 90]" in result.stderr and "Traceback" not in result.stderr
