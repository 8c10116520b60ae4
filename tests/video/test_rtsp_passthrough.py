"""RTSP camera → publisher → ingest with H.264 passthrough: no encoder on the publisher side."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import av
import pytest

from luxxon_agent.stub.ingest import WhipIngest
from luxxon_agent.video import open_media_source
from tests.conftest import REQUIRE_SYSTEM_TOOLS, free_port, require_tool
from tests.support import wait_frames
from tests.video.conftest import publishing

CAMERA = Path(__file__).with_name("rtsp_camera.py")


def _camera_did_not_start(stderr: str, required: bool) -> None:
    message = f"the GStreamer RTSP server did not start: {stderr.strip()[-300:]}"
    # CI installs gir1.2-gst-rtsp-server-1.0: a server that cannot start there is a failure
    if required:
        pytest.fail(message)
    pytest.skip(message)


def test_camera_that_cannot_start_fails_when_system_tools_are_required() -> None:
    with pytest.raises(pytest.fail.Exception, match="did not start: no GstRtspServer"):
        _camera_did_not_start("no GstRtspServer\n", required=True)
    with pytest.raises(pytest.skip.Exception):
        _camera_did_not_start("no GstRtspServer\n", required=False)


async def _camera(profile: str) -> AsyncIterator[str]:
    python = require_tool("/usr/bin/python3")
    require_tool("gst-launch-1.0")
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        python,
        str(CAMERA),
        str(port),
        profile,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 15)
        if line.strip() != b"ready":
            err = (await proc.stderr.read()).decode() if proc.stderr else ""
            _camera_did_not_start(err, REQUIRE_SYSTEM_TOOLS)
        yield f"rtsp://127.0.0.1:{port}/cam"
    finally:
        proc.kill()
        await proc.wait()


@pytest.fixture
async def baseline_camera() -> AsyncIterator[str]:
    async for url in _camera("constrained-baseline"):
        yield url


@pytest.fixture
async def high_camera() -> AsyncIterator[str]:
    async for url in _camera("high"):
        yield url


class _EncoderSpy:
    """Stands in for `av.CodecContext` and records every codec opened for writing."""

    def __init__(self, real: Any) -> None:
        self._real = real
        self.writers: list[str] = []

    def create(self, name: str, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        if mode == "w" and name != "mjpeg":
            self.writers.append(name)
        return self._real.create(name, mode, *args, **kwargs)


async def test_rtsp_h264_passthrough_reaches_ingest_without_encoding(
    ingest_server: tuple[WhipIngest, str], baseline_camera: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    ingest, _ = ingest_server
    spy = _EncoderSpy(av.CodecContext)
    # aiortc's and our encoders look av.CodecContext up at call time
    monkeypatch.setattr(av, "CodecContext", spy)
    video_input = ingest.create_input("ses_rtsp")
    source = await open_media_source(baseline_camera)
    assert source.kind == "h264" and source.profile is not None
    assert source.profile.constrained_baseline
    async with publishing(video_input.whip_url, source) as publisher:
        await wait_frames(ingest, video_input.ref, 20, 30)
    stats = await ingest.stats(video_input.ref)
    assert stats is not None and (stats.width, stats.height) == (640, 360)
    assert stats.keyframes >= 1
    assert publisher.stats().encoder == "passthrough"
    assert publisher.encoders_opened == 0
    assert spy.writers == []


async def test_rtsp_high_profile_is_transcoded_and_says_why(
    ingest_server: tuple[WhipIngest, str], high_camera: str, caplog: pytest.LogCaptureFixture
) -> None:
    ingest, _ = ingest_server
    video_input = ingest.create_input("ses_rtsp_high")
    source = await open_media_source(high_camera)
    assert source.kind == "raw"
    assert source.transcode_reason is not None and "Constrained" in source.transcode_reason
    assert sum("transcoding instead of passthrough" in r.message for r in caplog.records) == 1
    async with publishing(video_input.whip_url, source) as publisher:
        await wait_frames(ingest, video_input.ref, 10, 30)
    assert publisher.encoders_opened == 1
