"""file:// sources: an MP4 decoded and re-encoded, and the same MP4's H.264 passed through."""

from __future__ import annotations

from pathlib import Path

import pytest

from luxxon_agent.stub.ingest import WhipIngest
from luxxon_agent.video import open_media_source
from tests.conftest import require_tool
from tests.support import wait_frames
from tests.video.conftest import publishing


def _make_clip(directory: Path, fps: int) -> Path:
    ffmpeg = require_tool("ffmpeg")
    path = directory / f"clip{fps}.mp4"
    import subprocess

    subprocess.run(
        [
            ffmpeg,
            "-loglevel",
            "error",
            "-f",
            "lavfi",
            "-i",
            f"testsrc2=size=320x240:rate={fps}",
            "-t",
            "1",
            "-c:v",
            "libx264",
            "-profile:v",
            "baseline",
            "-pix_fmt",
            "yuv420p",
            "-g",
            str(fps),
            str(path),
        ],
        check=True,
        timeout=60,
    )
    return path


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _make_clip(tmp_path_factory.mktemp("clip"), 15)


@pytest.mark.parametrize("passthrough", [False, True])
async def test_looping_mp4_reaches_ingest(
    ingest_server: tuple[WhipIngest, str], clip: Path, passthrough: bool
) -> None:
    ingest, _ = ingest_server
    video_input = ingest.create_input("ses_file")
    url = f"file://{clip}?loop=1" + ("&passthrough=1" if passthrough else "")
    source = await open_media_source(url)
    assert source.kind == ("h264" if passthrough else "raw")
    async with publishing(video_input.whip_url, source) as publisher:
        # a 1 s clip at 15 fps: 25 frames means it looped
        await wait_frames(ingest, video_input.ref, 25, 20)
    assert publisher.encoders_opened == (0 if passthrough else 1)


@pytest.mark.parametrize("fps", [10, 30])
@pytest.mark.parametrize("passthrough", [False, True])
async def test_looping_file_keeps_real_time_pacing_across_loops(
    tmp_path: Path, fps: int, passthrough: bool
) -> None:
    import asyncio
    import time

    clip = _make_clip(tmp_path, fps)
    url = f"file://{clip}?loop=1" + ("&passthrough=1" if passthrough else "")
    source = await open_media_source(url)
    track = source.video_track()
    stamps: list[tuple[float, float]] = []
    try:
        began = time.monotonic()
        # a 1 s clip: three and a half passes
        while time.monotonic() - began < 3.5:
            item = await asyncio.wait_for(track.recv(), 5)
            stamps.append((time.monotonic(), float(item.pts * item.time_base)))
    finally:
        track.stop()
        await source.close()
    wall = stamps[-1][0] - stamps[0][0]
    media = stamps[-1][1] - stamps[0][1]
    assert all(b[1] > a[1] for a, b in zip(stamps, stamps[1:], strict=False))
    # real time across the loops: frames at the clip's rate, timestamps keeping up with the clock
    assert abs(len(stamps) / wall - fps) < 0.2 * fps, (len(stamps), wall)
    assert abs(media - wall) < 0.3, (media, wall)
