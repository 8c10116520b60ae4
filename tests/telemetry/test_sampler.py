"""Sampler: 1 Hz on the whole second of the injected clock; honest gaps, never a repeat."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from luxxon_agent.clock import FakeClock
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
