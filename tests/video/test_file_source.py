"""file:// sources: an MP4 decoded and re-encoded, and the same MP4's H.264 passed through."""

from __future__ import annotations

from pathlib import Path

import pytest

from luxxon_agent.stub.ingest import WhipIngest
from luxxon_agent.video import open_media_source
from tests.conftest import require_tool
from tests.support import wait_frames
from tests.video.conftest import publishing


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    ffmpeg = require_tool("ffmpeg")
    path = tmp_path_factory.mktemp("clip") / "clip.mp4"
    import subprocess

    subprocess.run(
        [
            ffmpeg,
            "-loglevel",
            "error",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=320x240:rate=15",
            "-t",
            "1",
            "-c:v",
            "libx264",
            "-profile:v",
            "baseline",
            "-pix_fmt",
            "yuv420p",
            "-g",
            "15",
            str(path),
        ],
        check=True,
        timeout=60,
    )
    return path


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
