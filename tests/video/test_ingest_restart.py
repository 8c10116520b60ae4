"""A stub restarted on the same database serves its open inputs again, and meters its down time.

The whipUrls of ASSIGNED/LIVE/PAUSED sessions are in SQLite; the ingest keeps
its windows and each input's last-media time there too. After a restart the
same whipUrl takes the publisher back, and the time the stub was down is a
disconnect window for the wall-clock meter.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import av
import httpx

from luxxon_agent.backoff import Backoff
from luxxon_agent.clock import FakeClock
from luxxon_agent.secret import Secret
from luxxon_agent.stub import StubConfig, create_app
from luxxon_agent.stub.ingest import WhipIngest
from luxxon_agent.video import (
    Publisher,
    PublisherOptions,
    PublisherState,
    open_media_source,
    pin_ice_to_loopback,
)
from tests.conftest import free_port
from tests.stub.conftest import API, BASE, START, Harness, data
from tests.support import serve, wait_for

GAP = 2.0
"""WhipIngest's default gap threshold, which the stub uses."""


class FakeTrack:
    def __init__(self) -> None:
        self.frames: asyncio.Queue[av.VideoFrame | None] = asyncio.Queue()

    async def recv(self) -> av.VideoFrame:
        from aiortc.mediastreams import MediaStreamError

        frame = await self.frames.get()
        if frame is None:
            raise MediaStreamError
        return frame

    async def end(self) -> None:
        """The track ends, as when the process holding the connection dies."""
        await self.frames.put(None)
        for _ in range(5):
            await asyncio.sleep(0)


def feed(ingest: WhipIngest, ref: str) -> FakeTrack:
    """Decoded frames for input `ref`, delivered by the test, as a publisher's track would."""
    track = FakeTrack()
    ingest.attach_track(ref, track)  # type: ignore[arg-type]
    return track


async def frames(clock: FakeClock, track: FakeTrack, count: int, every: float) -> None:
    for _ in range(count):
        await clock.advance(every)
        await track.frames.put(av.VideoFrame(160, 120, "yuv420p"))
        for _ in range(5):
            await asyncio.sleep(0)
        assert track.frames.empty()


def rebind(client: httpx.AsyncClient, transport: httpx.AsyncBaseTransport) -> httpx.AsyncClient:
    """The same API key, talking to another app (the restarted stub)."""
    return httpx.AsyncClient(transport=transport, base_url=API, headers=client.headers)


def fake_clock_stub(db: Path, clock: FakeClock) -> tuple[Any, WhipIngest, httpx.ASGITransport]:
    config = StubConfig(db_path=db, public_base_url=BASE, clock=clock, rng=random.Random(5))
    ingest = WhipIngest(BASE, clock=clock, gap_threshold=GAP)
    app = create_app(config, video=ingest)
    return app, ingest, httpx.ASGITransport(app=app)


async def test_restart_restores_the_input_and_counts_the_down_time(tmp_path: Path) -> None:
    clock = FakeClock(START)
    db = tmp_path / "stub.sqlite3"
    app, ingest, transport = fake_clock_stub(db, clock)
    harness = Harness(
        clock=clock,
        video=ingest,
        app=app,  # type: ignore[arg-type]
        transport=transport,
    )
    operator, consumer, started = await harness.live()
    sid = started["session"]["id"]
    ref = started["videoBackendRef"]
    track = feed(ingest, ref)
    await frames(clock, track, 1, 0.5)  # first frame 0.5 s after the input was made: no window
    await frames(clock, track, 20, 0.25)  # 5 s of media
    await clock.advance(3)  # then 3 s without media: a window still open at the shutdown
    await app.state.stub.stop()
    app.state.stub.store.close()

    await clock.advance(12)  # the stub is down for 12 s
    app2, ingest2, transport2 = fake_clock_stub(db, clock)
    operator2, consumer2 = rebind(operator, transport2), rebind(consumer, transport2)
    # the whipUrl is served again: a bad offer is refused as bad (400), not unknown (404)
    async with httpx.AsyncClient(transport=transport2) as http:
        answer = await http.post(
            started["whipUrl"],
            content=b"v=0\r\nm=video",
            headers={"Content-Type": "application/sdp"},
        )
    assert answer.status_code == 400, answer.text
    assert (
        data(await operator2.get(f"/sessions/{sid}/producer-token"))["whipUrl"]
        == (started["whipUrl"])
    )
    track2 = feed(ingest2, ref)
    await frames(clock, track2, 1, 1.0)  # media again 1 s after the restart
    await frames(clock, track2, 12, 0.25)  # and 3 s more
    ended = data(await consumer2.post(f"/sessions/{sid}/end"))
    # LIVE 0.5 + 5 + 3 + 12 + 1 + 3 = 24.5 s; down from the last frame to the first again: 16 s
    assert (ended["cleanSeconds"], ended["failedSeconds"]) == (8, 16)
    await app2.state.stub.stop()
    app2.state.stub.store.close()


