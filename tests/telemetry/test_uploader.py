"""Uploader decisions against a scripted sink: order, Retry-After, final refusals, holds."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from luxxon_agent.backoff import Backoff
from luxxon_agent.clock import FakeClock
from luxxon_agent.errors import ApiError, NetworkError
from luxxon_agent.models import TelemetryReceipt
from luxxon_agent.telemetry import SampleState, Spool, Uploader
from tests.support import wait_for
from tests.telemetry.helpers import T0, seconds, signed


class ScriptedSink:
    """Answers each post from a list of outcomes (an exception or None = accepted), then accepts."""

    def __init__(self, script=()) -> None:
        self.script = list(script)
        self.calls: list[tuple[str, str]] = []

    async def post_telemetry(self, session_id, sample):
        self.calls.append((session_id, sample.to_wire()["capturedAt"]))
        outcome = self.script.pop(0) if self.script else None
        if outcome is not None:
            raise outcome
        return TelemetryReceipt(session_id=session_id, captured_at=sample.captured_at)


def fill(spool: Spool, count: int, session_id: str = "ses") -> None:
    for at in reversed(seconds(T0, count)):  # spooled newest first; must go out oldest first
        spool.append(session_id, signed(session_id, at))


async def test_oldest_first_and_retry_after_is_honoured(tmp_path):
    clock = FakeClock(T0)
    busy = ApiError(429, "UNAVAILABLE", "slow down", retry_after=30.0)
    sink = ScriptedSink([None, busy])
    with Spool(tmp_path / "s.db") as spool:
        fill(spool, 5)
        uploader = Uploader(
            spool, sink, concurrency=1, backoff=Backoff(initial=0.01, jitter=0), clock=clock
        )
        async with uploader:
            await wait_for(lambda: len(sink.calls) == 2, 5, "the 429", interval=0.01)
            await asyncio.sleep(0.05)
            await clock.advance(29.9)
            await asyncio.sleep(0.05)
            assert len(sink.calls) == 2  # still waiting out Retry-After
            await clock.advance(0.2)
            result = await uploader.drain(timeout=5)
        assert result.complete and result.delivered == 5
        sent = [at for _, at in sink.calls]
        assert sent == sorted(sent) and len(sent) == 6  # the refused one went again
        assert sent[1] == sent[2]


async def test_final_refusals_are_marked_and_credentials_problems_hold(tmp_path):
    sink = ScriptedSink(
        [
            ApiError(400, "INVALID_SIGNATURE", "no"),
            ApiError(401, "REVOKED_API_KEY", "revoked"),
            NetworkError("refused"),
        ]
    )
    with Spool(tmp_path / "s.db") as spool:
        fill(spool, 3)
        async with Uploader(spool, sink, concurrency=1, backoff=Backoff(0.01, 0.02)) as up:
            result = await up.drain(timeout=10)
        assert result.complete and (result.delivered, result.rejected) == (2, 1)
        rows = spool.samples("ses")
        assert [(r.state, r.reason) for r in rows] == [
            (SampleState.REJECTED, "INVALID_SIGNATURE"),
            (SampleState.DELIVERED, None),
            (SampleState.DELIVERED, None),
        ]
        assert up.counters.failures == 2


async def test_drain_times_out_while_the_network_is_down(tmp_path):
    class Down:
        async def post_telemetry(self, session_id, sample):
            raise NetworkError("connection refused")

    with Spool(tmp_path / "s.db") as spool:
        fill(spool, 3)
        async with Uploader(spool, Down(), backoff=Backoff(0.01, 0.05)) as up:
            result = await up.drain(timeout=0.3)
        assert not result.complete and result.pending == 3
        assert spool.stats().pending == 3


async def test_refusals_that_depend_on_arrival_time_are_retried_not_lost(tmp_path):
    clock = FakeClock(T0)
    sink = ScriptedSink(
        [
            ApiError(422, "CAPTURED_IN_FUTURE", "capturedAt is in the future"),
            ApiError(403, "UNKNOWN_SIGNER", "not registered yet"),
        ]
    )
    with Spool(tmp_path / "s.db") as spool:
        fill(spool, 3)
        backoff = Backoff(initial=1.0, maximum=1.0, jitter=0)
        async with Uploader(spool, sink, concurrency=1, backoff=backoff, clock=clock) as up:
            await wait_for(lambda: up.counters.held == 1, 5, "the first hold", interval=0.01)
            assert spool.stats("ses").pending == 3  # held, not rejected
            await clock.advance(1.0)
            await wait_for(lambda: up.counters.held == 2, 5, "the second hold", interval=0.01)
            await clock.advance(1.0)
            result = await up.drain(timeout=5)
        assert result.complete and (result.delivered, result.rejected) == (3, 0)
        assert [at for _, at in sink.calls][:3] == [at for _, at in sink.calls][:1] * 3
        assert up.counters.rejected == 0


async def test_a_hold_ends_in_rejection_after_its_limit_or_the_session_end(tmp_path):
    clock = FakeClock(T0)
    future = ApiError(422, "CAPTURED_IN_FUTURE", "capturedAt is in the future")

    class Refusing:
        """Session a: always ahead of the clock; session b: unknown signer, then ended."""

        def __init__(self) -> None:
            self.b_calls = self.calls = 0

        async def post_telemetry(self, session_id, sample):
            self.calls += 1
            if session_id == "a":
                raise future
            self.b_calls += 1
            if self.b_calls < 3:
                raise ApiError(403, "UNKNOWN_SIGNER", "not registered")
            raise ApiError(409, "INVALID_STATE", "telemetry needs a LIVE session, not ENDED")

    sink = Refusing()
    with Spool(tmp_path / "s.db") as spool:
        spool.append("b", signed("b", T0))
        spool.append("a", signed("a", T0 + timedelta(seconds=1)))
        backoff = Backoff(initial=60.0, maximum=60.0, jitter=0)
        async with Uploader(spool, sink, concurrency=1, backoff=backoff, clock=clock) as up:
            for step in range(1, 14):  # retries a minute apart until the 10-minute limit
                await wait_for(lambda n=step: sink.calls >= n, 5, "a refusal", interval=0.01)
                await asyncio.sleep(0.02)  # the refusal is recorded and the backoff begun
                await clock.advance(60.0)
            await wait_for(lambda: spool.stats().pending == 0, 5, "both rejected", interval=0.01)
        rows = {r.session_id: r for s in ("a", "b") for r in spool.samples(s)}
        assert (rows["b"].state, rows["b"].reason) == (SampleState.REJECTED, "UNKNOWN_SIGNER")
        assert (rows["a"].state, rows["a"].reason) == (SampleState.REJECTED, "CAPTURED_IN_FUTURE")
        assert sink.b_calls == 3
        assert up.counters.held >= 10  # a was held about ten times before its limit
