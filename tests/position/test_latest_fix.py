"""Freshness: a fix older than the limit is never current; NoFix clears at once."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from luxxon_agent.clock import FakeClock
from luxxon_agent.position import DEFAULT_MAX_AGE_S, Fix, LatestFix, NoFix, SourceKind, open_source


def make_fix(clock: FakeClock, age_s: float = 0.0) -> Fix:
    return Fix(
        time=clock.now() - timedelta(seconds=age_s),
        lat=4.711,
        lng=-74.072,
        accuracy_m=4.0,
        source=SourceKind.SIM,
    )


async def test_fresh_fix_is_current_until_the_limit() -> None:
    clock = FakeClock()
    latest = LatestFix(clock=clock)
    assert DEFAULT_MAX_AGE_S == 2.0
    assert latest.current() is None
    fix = make_fix(clock)
    latest.update(fix)
    assert latest.current() is fix
    await clock.advance(2.0)
    assert latest.current() is fix
    await clock.advance(0.001)
    assert latest.current() is None
    assert latest.last is fix


def test_stale_on_arrival_and_future_fixes_are_not_current() -> None:
    clock = FakeClock()
    latest = LatestFix(clock=clock)
    latest.update(make_fix(clock, age_s=2.5))
    assert latest.current() is None
    latest.update(make_fix(clock, age_s=-3.0))  # receiver clock ahead of ours
    assert latest.current() is None


def test_no_fix_clears_and_older_fix_does_not_replace_newer() -> None:
    clock = FakeClock()
    latest = LatestFix(max_age_s=5.0, clock=clock)
    newer, older = make_fix(clock, 0.0), make_fix(clock, 1.0)
    latest.update(newer)
    latest.update(older)
    assert latest.current() is newer
    latest.update(NoFix(time=clock.now(), source=SourceKind.SIM, reason="unplugged"))
    assert latest.current() is None
    assert latest.current(now=clock.now()) is None


def test_max_age_must_be_positive() -> None:
    with pytest.raises(ValueError):
        LatestFix(max_age_s=0)


async def test_follow_a_sim_source_with_a_fake_clock() -> None:
    clock = FakeClock()
    source = open_source("sim://?lat=4.711&lng=-74.072&count=3", clock=clock)
    latest = LatestFix(clock=clock)
    task = asyncio.create_task(latest.follow(source))
    await clock.advance(0)  # let the source yield its first fix
    first = latest.current()
    assert first is not None and first.source is SourceKind.SIM
    await clock.advance(1.0)
    second = latest.current()
    assert second is not None and second.time - first.time == timedelta(seconds=1)
    assert (second.lat, second.lng) != (first.lat, first.lng)
    await clock.advance(1.0)
    await asyncio.wait_for(task, 2.0)  # count=3: the source ends, follow() returns
    assert source.stats.fixes == 3
    await clock.advance(2.5)
    assert latest.current() is None  # nobody updated it: stale
    await source.close()
