"""A real uvicorn server on 127.0.0.1 with the WHIP ingest mounted, for end-to-end tests,
and the publisher and viewer helpers the video tests share."""

from __future__ import annotations

import asyncio
import contextlib
import io
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from luxxon_agent.secret import Secret
from luxxon_agent.stub.ingest import WhipIngest
from luxxon_agent.stub.limits import RequestGuard
from luxxon_agent.video import MediaSource, Publisher, PublisherOptions, pin_ice_to_loopback
from tests.conftest import free_port
from tests.support import serve


@contextlib.asynccontextmanager
async def publishing(
    whip_url: str, source: MediaSource, **options: Any
) -> AsyncIterator[Publisher]:
    """A started Publisher of `source` to `whip_url` with `PublisherOptions(**options)`;
    on exit it stops and the source closes."""
    publisher = Publisher(Secret(whip_url), source, PublisherOptions(**options))
    await publisher.start()
    try:
        yield publisher
    finally:
        await publisher.stop()
        await source.close()


def luma_spread(jpeg: bytes) -> int:
    """Brightest minus darkest pixel of a JPEG: well above 0 for a test pattern, 0 for black."""
    import av

    with av.open(io.BytesIO(jpeg)) as container:
        frame = next(container.decode(video=0)).reformat(format="gray")
    plane = bytes(frame.planes[0])
    return max(plane) - min(plane)


async def whep_viewer(whep_url: str, on_frame: Callable[[Any], object]) -> Any:
    """A WHEP viewer of `whep_url` handing each received frame to `on_frame`; its connection."""
    from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
    from aiortc.mediastreams import MediaStreamError

    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))

    @pc.on("track")
    def _on_track(track: Any) -> None:
        async def pull() -> None:
            while True:
                try:
                    frame = await track.recv()
                except MediaStreamError:
                    return
                on_frame(frame)

        asyncio.ensure_future(pull())

    pc.addTransceiver("video", direction="recvonly")
    await pc.setLocalDescription(await pc.createOffer())
    async with httpx.AsyncClient() as http:
        answer = await http.post(
            whep_url,
            content=pc.localDescription.sdp.encode(),
            headers={"Content-Type": "application/sdp"},
        )
    assert answer.status_code == 201 and answer.headers["Location"], answer.text
    await pc.setRemoteDescription(RTCSessionDescription(answer.text, "answer"))
    return pc


@pytest.fixture
async def ingest_server() -> AsyncIterator[tuple[WhipIngest, str]]:
    """A WhipIngest mounted in a small FastAPI app, served on loopback; yields (ingest, base)."""
    pin_ice_to_loopback()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    ingest = WhipIngest(base)
    app = FastAPI()
    app.include_router(ingest.router)
    app.add_middleware(RequestGuard)  # the body limit, as in the stub's app
    async with serve(app, port):
        try:
            yield ingest, base
        finally:
            await ingest.aclose()
