"""WHEP viewers of the ingest: several at once, and none left connected after the stub stops."""

from __future__ import annotations

from typing import Any

from luxxon_agent.secret import Secret
from luxxon_agent.stub import StubConfig, create_app
from luxxon_agent.stub.ingest import WhipIngest
from luxxon_agent.video import Publisher, open_media_source
from tests.conftest import free_port
from tests.support import frame_count, serve, wait_for
from tests.video.conftest import whep_viewer


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
