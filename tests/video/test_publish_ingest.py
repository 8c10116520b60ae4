"""End to end on loopback: testsrc published over WHIP to the real ingest."""

from __future__ import annotations

from typing import Any

from luxxon_agent.secret import Secret
from luxxon_agent.stub.ingest import WhipIngest
from luxxon_agent.video import Publisher, PublisherState, open_media_source, read_burned_clock
from tests.support import wait_for
from tests.video.conftest import luma_spread, whep_viewer


async def test_testsrc_reaches_ingest_and_frame_shows_pattern(
    ingest_server: tuple[WhipIngest, str],
) -> None:
    ingest, _ = ingest_server
    video_input = ingest.create_input("ses_1")
    assert ingest.latest_frame_jpeg(video_input.ref) is None
    source = await open_media_source("testsrc://?size=320x240&fps=15")
    clocks = []
    ingest.add_frame_listener(video_input.ref, lambda f, at: clocks.append(read_burned_clock(f)))
    publisher = Publisher(Secret(video_input.whip_url), source)
    await publisher.start()
    try:
        await wait_for(lambda: len(clocks) >= 10, 20, "10 decoded frames")
        await wait_for(lambda: publisher.state is PublisherState.PUBLISHING, 5, "publishing")
        # aiortc's receiver sends REMB: the stats carry the receiver's own estimate
        await wait_for(lambda: publisher.stats().remb_bps is not None, 5, "a REMB in the stats")
    finally:
        await publisher.stop()
        await source.close()
    stats = await ingest.stats(video_input.ref)
    assert stats is not None and stats.frames >= 10 and stats.keyframes >= 1
    assert (stats.width, stats.height) == (320, 240)
    # the burned-in counter reads back and increases
    counters = [c[1] for c in clocks if c is not None]
    assert len(counters) >= 8 and counters == sorted(counters)
    jpeg = ingest.latest_frame_jpeg(video_input.ref)
    assert jpeg is not None and jpeg[:2] == b"\xff\xd8"
    assert luma_spread(jpeg) > 150
    pstats = publisher.stats()
    assert pstats.state is PublisherState.STOPPED
    assert pstats.frames_sent >= 10 and pstats.bytes_sent > 0
    assert pstats.encoder == "libx264"


async def test_whep_viewer_keeps_playing_across_publisher_reconnect(
    ingest_server: tuple[WhipIngest, str],
) -> None:
    ingest, _ = ingest_server
    video_input = ingest.create_input("ses_whep")
    source = await open_media_source("testsrc://?size=320x240&fps=15")
    publisher = Publisher(Secret(video_input.whip_url), source)
    viewer = None
    received: list[int] = []

    def on_frame(frame: Any) -> None:
        clock = read_burned_clock(frame)
        if clock is not None:
            received.append(clock[1])

    await publisher.start()
    try:
        await wait_for(lambda: ingest.latest_frame_jpeg(video_input.ref) is not None, 20, "frame")
        viewer = await whep_viewer(video_input.whep_url, on_frame)
        await wait_for(lambda: len(received) >= 5, 20, "frames at the viewer")
        await ingest.drop_publisher(video_input.ref)
        seen = len(received)
        await wait_for(lambda: len(received) >= seen + 10, 25, "frames after the reconnect")
    finally:
        if viewer is not None:
            await viewer.close()
        await publisher.stop()
        await source.close()
    assert received[-1] > received[0]


async def test_vp8_preference_uses_aiortc_vp8(ingest_server: tuple[WhipIngest, str]) -> None:
    from luxxon_agent.video import PublisherOptions, VideoOptions

    ingest, _ = ingest_server
    video_input = ingest.create_input("ses_vp8")
    source = await open_media_source("testsrc://?size=320x240&fps=15")
    publisher = Publisher(
        Secret(video_input.whip_url), source, PublisherOptions(video=VideoOptions(codec="vp8"))
    )
    await publisher.start()
    try:
        await wait_for(lambda: ingest.latest_frame_jpeg(video_input.ref) is not None, 20, "frame")
        pc = ingest.publisher_connection(video_input.ref)
        assert pc is not None
        # the offer carried VP8 only: the codec preference was applied
        offer = pc.remoteDescription.sdp
        assert "VP8/90000" in offer and "H264" not in offer
        view = ingest.input_view(video_input.ref)
        assert view is not None and view.offer_video_codecs == ("VP8",)
    finally:
        await publisher.stop()
        await source.close()
    assert publisher.stats().encoder == "aiortc-vp8"
    assert publisher.encoders_opened == 0
