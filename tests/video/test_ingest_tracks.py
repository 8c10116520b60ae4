"""The ingest's handling of what a publisher sends: audio is drained, keyframes are counted."""

from __future__ import annotations

import asyncio
from typing import Any

from luxxon_agent.secret import Secret
from luxxon_agent.stub.ingest import InputView, WhipIngest
from luxxon_agent.video import Publisher, VideoOptions, open_media_source
from tests.support import wait_for
from tests.video.conftest import publishing


def _view(ingest: WhipIngest, ref: str) -> InputView:
    view = ingest.input_view(ref)
    assert view is not None
    return view


async def _audio_packets(pc: Any) -> int:
    stats = (await pc.getStats()).values()
    return sum(s.packetsReceived for s in stats if s.type == "inbound-rtp" and s.kind == "audio")


async def test_audio_track_is_drained_and_its_reader_stops_with_the_connection(
    ingest_server: tuple[WhipIngest, str],
) -> None:
    from aiortc import AudioStreamTrack

    ingest, _ = ingest_server
    video_input = ingest.create_input("ses_audio")
    source = await open_media_source("testsrc://?size=320x240&fps=15")
    # as `publish --audio` would: a microphone-like track beside the video (20 ms frames)
    source._make_audio = AudioStreamTrack
    publisher = Publisher(Secret(video_input.whip_url), source)
    await publisher.start()
    try:
        ref = video_input.ref
        await wait_for(lambda: _view(ingest, ref).frames >= 5, 20, "video frames")
        pc = ingest.publisher_connection(ref)
        assert pc is not None
        (audio,) = [r.track for r in pc.getReceivers() if r.track.kind == "audio"]
        start = await _audio_packets(pc)
        queued: list[int] = []
        # two seconds of audio (100 packets): undrained, ~100 decoded frames would be queued
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 20
        while await _audio_packets(pc) < start + 100:
            assert loop.time() < deadline, "no audio reached the ingest in 20 s"
            queued.append(audio._queue.qsize())
            await asyncio.sleep(0.1)
        queued.append(audio._queue.qsize())
        assert max(queued) <= 10, queued
        # the readers belong to the connection: dropping it stops them
        assert _view(ingest, ref).readers == 2
        await ingest.drop_publisher(ref)
        view = _view(ingest, ref)
        assert view.readers == 0 and not view.connected
        assert pc.connectionState == "closed"
    finally:
        await publisher.stop()
        await source.close()


async def test_vp8_publish_counts_keyframes(ingest_server: tuple[WhipIngest, str]) -> None:
    ingest, _ = ingest_server
    video_input = ingest.create_input("ses_vp8_keyframes")
    source = await open_media_source("testsrc://?size=320x240&fps=15")
    async with publishing(video_input.whip_url, source, video=VideoOptions(codec="vp8")):
        ref = video_input.ref
        await wait_for(lambda: _view(ingest, ref).frames >= 15, 20, "VP8 frames")
    stats = await ingest.stats(video_input.ref)
    assert stats is not None
    # libvpx decodes without key_frame flags; the count comes from the encoded frames.
    # aiortc's VP8 encoder makes a keyframe at the start (and on PLI), not every frame
    assert 1 <= stats.keyframes < stats.frames


async def test_h264_keyframes_are_counted_once(ingest_server: tuple[WhipIngest, str]) -> None:
    ingest, _ = ingest_server
    video_input = ingest.create_input("ses_h264_keyframes")
    source = await open_media_source("testsrc://?size=320x240&fps=15")
    options = VideoOptions(keyframe_interval=1.0)
    async with publishing(video_input.whip_url, source, video=options):
        ref = video_input.ref
        await wait_for(lambda: _view(ingest, ref).frames >= 45, 20, "three seconds of H.264 frames")
    stats = await ingest.stats(video_input.ref)
    assert stats is not None
    # one IDR a second at 15 fps (a PLI may add one), each counted once
    assert 2 <= stats.keyframes <= stats.frames // 15 + 2
