"""End to end on loopback: testsrc published over WHIP to the real ingest."""

from __future__ import annotations

import asyncio
import io

from luxxon_agent.secret import Secret
from luxxon_agent.stub.ingest import WhipIngest
from luxxon_agent.video import Publisher, PublisherState, open_media_source, read_burned_clock
from tests.support import wait_for


def _luma_spread(jpeg: bytes) -> int:
    import av

    with av.open(io.BytesIO(jpeg)) as container:
        frame = next(container.decode(video=0)).reformat(format="gray")
    data = bytes(frame.planes[0])
    return max(data) - min(data)


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
    assert _luma_spread(jpeg) > 150
    pstats = publisher.stats()
    assert pstats.state is PublisherState.STOPPED
    assert pstats.frames_sent >= 10 and pstats.bytes_sent > 0
    assert pstats.encoder == "libx264"


async def test_whep_viewer_keeps_playing_across_publisher_reconnect(
    ingest_server: tuple[WhipIngest, str],
) -> None:
    import httpx
    from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

    ingest, _ = ingest_server
    video_input = ingest.create_input("ses_whep")
    source = await open_media_source("testsrc://?size=320x240&fps=15")
    publisher = Publisher(Secret(video_input.whip_url), source)
    viewer = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    received: list[int] = []

    @viewer.on("track")
    def _on_track(track: object) -> None:
        async def pull() -> None:
            from aiortc.mediastreams import MediaStreamError

            while True:
                try:
                    frame = await track.recv()  # type: ignore[attr-defined]
                except MediaStreamError:
                    return
                clock = read_burned_clock(frame)
                if clock is not None:
                    received.append(clock[1])

        asyncio.ensure_future(pull())

    await publisher.start()
    try:
        await wait_for(lambda: ingest.latest_frame_jpeg(video_input.ref) is not None, 20, "frame")
        viewer.addTransceiver("video", direction="recvonly")
        await viewer.setLocalDescription(await viewer.createOffer())
        async with httpx.AsyncClient() as http:
            answer = await http.post(
                video_input.whep_url, content=viewer.localDescription.sdp.encode(),
                headers={"Content-Type": "application/sdp"},
            )
        assert answer.status_code == 201 and answer.headers["Location"]
        await viewer.setRemoteDescription(RTCSessionDescription(answer.text, "answer"))
        await wait_for(lambda: len(received) >= 5, 20, "frames at the viewer")
        await ingest.drop_publisher(video_input.ref)
        seen = len(received)
        await wait_for(lambda: len(received) >= seen + 10, 25, "frames after the reconnect")
    finally:
        await viewer.close()
        await publisher.stop()
        await source.close()
    assert received[-1] > received[0]


async def test_vp8_preference_uses_aiortc_vp8(ingest_server: tuple[WhipIngest, str]) -> None:
    from luxxon_agent.video import VideoOptions

    ingest, _ = ingest_server
    video_input = ingest.create_input("ses_vp8")
    source = await open_media_source("testsrc://?size=320x240&fps=15")
    publisher = Publisher(Secret(video_input.whip_url), source, options=VideoOptions(codec="vp8"))
    await publisher.start()
    try:
        await wait_for(lambda: ingest.latest_frame_jpeg(video_input.ref) is not None, 20, "frame")
        pc = ingest._inputs[video_input.ref].pc
        assert pc is not None
        # the offer carried VP8 only: the codec preference was applied
        offer = pc.remoteDescription.sdp
        assert "VP8/90000" in offer and "H264" not in offer
    finally:
        await publisher.stop()
        await source.close()
    assert publisher.stats().encoder == "aiortc-vp8"
    assert publisher.encoders_opened == 0
