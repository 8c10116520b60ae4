"""A consumer can tell a live picture from a frozen one: the session's `video` extension
and the age headers of /frame (issue 12, item 7)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import httpx

from luxxon_agent.secret import Secret
from luxxon_agent.stub import StubConfig, create_app
from luxxon_agent.video import Publisher, open_media_source
from tests.conftest import free_port
from tests.stub.conftest import Harness, data
from tests.support import serve, wait_for


async def test_session_video_and_frame_age_tell_a_frozen_picture_from_a_live_one() -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    app = create_app(StubConfig(db_path=":memory:", public_base_url=base, with_video=True))
    harness = Harness(
        clock=None,  # type: ignore[arg-type]
        video=app.state.stub.video,
        app=app,
        transport=httpx.ASGITransport(app=app),
    )
    async with serve(app, port):
        operator, consumer, started = await harness.live()
        sid = started["session"]["id"]
        before = data(await consumer.get(f"/sessions/{sid}"))["video"]
        assert before == {"connected": False, "framesReceived": 0}  # no lastFrameAt yet
        source = await open_media_source("testsrc://?size=160x120&fps=15")
        publisher = Publisher(Secret(started["whipUrl"]), source)
        await publisher.start()
        try:

            async def live() -> bool:
                video = data(await consumer.get(f"/sessions/{sid}"))["video"]
                return bool(video["connected"] and video["framesReceived"] >= 10)

            await wait_for(live, 20, "media at the ingest")
            fresh = await consumer.get(f"/sessions/{sid}/frame")
            assert fresh.status_code == 200
            assert int(fresh.headers["Age"]) <= 1
            assert int(fresh.headers["X-Lx-Frame-Age-Ms"]) < 1000
            modified = parsedate_to_datetime(fresh.headers["Last-Modified"])
            assert abs((datetime.now(UTC) - modified).total_seconds()) < 2
        finally:
            await publisher.stop()
            await source.close()
        stopped = data(await consumer.get(f"/sessions/{sid}"))["video"]
        assert stopped["connected"] is False
        frames_then = stopped["framesReceived"]
        await asyncio.sleep(2.2)
        # the last picture is still served, and says how old it is
        frozen = await consumer.get(f"/sessions/{sid}/frame")
        assert frozen.status_code == 200
        assert int(frozen.headers["Age"]) >= 2
        assert int(frozen.headers["X-Lx-Frame-Age-Ms"]) >= 2000
        later = data(await operator.get(f"/sessions/{sid}"))["video"]
        assert later["framesReceived"] == frames_then and later["connected"] is False
        last = datetime.fromisoformat(later["lastFrameAt"].replace("Z", "+00:00"))
        assert (datetime.now(UTC) - last).total_seconds() >= 2
