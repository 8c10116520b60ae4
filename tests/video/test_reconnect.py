"""The publisher comes back by itself: SIGKILL + restart, a dropped connection, 403, 404."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import pytest
from fastapi import FastAPI, Request, Response

from luxxon_agent.backoff import Backoff
from luxxon_agent.errors import WhipError
from luxxon_agent.secret import Secret
from luxxon_agent.stub.ingest import WhipIngest
from luxxon_agent.video import (
    MediaSource,
    Publisher,
    PublisherOptions,
    PublisherState,
    open_media_source,
    pin_ice_to_loopback,
)
from tests.conftest import free_port
from tests.support import frame_count, serve, wait_for, wait_frames
from tests.video.conftest import publishing

SMALL = "testsrc://?size=320x240&fps=15"
FAST = Backoff(initial=0.1, maximum=0.5, jitter=0.5)
CLI = str(Path(sys.executable).with_name("luxxon-agent"))


async def _spawn(whip_url: str, state_home: Path) -> asyncio.subprocess.Process:
    env = os.environ | {
        "LUXXON_WHIP_URL": whip_url,
        "LUXXON_ICE_LOOPBACK": "1",
        "XDG_STATE_HOME": str(state_home),
    }
    # the whipUrl travels in the environment only, never in argv
    return await asyncio.create_subprocess_exec(
        CLI,
        "publish",
        "--source",
        SMALL,
        "--seconds",
        "60",
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )


async def test_sigkilled_publisher_restarted_with_only_the_whip_url(
    ingest_server: tuple[WhipIngest, str], tmp_path: Path
) -> None:
    ingest, _ = ingest_server
    video_input = ingest.create_input("ses_kill")
    first = await _spawn(video_input.whip_url, tmp_path)
    second = None
    try:
        await wait_frames(ingest, video_input.ref, 10, 30)
        first.send_signal(signal.SIGKILL)
        await asyncio.wait_for(first.wait(), 10)
        # the state file kept the dead process's resource for its successor
        state_file = next((tmp_path / "luxxon-agent").glob("whip-*.json"))
        saved = json.loads(state_file.read_text())
        assert saved["location"].startswith(video_input.whip_url + "/")
        assert state_file.stat().st_mode & 0o777 == 0o600
        before = await frame_count(ingest, video_input.ref)
        second = await _spawn(video_input.whip_url, tmp_path)
        await wait_frames(ingest, video_input.ref, before + 15, 30)
        stats = await ingest.stats(video_input.ref)
        assert stats is not None and stats.publishers == 2
        second.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(second.wait(), 15) == 0
        # the orderly stop DELETEd its resource and cleared the state file
        saved = json.loads(next((tmp_path / "luxxon-agent").glob("whip-*.json")).read_text())
        assert saved["location"] is None
        stderr = (await second.stderr.read()).decode() if second.stderr else ""
        assert video_input.whip_url not in stderr
    finally:
        for proc in (first, second):
            if proc is not None and proc.returncode is None:
                proc.kill()
                await proc.wait()


async def test_dropped_connection_is_reposted_by_the_publisher(
    ingest_server: tuple[WhipIngest, str],
) -> None:
    ingest, _ = ingest_server
    video_input = ingest.create_input("ses_drop")
    source = await open_media_source(SMALL)
    async with publishing(video_input.whip_url, source, backoff=FAST, stale_after=3.0) as publisher:
        await wait_frames(ingest, video_input.ref, 10, 20)
        await ingest.drop_publisher(video_input.ref)
        before = await frame_count(ingest, video_input.ref)
        await wait_frames(ingest, video_input.ref, before + 15, 20)
        await wait_for(lambda: publisher.stats().reconnects >= 1, 5, "a reconnect")
        stats = await ingest.stats(video_input.ref)
        assert stats is not None and stats.publishers == 2


class StrictFront:
    """A WHIP front like real servers: 403 while a resource is held, until it is DELETEd.

    It forwards accepted offers to the real ingest. `gone` makes POST answer 404.
    The first DELETE answers 503, as a flaky network would.
    """

    def __init__(self, ingest: WhipIngest, ref: str) -> None:
        self.ingest = ingest
        self.ref = ref
        self.held: str | None = "r-old"
        self.log: list[str] = []
        self.delete_failures = 1
        self.router_app = FastAPI()

        @self.router_app.post("/strict/{kind}")
        async def post(kind: str, request: Request) -> Response:
            if kind == "gone":
                self.log.append("POST 404")
                return Response(status_code=404, content="no such live input")
            if kind == "taken":
                # another publisher holds this endpoint for good: DELETE cannot free it
                self.log.append("POST 409")
                return Response(status_code=409, content="endpoint in use\nby another publisher")
            if kind == "bad":
                self.log.append("POST 400")
                return Response(status_code=400, content="malformed offer, says the server")
            if self.held is not None:
                self.log.append("POST 403")
                return Response(status_code=403, content="endpoint in use")
            answer, resource = await self.ingest.publish(self.ref, (await request.body()).decode())
            self.held = resource
            self.log.append("POST 201")
            return Response(
                status_code=201,
                content=answer,
                media_type="application/sdp",
                headers={"Location": f"/strict/ok/{resource}"},
            )

        @self.router_app.delete("/strict/ok/{resource}")
        async def delete(resource: str) -> Response:
            if self.delete_failures:
                self.delete_failures -= 1
                self.log.append("DELETE 503")
                return Response(status_code=503)
            if resource != self.held:
                self.log.append("DELETE 404")
                return Response(status_code=404)
            self.held = None
            self.log.append("DELETE 200")
            return Response(status_code=200)


async def test_403_until_delete_then_404_refetch_then_400_is_fatal(
    ingest_server: tuple[WhipIngest, str], tmp_path: Path
) -> None:
    ingest, _ = ingest_server
    pin_ice_to_loopback()
    video_input = ingest.create_input("ses_strict")
    front = StrictFront(ingest, video_input.ref)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    ok_url = Secret(f"{base}/strict/ok")
    # a previous run died holding r-old, and left its Location in the state file
    state = tmp_path / "whip.json"
    import hashlib

    state.write_text(
        json.dumps(
            {
                "whip_url_sha256": hashlib.sha256(ok_url.reveal().encode()).hexdigest(),
                "location": f"{base}/strict/ok/r-old",
            }
        )
    )
    refetched: list[int] = []

    async def refetch() -> Secret | None:
        refetched.append(1)
        return ok_url

    source = await open_media_source(SMALL)
    async with serve(front.router_app, port):
        # 404 first: the publisher asks for the current URL and uses it
        publisher = Publisher(
            Secret(f"{base}/strict/gone"),
            source,
            PublisherOptions(refetch=refetch, backoff=FAST, state_path=state),
        )
        await publisher.start()
        try:
            await wait_frames(ingest, video_input.ref, 10, 20)
        finally:
            await publisher.stop()
        assert refetched == [1]
        # the orphan DELETE failed (503), so the 403 made the publisher DELETE it again
        assert front.log[:5] == ["POST 404", "DELETE 503", "POST 403", "DELETE 200", "POST 201"]
        assert front.log[-1] == "DELETE 200"
        assert json.loads(state.read_text())["location"] is None

        # other 4xx: one POST, a clear error, no blind retry
        front.log.clear()
        bad = Publisher(Secret(f"{base}/strict/bad"), source, PublisherOptions(backoff=FAST))
        await bad.start()
        with pytest.raises(WhipError, match="400.*malformed offer"):
            await asyncio.wait_for(bad.wait(), 10)
        assert front.log == ["POST 400"]
        assert bad.state is PublisherState.FAILED
        await bad.stop()
    await source.close()


async def test_publisher_stops_instead_of_reconnecting_when_session_not_live(
    ingest_server: tuple[WhipIngest, str],
) -> None:
    ingest, _ = ingest_server
    video_input = ingest.create_input("ses_ended")
    live = {"value": True}
    checks: list[bool] = []

    async def is_live() -> bool:
        checks.append(live["value"])
        return live["value"]

    source = await open_media_source(SMALL)
    async with publishing(video_input.whip_url, source, is_live=is_live, backoff=FAST) as publisher:
        await wait_frames(ingest, video_input.ref, 5, 20)
        live["value"] = False
        await ingest.drop_publisher(video_input.ref)
        await asyncio.wait_for(publisher.wait(), 15)
    assert checks == [True, False]
    assert publisher.state is PublisherState.STOPPED
    stats = await ingest.stats(video_input.ref)
    assert stats is not None and stats.publishers == 1


async def test_persistent_409_gives_up_after_bounded_delete_and_retry_rounds(
    ingest_server: tuple[WhipIngest, str],
) -> None:
    ingest, _ = ingest_server
    video_input = ingest.create_input("ses_taken")
    front = StrictFront(ingest, video_input.ref)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    taken = f"{base}/strict/taken"
    source = await open_media_source(SMALL)
    async with serve(front.router_app, port):
        publisher = Publisher(Secret(taken), source, PublisherOptions(backoff=FAST))
        await publisher.start()
        with pytest.raises(WhipError) as failure:
            await asyncio.wait_for(publisher.wait(), 20)
        await publisher.stop()
        message = str(failure.value)
        assert failure.value.status == 409 and "\n" not in message
        assert "HTTP 409" in message and "after 5 DELETE-and-retry rounds" in message
        assert "endpoint in use by another publisher" in message
        assert publisher.state is PublisherState.FAILED
        # 5 refused rounds with backoff; the 6th 409 is final
        assert front.log == ["POST 409"] * 6
    await source.close()


async def test_403_with_nothing_of_ours_to_delete_is_refused_after_one_post(
    ingest_server: tuple[WhipIngest, str],
) -> None:
    ingest, _ = ingest_server
    video_input = ingest.create_input("ses_wrong_token")
    front = StrictFront(ingest, video_input.ref)
    port = free_port()
    source = await open_media_source(SMALL)
    async with serve(front.router_app, port):
        publisher = Publisher(
            Secret(f"http://127.0.0.1:{port}/strict/ok"), source, PublisherOptions(backoff=FAST)
        )
        await publisher.start()
        with pytest.raises(WhipError) as failure:
            await asyncio.wait_for(publisher.wait(), 10)
        await publisher.stop()
    await source.close()
    message = str(failure.value)
    assert failure.value.status == 403 and "\n" not in message
    assert "rejects our credentials" in message and "endpoint in use" in message
    assert front.log == ["POST 403"]
    assert publisher.state is PublisherState.FAILED


async def test_persistent_publisher_reports_blocked_and_retries_slowly_until_it_publishes(
    ingest_server: tuple[WhipIngest, str],
) -> None:
    ingest, _ = ingest_server
    video_input = ingest.create_input("ses_blocked")
    front = StrictFront(ingest, video_input.ref)
    port = free_port()
    seen: list[tuple[PublisherState, str | None]] = []
    opened: list[int] = []

    async def open_camera() -> MediaSource:
        opened.append(1)
        return await open_media_source(SMALL)

    options = PublisherOptions(
        backoff=FAST, blocked_backoff=Backoff(initial=0.4, maximum=0.4, jitter=0), persistent=True
    )
    async with serve(front.router_app, port):
        publisher = Publisher(
            Secret(f"http://127.0.0.1:{port}/strict/ok"),
            open_camera,
            options,
            on_state=lambda state, stats: seen.append((state, stats.last_error)),
        )
        await publisher.start()
        try:
            await wait_for(lambda: front.log.count("POST 403") >= 2, 10, "two refused rounds")
            # the server logs its 403 before the publisher has read it: poll, within a round
            await wait_for(
                lambda: publisher.state is PublisherState.BLOCKED, 2, "blocked after the 403"
            )
            # whoever held the endpoint let go: the next slow round gets through
            front.held = None
            await wait_frames(ingest, video_input.ref, 10, 20)
            assert publisher.state is PublisherState.PUBLISHING
        finally:
            await publisher.stop()
    states = [state for state, _ in seen]
    assert states[:2] == [PublisherState.CONNECTING, PublisherState.BLOCKED]
    assert states[-2:] == [PublisherState.PUBLISHING, PublisherState.STOPPED]
    blocked_errors = {error for state, error in seen if state is PublisherState.BLOCKED}
    assert len(blocked_errors) == 1 and "rejects our credentials" in blocked_errors.pop()
    # one source for all rounds, opened by the publisher and closed when it stopped
    assert opened == [1]
    # refused rounds, one POST that got through, then the stop DELETEs (503 once, retried)
    refused, rest = front.log[:-3], front.log[-3:]
    assert len(refused) >= 2 and set(refused) == {"POST 403"}
    assert rest == ["POST 201", "DELETE 503", "DELETE 200"]