async def test_a_crash_loses_at_most_a_second_of_the_last_media_time(tmp_path: Path) -> None:
    clock = FakeClock(START)
    db = tmp_path / "stub.sqlite3"
    app, ingest, transport = fake_clock_stub(db, clock)
    harness = Harness(
        clock=clock,
        video=ingest,
        app=app,  # type: ignore[arg-type]
        transport=transport,
    )
    _, consumer, started = await harness.live()
    sid, ref = started["session"]["id"], started["videoBackendRef"]
    track = feed(ingest, ref)
    await frames(clock, track, 1, 0.1)
    await frames(clock, track, 10, 0.3)  # the last frame at 3.1 s
    await track.end()  # no shutdown at all: the process died (its connection is left open)
    await clock.advance(10)

    app2, ingest2, transport2 = fake_clock_stub(db, clock)
    track2 = feed(ingest2, ref)
    await frames(clock, track2, 1, 0.0)  # media again at 13.1 s
    await frames(clock, track2, 10, 0.3)
    ended = data(await rebind(consumer, transport2).post(f"/sessions/{sid}/end"))
    # 16.1 s LIVE, 10 s without media; the stored last-media time is at most 1 s stale
    assert ended["failedSeconds"] in (10, 11)
    assert ended["cleanSeconds"] == 16 - ended["failedSeconds"]
    await app2.state.stub.stop()
    app2.state.stub.store.close()
    app.state.stub.store.close()


@asynccontextmanager
async def real_stub(db: Path, port: int) -> AsyncIterator[Any]:
    """The stub with its real ingest on 127.0.0.1:`port`, stopped as its lifespan stops it."""
    app = create_app(
        StubConfig(db_path=db, public_base_url=f"http://127.0.0.1:{port}", with_video=True)
    )
    try:
        async with serve(app, port):
            yield app
    finally:
        await app.state.stub.stop()
        app.state.stub.store.close()


async def test_publisher_comes_back_to_a_restarted_stub_and_the_outage_is_not_billed(
    tmp_path: Path,
) -> None:
    pin_ice_to_loopback()
    port = free_port()
    db = tmp_path / "stub.sqlite3"
    arrivals: list[datetime] = []

    def on_frame(frame: object, received_at: datetime) -> None:
        arrivals.append(received_at)

    source = await open_media_source("testsrc://?size=320x240&fps=15")
    publisher: Publisher | None = None
    try:
        async with real_stub(db, port) as app:
            ingest = app.state.stub.video
            assert isinstance(ingest, WhipIngest)
            harness = Harness(
                clock=None,
                video=ingest,
                app=app,  # type: ignore[arg-type]
                transport=httpx.ASGITransport(app=app),
            )
            _, consumer, started = await harness.live()
            sid = started["session"]["id"]
            ref = started["videoBackendRef"]
            ingest.add_frame_listener(ref, on_frame)
            # media starts more than the gap after the input was made: surely a window
            await asyncio.sleep(GAP + 0.3)
            publisher = Publisher(
                Secret(started["whipUrl"]),
                source,
                PublisherOptions(backoff=Backoff(initial=0.2, maximum=0.5), stale_after=2.0),
            )
            await publisher.start()
            await wait_for(lambda: len(arrivals) >= 30, 20, "frames before the restart")
        view = ingest.input_view(ref)  # the stub stopped: server, ingest, store
        assert view is not None and not view.connected and view.closed
        outage_began = len(arrivals)
        await asyncio.sleep(3.0)  # the outage

        async with real_stub(db, port) as app2:
            ingest2 = app2.state.stub.video
            assert isinstance(ingest2, WhipIngest)
            ingest2.add_frame_listener(ref, on_frame)
            running = publisher

            def back() -> bool:
                stats = running.stats()
                assert stats.state != PublisherState.FAILED, stats.last_error
                return len(arrivals) >= outage_began + 30

            await wait_for(back, 20, "frames on the same whipUrl after the restart")
            assert publisher.stats().reconnects >= 1
            stats = await ingest2.stats(ref)
            assert stats is not None and stats.publishers == 1
            consumer2 = rebind(consumer, httpx.ASGITransport(app=app2))
            ended = data(await consumer2.post(f"/sessions/{sid}/end"))
    finally:
        if publisher is not None:
            await publisher.stop()
        await source.close()

    # the oracle: every stretch without a frame longer than the gap, from startedAt to endedAt
    started_at = datetime.fromisoformat(started["session"]["startedAt"])
    ended_at = datetime.fromisoformat(ended["endedAt"])
    edges = [started_at, *arrivals, ended_at]
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(edges)]
    outage = (arrivals[outage_began] - arrivals[outage_began - 1]).total_seconds()
    assert outage > 3.0
    # the wait for the first frame, clipped at startedAt, and every later gap over the threshold
    lost = gaps[0] + sum(gap for gap in gaps[1:] if gap > GAP)
    total = math.floor((ended_at - started_at).total_seconds())
    expected = total - math.ceil(lost)
    assert abs(ended["cleanSeconds"] - expected) <= 1, (ended, total, lost, outage)
    assert ended["cleanSeconds"] + ended["failedSeconds"] == total
    assert ended["failedSeconds"] >= math.floor(outage)
