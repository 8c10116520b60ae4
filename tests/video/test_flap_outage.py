"""A WHIP server out of reach for a while, then back: the publisher's retry pace and order.

The publisher talks to the real ingest on loopback through `Path`, an httpx
transport that forwards each request, or fails it with `ConnectError` while
the path is "down" (what a dead uplink gives: no answer at all). `Path` also
plays a server that refuses a POST with 403 while the endpoint's last
resource lives (until it is DELETEd), as some production WHIP servers do.
No root needed: the namespace version is test_flap_netns.py.
"""

from __future__ import annotations

import asyncio
import logging
import time

import httpx
import pytest

from luxxon_agent.secret import Secret
from luxxon_agent.stub.ingest import WhipIngest
from luxxon_agent.video import Publisher, PublisherOptions, open_media_source
from tests.support import frame_count, wait_for, wait_frames

SMALL = "testsrc://?size=320x240&fps=15"
OUTAGE_S = 6.0
"""Long enough for a growing backoff (0.5, 1, 2, 4 s) to show: the pace must not grow."""


class Path:
    """Forwards the publisher's WHIP requests to the ingest, or fails them while `down`."""

    def __init__(self) -> None:
        self.down = False
        self.log: list[tuple[float, str, str]] = []
        """(monotonic time, method, status or "unreachable") of every request."""
        self.held: str | None = None
        self._upstream = httpx.AsyncClient()

    async def handle(self, request: httpx.Request) -> httpx.Response:
        method, url = request.method, str(request.url)
        if self.down:
            self.log.append((time.monotonic(), method, "unreachable"))
            raise httpx.ConnectError("the path is down", request=request)
        if method == "POST" and self.held is not None:
            response = httpx.Response(403, text="a publisher resource is still live")
        else:
            upstream = await self._upstream.request(
                method,
                url,
                content=request.content,
                headers={k: v for k, v in request.headers.items() if k.lower() == "content-type"},
            )
            headers = {
                k: v
                for k, v in upstream.headers.items()
                if k.lower() in ("content-type", "location", "link")
            }
            response = httpx.Response(
                upstream.status_code, headers=headers, content=upstream.content
            )
            if method == "POST" and response.status_code == 201:
                self.held = str(request.url.join(response.headers["location"]))
            if method == "DELETE" and url == self.held:
                self.held = None
        self.log.append((time.monotonic(), method, str(response.status_code)))
        return response

    async def aclose(self) -> None:
        await self._upstream.aclose()


async def test_unreachable_server_retried_at_a_steady_pace_stale_resource_deleted_first(
    ingest_server: tuple[WhipIngest, str], caplog: pytest.LogCaptureFixture
) -> None:
    ingest, _ = ingest_server
    video_input = ingest.create_input("ses_outage")
    path = Path()
    source = await open_media_source(SMALL)
    publisher = Publisher(
        Secret(video_input.whip_url),
        source,
        PublisherOptions(transport=httpx.MockTransport(path.handle)),
    )
    caplog.set_level(logging.INFO, logger="luxxon_agent.video.publisher")
    await publisher.start()
    try:
        await wait_frames(ingest, video_input.ref, 5, 20)
        path.down = True
        # the ingest closes its side: the publisher loses the connection at once
        await ingest.drop_publisher(video_input.ref)
        await asyncio.sleep(OUTAGE_S)
        during = [(t, m) for t, m, outcome in path.log if outcome == "unreachable"]
        before = await frame_count(ingest, video_input.ref)
        path.down = False
        up_at = time.monotonic()
        await wait_frames(ingest, video_input.ref, before + 10, 15)
        await wait_for(lambda: publisher.stats().state == "publishing", 5, "publishing")
    finally:
        await publisher.stop()
        await source.close()
        await path.aclose()

    # while out of reach: only the DELETE of the stale resource, about once a second, not
    # a backoff that grew to several seconds just before the path came back
    assert {m for _, m in during} == {"DELETE"}, during
    gaps = [b - a for (a, _), (b, _) in zip(during, during[1:], strict=False)]
    assert len(during) >= OUTAGE_S / 1.5 and max(gaps) < 1.5 and min(gaps) > 0.1, gaps
    # back: DELETE (404: the ingest had already let the dead connection go), then a POST
    # the server takes at once, no 403 round
    after = [(round(t - up_at, 2), m, o) for t, m, o in path.log if t >= up_at]
    assert [(m, o) for _, m, o in after[:2]] == [("DELETE", "404"), ("POST", "201")], after
    assert after[0][0] < 1.5, after
    outage_lines = [r for r in caplog.records if "unreachable" in r.getMessage()]
    assert [r.levelno for r in outage_lines] == [logging.WARNING], outage_lines
    assert any("reachable again" in r.getMessage() for r in caplog.records)
