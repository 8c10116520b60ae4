"""testsrc published to the real stub (with_video=True) after /start: GET /frame shows it."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import httpx

from luxxon_agent.secret import Secret
from luxxon_agent.stub import StubConfig, create_app
from luxxon_agent.stub.ingest import WhipIngest
from luxxon_agent.video import Publisher, open_media_source
from tests.conftest import free_port
from tests.stub.conftest import Harness, data, error
from tests.support import serve, wait_for, wait_frames
from tests.video.conftest import luma_spread


async def test_testsrc_to_stub_after_start_then_frame_endpoint() -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    app = create_app(StubConfig(db_path=":memory:", public_base_url=base, with_video=True))
    video = app.state.stub.video
    assert isinstance(video, WhipIngest)
    # API calls in process, WHIP over real HTTP to the same app
    transport = httpx.ASGITransport(app=app)
    harness = Harness(clock=None, video=video, app=app, transport=transport)  # type: ignore[arg-type]
    async with serve(app, port):
        operator, consumer, started = await harness.live()
        sid = started["session"]["id"]
        error(await operator.get(f"/sessions/{sid}/frame"), 404, "FRAME_NOT_AVAILABLE")
        source = await open_media_source("testsrc://?size=320x240&fps=15")
        publisher = Publisher(Secret(started["whipUrl"]), source)
        await publisher.start()
        responses: list[httpx.Response] = []

        async def frame_served() -> bool:
            responses.append(await consumer.get(f"/sessions/{sid}/frame"))
            return responses[-1].status_code == 200

        try:
            await wait_for(frame_served, 20, "a frame at the stub", interval=0.1)
        finally:
            await publisher.stop()
            await source.close()
        response = responses[-1]
        assert response.headers["content-type"].startswith("image/jpeg")
        assert luma_spread(response.content) > 150
        data(await operator.post(f"/sessions/{sid}/end"))
        # the input is torn down on end: its whipUrl is no longer served
        async with httpx.AsyncClient() as http:
            gone = await http.post(
                started["whipUrl"],
                content=b"v=0\r\nm=video",
                headers={"Content-Type": "application/sdp"},
            )
        assert gone.status_code == 404


async def test_cli_publish_by_session_id_against_the_stub(tmp_path: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    app = create_app(StubConfig(db_path=":memory:", public_base_url=base, with_video=True))
    video = app.state.stub.video
    harness = Harness(
        clock=None,
        video=video,
        app=app,  # type: ignore[arg-type]
        transport=httpx.ASGITransport(app=app),
    )
    async with serve(app, port):
        operator, _, started = await harness.live()
        sid = started["session"]["id"]
        api_key = operator.headers["Authorization"].removeprefix("Bearer ")
        env = os.environ | {
            "LUXXON_API_KEY": api_key,
            "LUXXON_BASE_URL": f"{base}/api/v1",
            "LUXXON_ICE_LOOPBACK": "1",
            "XDG_STATE_HOME": str(tmp_path / "state"),
            "XDG_CONFIG_HOME": str(tmp_path / "config"),
            "XDG_DATA_HOME": str(tmp_path / "data"),
        }
        proc = await asyncio.create_subprocess_exec(
            str(Path(sys.executable).with_name("luxxon-agent")),
            "publish",
            "--session",
            sid,
            "--source",
            "testsrc://?size=320x240&fps=15",
            "--seconds",
            "60",
            env=env,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )

        def running() -> None:
            assert proc.returncode is None, "the publisher exited early"

        try:
            await wait_frames(video, started["videoBackendRef"], 10, 30, alive=running)
            # ending the session closes the input; the publisher sees the session is over
            data(await operator.post(f"/sessions/{sid}/end"))
            code = await asyncio.wait_for(proc.wait(), 30)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        stderr = (await proc.stderr.read()).decode() if proc.stderr else ""
        assert code == 0, stderr[-500:]
        assert started["whipUrl"] not in stderr and api_key not in stderr
