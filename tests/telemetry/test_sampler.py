"""Sampler: 1 Hz on the whole second of the injected clock; honest gaps, never a repeat."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from types import SimpleNamespace

from luxxon_agent.clock import FakeClock
from luxxon_agent.meter import telemetry_clean_seconds
from luxxon_agent.position.fix import Fix, NoFix, SourceKind
from luxxon_agent.position.latest_fix import LatestFix
from luxxon_agent.telemetry import Sampler, Spool, TickOutcome, recover_signer
from luxxon_agent.telemetry.signing import datetime_to_ms
from tests.telemetry.helpers import CHAIN, DEVICE, T0


def fix_at(at, lat=4.711, accuracy_m=3.0):
    return Fix(time=at, lat=lat, lng=-74.072, accuracy_m=accuracy_m, source=SourceKind.SIM)


async def test_ticks_on_the_second_with_honest_gaps(tmp_path):
    clock = FakeClock(T0 + timedelta(seconds=0.3))
    latest = LatestFix(max_age_s=2.0, clock=clock)
    ticks: asyncio.Queue = asyncio.Queue()
    notified = []
    spool = Spool(tmp_path / "s.db")
    sampler = Sampler(
        spool=spool,
        provider=latest,
        signer=DEVICE,
        session_id="ses_1",
        chain_id=CHAIN,
        clock=clock,
        on_tick=ticks.put_nowait,
        on_sample=lambda: notified.append(1),
    )

    async def step(report=None, seconds=1.0):
        if report is not None:
            latest.update(report)
        await clock.advance(seconds)
        return await asyncio.wait_for(ticks.get(), 5)

    def second(k, frac=0.0):
        return T0 + timedelta(seconds=k + frac)

    await sampler.start()
    await asyncio.sleep(0)
    outcomes = []
    for k in (1, 2, 3):
        outcomes.append(await step(fix_at(second(k, -0.2), lat=4.711 + k / 1e4)))
    outcomes.append(await step())  # the k=3 fix again: fresh but already sampled
    outcomes.append(await step())  # now 2.2 s old: stale
    outcomes.append(await step(fix_at(second(6, -0.2), accuracy_m=None)))
    outcomes.append(await step(NoFix(second(7, -0.2), SourceKind.SIM, "RMC status V")))
    outcomes.append(await step(fix_at(second(8, -0.2), lat=4.7119)))
    outcomes.append(await step(fix_at(second(11, -0.5)), seconds=3.0))  # the loop stalled
    assert [(t.at, t.outcome) for t in outcomes] == [
        (second(1), TickOutcome.SAMPLED),
        (second(2), TickOutcome.SAMPLED),
        (second(3), TickOutcome.SAMPLED),
        (second(4), TickOutcome.REPEATED),
        (second(5), TickOutcome.NO_FIX),
        (second(6), TickOutcome.NO_ACCURACY),
        (second(7), TickOutcome.NO_FIX),
        (second(8), TickOutcome.SAMPLED),
        (second(9), TickOutcome.LATE),
    ]
    assert (await step()).at == second(12)  # back on the whole second, no back-fill
    await sampler.stop()
    await sampler.stop()
    await clock.advance(3)
    assert ticks.empty()

    held = spool.samples("ses_1")
    assert [r.captured_at_ms for r in held] == [datetime_to_ms(second(k)) for k in (1, 2, 3, 8, 12)]
    lats = [r.sample().point.lat for r in held]
    assert lats == [4.7111, 4.7112, 4.7113, 4.7119, 4.711]
    assert all(recover_signer("ses_1", r.sample(), CHAIN) == DEVICE.address for r in held)
    assert len(notified) == 5
    assert sampler.counts[TickOutcome.SAMPLED] == 5
    spool.close()


async def test_a_restart_within_a_second_does_not_sample_it_twice(tmp_path):
    clock = FakeClock(T0)
    latest = LatestFix(max_age_s=2.0, clock=clock)
    latest.update(fix_at(T0 - timedelta(seconds=0.1)))
    with Spool(tmp_path / "s.db") as spool:
        first = Sampler(
            spool=spool, provider=latest, signer=DEVICE, session_id="s", chain_id=CHAIN, clock=clock
        )
        second = Sampler(
            spool=spool, provider=latest, signer=DEVICE, session_id="s", chain_id=CHAIN, clock=clock
        )
        assert await first.sample_at(T0) is TickOutcome.SAMPLED
        assert await second.sample_at(T0) is TickOutcome.ALREADY_SPOOLED
        assert spool.stats("s").spooled == 1


def sampler_for(spool, latest, clock, **kwargs):
    return Sampler(
        spool=spool,
        provider=latest,
        signer=DEVICE,
        session_id="s",
        chain_id=CHAIN,
        clock=clock,
        **kwargs,
    )


async def test_start_samples_at_once_so_the_first_second_of_the_session_is_paid(tmp_path):
    started_at = T0 + timedelta(seconds=0.95)
    clock = FakeClock(T0 + timedelta(seconds=1.3004))
    latest = LatestFix(max_age_s=2.0, clock=clock)
    latest.update(fix_at(T0 + timedelta(seconds=1.2)))
    ticks: asyncio.Queue = asyncio.Queue()
    with Spool(tmp_path / "s.db") as spool:
        sampler = sampler_for(spool, latest, clock, started_at=started_at, on_tick=ticks.put_nowait)
        await sampler.start()
        await asyncio.sleep(0)  # the tick loop starts its first sleep
        first = ticks.get_nowait()
        assert (first.at, first.outcome) == (T0 + timedelta(seconds=1.3), TickOutcome.SAMPLED)
        await clock.advance(0.7)  # T0+2: the same fix is not sampled twice
        assert (await asyncio.wait_for(ticks.get(), 5)).outcome is TickOutcome.REPEATED
        for k in (3, 4):
            latest.update(fix_at(T0 + timedelta(seconds=k - 0.3)))
            await clock.advance(1.0)
            assert (await asyncio.wait_for(ticks.get(), 5)).outcome is TickOutcome.SAMPLED
        await sampler.stop()
        held = [r.sample() for r in spool.samples("s")]
    assert [datetime_to_ms(s.captured_at) for s in held] == [
        datetime_to_ms(T0) + ms for ms in (1300, 3000, 4000)
    ]
    counted = [
        SimpleNamespace(captured_at=s.captured_at, lat=s.point.lat, lng=s.point.lng, accuracy_m=3.0)
        for s in held
    ]
    ended_at = T0 + timedelta(seconds=3.95)
    clean, failed = telemetry_clean_seconds(started_at, ended_at, counted, (4.711, -74.072), 50)
    assert (clean, failed) == (3, 0)  # second 0 = [0.95, 1.95) is covered by the 1.3 sample


async def test_start_does_not_sample_before_the_session_or_twice_in_a_second(tmp_path):
    clock = FakeClock(T0 + timedelta(seconds=0.5))
    latest = LatestFix(max_age_s=2.0, clock=clock)
    latest.update(fix_at(T0 + timedelta(seconds=0.4)))
    with Spool(tmp_path / "s.db") as spool:
        early = sampler_for(spool, latest, clock, started_at=T0 + timedelta(seconds=0.9))
        await early.start()
        await early.stop()
        assert spool.stats("s").spooled == 0  # before startedAt: the server would refuse it
        first = sampler_for(spool, latest, clock)
        await first.start()
        await first.stop()
        await clock.advance(0.3)
        restarted = sampler_for(spool, latest, clock)  # a restart within the same second
        await restarted.start()
        await restarted.stop()
        assert [r.captured_at_ms for r in spool.samples("s")] == [datetime_to_ms(T0) + 500]
        on_the_second = FakeClock(T0 + timedelta(seconds=7))
        latest = LatestFix(max_age_s=2.0, clock=on_the_second)
        latest.update(fix_at(T0 + timedelta(seconds=6.9)))
        exact = sampler_for(spool, latest, on_the_second)
        await exact.start()
        await asyncio.sleep(0)
        await on_the_second.advance(0)
        await exact.stop()
        assert spool.samples("s")[-1].captured_at_ms == datetime_to_ms(T0) + 7000
        assert exact.counts[TickOutcome.SAMPLED] == 1  # taken once, by the first tick


async def test_a_host_clock_off_the_gps_time_is_measured_and_warned_about_once(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="luxxon_agent.telemetry.sampler")
    clock = FakeClock(T0 + timedelta(seconds=0.3))
    latest = LatestFix(max_age_s=2.0, clock=clock)
    ticks: asyncio.Queue = asyncio.Queue()
    with Spool(tmp_path / "s.db") as spool:
        sampler = sampler_for(spool, latest, clock, on_tick=ticks.put_nowait, max_clock_offset_s=2)
        await sampler.start()
        await asyncio.sleep(0)
        assert sampler.clock_offset_s is None
        outcomes = []
        for k in range(1, 13):
            # the receiver's time runs 3.4 s behind this host: no fix is ever fresh here
            latest.update(fix_at(T0 + timedelta(seconds=k - 0.2 - 3.4)))
            await clock.advance(1.0)
            outcomes.append((await asyncio.wait_for(ticks.get(), 5)).outcome)
        assert set(outcomes) == {TickOutcome.NO_FIX}
        assert sampler.clock_offset_s is not None and abs(sampler.clock_offset_s - 3.4) <= 0.5
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "off" in r.msg]
        assert len(warnings) == 1 and "+3.1 s off" in warnings[0].getMessage()
        for k in range(13, 20):  # NTP fixed: the offset shrinks, and is said once
            latest.update(fix_at(T0 + timedelta(seconds=k - 0.2)))
            await clock.advance(1.0)
            await asyncio.wait_for(ticks.get(), 5)
        await sampler.stop()
    assert abs(sampler.clock_offset_s) <= 0.5
    infos = [r for r in caplog.records if "again" in r.msg]
    assert len(infos) == 1
    assert len([r for r in caplog.records if r.levelno == logging.WARNING and "off" in r.msg]) == 1
