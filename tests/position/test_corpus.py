"""Every gpsd capture decodes to gpsd's own fixes, epoch by epoch.

Differences are not skipped: each is a named expectation below, mirrored in
the "Corpus differences" table of docs/position.md with the reason.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from luxxon_agent.cli.agent import app
from luxxon_agent.position import Fix, iso_utc, open_source
from tests.position.conftest import CORPUS

TOLERANCE_DEG = 1e-6
AGENT_CLI = str(Path(sys.executable).parent / "luxxon-agent")
LOGS = sorted(p.name for p in CORPUS.glob("*.log"))
runner = CliRunner()


def _load_reader():
    spec = importlib.util.spec_from_file_location("expected_fixes", CORPUS / "expected_fixes.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


EXPECTED_FIXES = _load_reader()


@dataclass(frozen=True)
class Extra:
    """An epoch we report and gpsd does not (with the position we must report)."""

    time: str
    lat: float
    lng: float
    why: str


@dataclass(frozen=True)
class Missing:
    """An epoch gpsd reports as a fix and we, on purpose, do not."""

    time: str
    why: str


@dataclass(frozen=True)
class TimeShift:
    """Same epoch and position, different (corrected) time."""

    gpsd_time: str
    our_time: str
    why: str


@dataclass(frozen=True)
class RepeatedTimes:
    """The receiver's clock steps back: this many fixes repeat an earlier time."""

    count: int
    why: str


GPSD_NO_TIMED_REPORT = "valid fix; gpsd printed no timed TPV for this cycle"
CAPTURE_ENDS_MID_CYCLE = "capture ends mid-cycle; the epoch's sentences already hold a valid fix"

DIFFERENCES: dict[str, list[Extra | Missing | TimeShift | RepeatedTimes]] = {
    "april6_2019.log": [
        TimeShift(
            "1999-08-22T00:02:31.420Z",
            "2019-04-07T00:02:31.420Z",
            "GPS week rollover: RMC date 220899 is 1024 weeks before the capture's 2019 header",
        )
    ],
    "beidou-bd.log": [
        Extra("2015-02-25T07:41:55.799Z", 31.24795, 121.587438333, GPSD_NO_TIMED_REPORT),
    ],
    "humminbird-M37.log": [
        Extra("2006-09-16T19:41:03.000Z", 44.435223333, -71.67593, GPSD_NO_TIMED_REPORT),
        Extra("2006-09-16T19:41:04.000Z", 44.43523, -71.675893333, GPSD_NO_TIMED_REPORT),
        RepeatedTimes(9, "receiver time jumps back 19:41:24 -> 19:41:11; gpsd repeats too"),
    ],
    "isync.log": [
        Extra("2016-02-03T13:15:30.000Z", 41.897664, -87.643945, CAPTURE_ENDS_MID_CYCLE),
    ],
    "mtk-3301.log": [
        Extra("2008-08-23T08:14:36.000Z", 52.216368917, 6.885023233, GPSD_NO_TIMED_REPORT),
    ],
    "quectel-l76k-nmea.log": [
        Extra("2026-08-05T05:53:04.000Z", 47.661978333, -122.326392167, CAPTURE_ENDS_MID_CYCLE),
    ],
    "quectel.log": [
        Missing(
            "2020-10-07T02:20:38.000Z",
            "GSA mode 1 arrives before the next cycle's time; gpsd's last TPV for it is mode 1 too",
        )
    ],
}


def expected_epochs(log: str) -> list[tuple[str, float, float]]:
    """gpsd's `--epochs` view of the .chk, with this file's named differences applied."""
    by_time: dict[str, tuple[str, float, float]] = {}
    for time, lat, lon, _mode, _src in EXPECTED_FIXES.fixes(str(CORPUS / f"{log}.chk")):
        if time is not None:
            by_time[time] = (time, lat, lon)
    rows = list(by_time.values())
    for diff in DIFFERENCES.get(log, []):
        if isinstance(diff, Missing):
            assert diff.time in by_time, f"stale expectation {diff}"
            rows = [row for row in rows if row[0] != diff.time]
        elif isinstance(diff, TimeShift):
            assert diff.gpsd_time in by_time, f"stale expectation {diff}"
            rows = [(diff.our_time, r[1], r[2]) if r[0] == diff.gpsd_time else r for r in rows]
        elif isinstance(diff, Extra):
            assert diff.time not in by_time, f"stale expectation {diff}"
            rows.append((diff.time, diff.lat, diff.lng))
    return rows


