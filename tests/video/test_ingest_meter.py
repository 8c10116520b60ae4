"""The wall-clock meter's input: an ingest without frames is disconnected, from its creation on."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from datetime import datetime, timedelta

import av
import httpx
import pytest

from luxxon_agent.clock import FakeClock
from luxxon_agent.stub import StubConfig, create_app
from luxxon_agent.stub.ingest import WhipIngest
from tests.stub.conftest import BASE, START, Harness, data


class FakeTrack:
    """A decoded-video track fed by the test, as aiortc's remote track would be."""

    def __init__(self) -> None:
        self.frames: asyncio.Queue[av.VideoFrame] = asyncio.Queue()

    async def recv(self) -> av.VideoFrame:
        return await self.frames.get()


class FedInput:
    """One ingest input whose consumer reads a FakeTrack: frames arrive on FakeClock time."""

    def __init__(self, ingest: WhipIngest, clock: FakeClock, session_id: str) -> None:
        self.ingest, self.clock = ingest, clock
        self.ref = ingest.create_input(session_id).ref
        self.created = clock.now()
        self.track = FakeTrack()
        ingest.attach_track(self.ref, self.track)  # type: ignore[arg-type]

    async def frame_after(self, seconds: float) -> None:
        await self.clock.advance(seconds)
        await self.track.frames.put(av.VideoFrame(160, 120, "yuv420p"))
        for _ in range(5):
            await asyncio.sleep(0)
        assert self.track.frames.empty()

    def at(self, seconds: float) -> datetime:
        return self.created + timedelta(seconds=seconds)

    async def close(self) -> None:
        await self.ingest.close_input(self.ref)
        view = self.ingest.input_view(self.ref)
        assert view is not None and view.closed and not view.connected


async def test_an_input_that_never_gets_a_frame_is_one_window_from_its_creation() -> None:
    clock = FakeClock(START)
    ingest = WhipIngest(BASE, clock=clock, gap_threshold=2.0)
    ref = ingest.create_input("ses_silent").ref
    await clock.advance(1.5)  # not longer than the threshold yet
    assert ingest.disconnect_windows(ref) == []
    await clock.advance(8.5)
    assert ingest.disconnect_windows(ref) == [(START, START + timedelta(seconds=10))]
    await ingest.close_input(ref)
    await clock.advance(30)  # the window stops at the close
    assert ingest.disconnect_windows(ref) == [(START, START + timedelta(seconds=10))]


async def test_the_wait_for_the_first_frame_is_a_window_and_a_quick_start_is_not() -> None:
    clock = FakeClock(START)
    ingest = WhipIngest(BASE, clock=clock, gap_threshold=2.0)
    late, quick = FedInput(ingest, clock, "ses_late"), FedInput(ingest, clock, "ses_quick")
    await quick.frame_after(1.5)  # frames within the threshold of creation: no window
    for _ in range(9):
        await quick.frame_after(0.5)
    await late.frame_after(0.0)  # 6 s after creation: one window up to the first frame
    for _ in range(3):
        await late.frame_after(0.5)
        await quick.frame_after(0.0)
    assert ingest.disconnect_windows(late.ref) == [(late.at(0), late.at(6))]
    assert ingest.disconnect_windows(quick.ref) == []
    # after the last frame, the open gap runs until the close
    await clock.advance(5)
    await late.close()
    await quick.close()
    assert ingest.disconnect_windows(late.ref) == [
        (late.at(0), late.at(6)),
        (late.at(7.5), late.at(12.5)),
    ]
    assert ingest.disconnect_windows(quick.ref) == [(quick.at(7.5), quick.at(12.5))]


@pytest.fixture
async def harness() -> AsyncIterator[Harness]:
    """The stub in memory with a real WhipIngest on the FakeClock (no media ever arrives)."""
    clock = FakeClock(START)
    config = StubConfig(db_path=":memory:", public_base_url=BASE, clock=clock, rng=random.Random(3))
    video = WhipIngest(BASE, clock=clock)
    app = create_app(config, video=video)
    yield Harness(
        clock=clock,
        video=video,
        app=app,  # type: ignore[arg-type]
        transport=httpx.ASGITransport(app=app),
    )
    await video.aclose()
    app.state.stub.store.close()


async def test_a_live_session_that_never_received_a_frame_meters_zero_clean_seconds(
    harness: Harness,
) -> None:
    _, operator = await harness.supplier()
    _, consumer = await harness.consumer()
    sid = (await harness.requested(consumer))["id"]
    data(await operator.post(f"/sessions/{sid}/accept"))
    await harness.clock.advance(3)
    data(await operator.post(f"/sessions/{sid}/start"))
    await harness.clock.advance(45.3)
    ended = data(await consumer.post(f"/sessions/{sid}/end"))
    assert (ended["cleanSeconds"], ended["failedSeconds"]) == (0, 45)
    assert ended["chargedMicroUsdc"] == "0"
