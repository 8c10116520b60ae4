"""Transport-wide congestion control end to end on loopback: the publisher offers it,
the stub's ingest answers and sends feedback, the estimator runs on it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from fastapi import FastAPI

from luxxon_agent.stub.ingest import WhipIngest
from luxxon_agent.video import open_media_source, pin_ice_to_loopback, read_burned_clock
from tests.conftest import free_port
from tests.support import serve, wait_for
from tests.video.conftest import publishing


@pytest.fixture
async def twcc_ingest() -> AsyncIterator[WhipIngest]:
    pin_ice_to_loopback()
    port = free_port()
    ingest = WhipIngest(f"http://127.0.0.1:{port}", transport_cc=True)
    app = FastAPI()
    app.include_router(ingest.router)
    async with serve(app, port):
        try:
            yield ingest
        finally:
            await ingest.aclose()


async def test_feedback_drives_the_estimate_and_the_picture_still_decodes(
    twcc_ingest: WhipIngest,
) -> None:
    video_input = twcc_ingest.create_input("ses_twcc")
    clocks: list[int] = []

    def on_frame(frame: object, at: object) -> None:
        burned = read_burned_clock(frame)  # type: ignore[arg-type]
        if burned is not None:
            clocks.append(burned[1])

    twcc_ingest.add_frame_listener(video_input.ref, on_frame)
    source = await open_media_source("testsrc://?size=320x240&fps=15")
    async with publishing(video_input.whip_url, source) as publisher:
        await wait_for(lambda: publisher.stats().transport_cc, 20, "transport-cc in use")
        connection = publisher._connection
        assert connection is not None
        tap = connection.tap
        await wait_for(lambda: tap.transport_feedbacks >= 20, 10, "20 feedback messages")
        link = publisher.link_snapshot()
        assert link is not None and link.transport_cc
        # the rate that arrived, from feedback, is what was sent: loopback loses nothing
        assert link.receive_bps is not None and link.sent_bps > 0
        assert 0.5 < link.receive_bps / link.sent_bps < 1.5, (link.receive_bps, link.sent_bps)
        # one-way delays on loopback: no queue
        assert link.queuing_delay_ms is not None and link.queuing_delay_ms < 30
        assert tap.transport_feedback_errors == 0
        await wait_for(lambda: len(clocks) >= 15, 10, "15 decoded frames")
    # every packet carried the extension and still decoded, in order
    assert clocks == sorted(clocks)


async def test_without_the_ingest_answering_it_receiver_reports_drive_the_estimate(
    ingest_server: tuple[WhipIngest, str],
) -> None:
    ingest, _ = ingest_server
    video_input = ingest.create_input("ses_rr")
    source = await open_media_source("testsrc://?size=320x240&fps=15")
    async with publishing(video_input.whip_url, source) as publisher:
        await wait_for(lambda: publisher.stats().receive_bps is not None, 20, "a receive rate")
        connection = publisher._connection
        assert connection is not None
        assert not connection.tap.transport_cc
        assert connection.tap.transport_feedbacks == 0
        assert not publisher.stats().transport_cc