Row = tuple[str, float, float]
"""One reported fix: (ISO time as `gps dump` prints it, lat, lng)."""


def assert_matches_gpsd(log: str, rows: list[Row]) -> None:
    """Our fixes, reduced as gpsd's `--epochs` does (last per time), against the .chk."""
    by_time: dict[str, Row] = {}
    repeats = 0
    for row in rows:
        repeats += row[0] in by_time
        by_time[row[0]] = row
    expected_repeats = sum(
        d.count for d in DIFFERENCES.get(log, []) if isinstance(d, RepeatedTimes)
    )
    assert repeats == expected_repeats, f"{log}: {repeats} repeated times"
    assert_same_epochs(log, list(by_time.values()))
    # no fix is ever reported in the wrong hemisphere or outside the globe
    assert all(-90 <= lat <= 90 and -180 <= lng <= 180 for _, lat, lng in rows)


def assert_same_epochs(log: str, ours: list[Row]) -> None:
    expected = expected_epochs(log)
    ours_times = sorted(row[0] for row in ours)
    assert len(ours_times) == len(set(ours_times))
    missing = sorted({row[0] for row in expected} - set(ours_times))
    extra = sorted(set(ours_times) - {row[0] for row in expected})
    assert (missing, extra) == ([], []), f"{log}: missing {missing[:3]}, extra {extra[:3]}"
    want = {row[0]: row for row in expected}
    for time, lat, lng in ours:
        assert abs(lat - want[time][1]) <= TOLERANCE_DEG, f"{log} {time} lat {lat}"
        assert abs(lng - want[time][2]) <= TOLERANCE_DEG, f"{log} {time} lng {lng}"


async def decode(log: str) -> list[Fix]:
    source = open_source(f"nmea-file://{CORPUS / log}?speed=0")
    try:
        return [report async for report in source if isinstance(report, Fix)]
    finally:
        await source.close()


def test_every_log_has_a_chk_and_the_table_names_only_real_files() -> None:
    assert len(LOGS) == 21
    for log in LOGS:
        assert (CORPUS / f"{log}.chk").is_file()
    assert set(DIFFERENCES) <= set(LOGS)


@pytest.mark.parametrize("log", LOGS)
async def test_log_matches_gpsd_epoch_by_epoch(log: str) -> None:
    fixes = await decode(log)
    assert_matches_gpsd(log, [(iso_utc(f.time), f.lat, f.lng) for f in fixes])


def dump_rows(stdout: str) -> list[Row]:
    lines = [json.loads(line) for line in stdout.splitlines()]
    for line in lines:
        assert set(line) >= {"time", "lat", "lng", "accuracy_m", "quality", "source"}
        assert line["source"] == "nmea-file"
    return [(line["time"], line["lat"], line["lng"]) for line in lines]


@pytest.mark.parametrize("log", LOGS)
def test_gps_dump_command_matches_gpsd(log: str) -> None:
    """The real `luxxon-agent gps dump` command for every log, in-process (no interpreter start)."""
    result = runner.invoke(app, ["gps", "dump", f"nmea-file://{CORPUS / log}?speed=0"])
    assert result.exit_code == 0, result.output
    assert_matches_gpsd(log, dump_rows(result.stdout))


@pytest.mark.parametrize("log", ["bu353s4.log", "april6_2019.log", "unicore-um621.log"])
def test_gps_dump_executable_matches_gpsd(log: str) -> None:
    """The installed `luxxon-agent` executable, as a script would run it, for a few logs."""
    result = subprocess.run(
        [AGENT_CLI, "gps", "dump", f"nmea-file://{CORPUS / log}?speed=0"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert_matches_gpsd(log, dump_rows(result.stdout))
