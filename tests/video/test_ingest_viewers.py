"""WHEP viewers of the ingest: several at once, at most `max_viewers` of them, a viewer whose
connection closes or fails forgotten at once, and none left connected after the stub stops."""

from __future__ import annotations

import re
from typing import Any

import httpx

from luxxon_agent.secret import Secret
from luxxon_agent.stub import StubConfig, create_app
from luxxon_agent.stub.ingest import WhipIngest
from luxxon_agent.video import Publisher, open_media_source
from tests.conftest import free_port
from tests.support import frame_count, serve, wait_for
from tests.video.conftest import whep_viewer
from tests.video.test_ingest_offers import SDP, aiortc_offer, view_of


async def _viewer(whep_url: str, pts: list[int]) -> Any:
    """A WHEP viewer that appends each received frame's pts to `pts`; returns its connection."""
    return await whep_viewer(whep_url, lambda frame: pts.append(frame.pts))


async def test_two_whep_viewers_each_get_increasing_timestamps(
    ingest_server: tuple[WhipIngest, str],
) -> None:
    ingest, _ = ingest_server
    video_input = ingest.create_input("ses_two_viewers")
    source = await open_media_source("testsrc://?size=320x240&fps=15")
    publisher = Publisher(Secret(video_input.whip_url), source)
    first: list[int] = []
    second: list[int] = []
    viewers: list[Any] = []
    await publisher.start()
    try:
        await wait_for(lambda: ingest.latest_frame_jpeg(video_input.ref) is not None, 20, "frame")
        viewers.append(await _viewer(video_input.whep_url, first))
        await wait_for(lambda: len(first) >= 10, 20, "frames at the first viewer")
        # the second joins later: a timeline of its own would start far behind the first's
        viewers.append(await _viewer(video_input.whep_url, second))
        await wait_for(lambda: len(second) >= 30 and len(first) >= 50, 30, "frames at both")
    finally:
        for pc in viewers:
            await pc.close()
        await publisher.stop()
        await source.close()
    for pts in (first, second):
        steps = [b - a for a, b in zip(pts, pts[1:], strict=False)]
        # increasing, and by frame intervals (15 fps is 6000 at 90 kHz), not by jumps
        # from another viewer's timeline (or aiortc mistaking a step back for a wrap)
        assert min(steps) > 0 and max(steps) < 90000, steps


async def test_a_viewer_beyond_the_cap_gets_503_until_a_viewer_closes_its_connection(
    ingest_server: tuple[WhipIngest, str],
) -> None:
    ingest, _ = ingest_server
    ingest.max_viewers = 2
    video_input = ingest.create_input("ses_viewer_cap")
    ref = video_input.ref
    viewers = [await _viewer(video_input.whep_url, []) for _ in range(2)]
    try:
        await wait_for(
            lambda: all(pc.connectionState == "connected" for pc in viewers), 20, "viewers up"
        )
        async with httpx.AsyncClient(timeout=10) as http:
            full = await http.post(
                video_input.whep_url,
                content=(await aiortc_offer("video", direction="recvonly")).encode(),
                headers=SDP,
            )
        assert full.status_code == 503, (full.status_code, full.text)
        assert full.headers["Retry-After"].isdigit()
        assert "2 viewers" in full.text and "\n" not in full.text
        assert view_of(ingest, ref).viewers == 2
        # a reloaded page closes its connection without a DELETE: the slot is free again
        await viewers.pop().close()
        await wait_for(lambda: view_of(ingest, ref).viewers == 1, 15, "the closed viewer dropped")
        viewers.append(await _viewer(video_input.whep_url, []))
        assert view_of(ingest, ref).viewers == 2
    finally:
        for pc in viewers:
            await pc.close()


async def test_a_viewer_gone_before_it_connects_is_dropped_after_the_connect_timeout(
    ingest_server: tuple[WhipIngest, str],
) -> None:
    ingest, _ = ingest_server
    ingest.viewer_connect_timeout = 2.0
    video_input = ingest.create_input("ses_viewer_gone")
    # a real viewer's offer, its connection closed at once (a page reloaded mid-negotiation):
    # the ingest's connectivity checks go unanswered
    offer = await aiortc_offer("video", direction="recvonly")
    async with httpx.AsyncClient(timeout=10) as http:
        answer = await http.post(video_input.whep_url, content=offer.encode(), headers=SDP)
        assert answer.status_code == 201, answer.text
        (held,) = ingest.viewer_connections(video_input.ref)
        await wait_for(
            lambda: view_of(ingest, video_input.ref).viewers == 0, 15, "the gone viewer dropped"
        )
        assert held.connectionState == "closed"
        resource = httpx.URL(video_input.whep_url).join(answer.headers["Location"])
        assert (await http.delete(resource)).status_code == 404


async def test_a_viewer_whose_connection_fails_is_dropped_and_closed(
    ingest_server: tuple[WhipIngest, str],
) -> None:
    from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

    ingest, _ = ingest_server
    video_input = ingest.create_input("ses_viewer_failed")
    viewer = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        viewer.addTransceiver("video", direction="recvonly")
        await viewer.setLocalDescription(await viewer.createOffer())
        # ICE connects, then DTLS fails: the certificate is not the one the offer names
        offer, swaps = re.subn(
            r"(a=fingerprint:sha-256 )\S+",
            r"\1" + ":".join(["AB"] * 32),
            viewer.localDescription.sdp,
        )
        assert swaps
        async with httpx.AsyncClient(timeout=10) as http:
            answer = await http.post(video_input.whep_url, content=offer.encode(), headers=SDP)
        assert answer.status_code == 201, answer.text
        (held,) = ingest.viewer_connections(video_input.ref)
        await viewer.setRemoteDescription(RTCSessionDescription(answer.text, "answer"))
        await wait_for(
            lambda: view_of(ingest, video_input.ref).viewers == 0, 15, "the failed viewer dropped"
        )
        await wait_for(lambda: held.connectionState == "closed", 5, "its connection closed")
    finally:
        await viewer.close()


async def test_stopping_the_stub_closes_publisher_and_viewer_connections() -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    app = create_app(StubConfig(db_path=":memory:", public_base_url=base, with_video=True))
    ingest = app.state.stub.video
    assert isinstance(ingest, WhipIngest)
    async with serve(app, port):
        await _publish_view_then_stop(app, ingest)


async def _publish_view_then_stop(app: Any, ingest: WhipIngest) -> None:
    video_input = ingest.create_input("ses_shutdown")
    source = await open_media_source("testsrc://?size=320x240&fps=15")
    publisher = Publisher(Secret(video_input.whip_url), source)
    frames: list[int] = []
    viewer = None
    await publisher.start()
    try:
        ref = video_input.ref

        async def five_frames() -> bool:
            return await frame_count(ingest, ref) >= 5

        await wait_for(five_frames, 20, "frames at the ingest")
        viewer = await _viewer(video_input.whep_url, frames)
        await wait_for(lambda: len(frames) >= 3, 20, "frames at the viewer")
        held = [ingest.publisher_connection(ref), *ingest.viewer_connections(ref)]
        assert len(held) == 2
        await app.state.stub.stop()
        view = ingest.input_view(ref)
        assert view is not None
        assert not view.connected and view.viewers == 0 and view.readers == 0
        assert all(pc is not None and pc.connectionState == "closed" for pc in held)
    finally:
        if viewer is not None:
            await viewer.close()
        await publisher.stop()
        await source.close()
