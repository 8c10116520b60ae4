"""A real uvicorn server on 127.0.0.1 with the WHIP ingest mounted, for end-to-end tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest
import uvicorn
from fastapi import FastAPI

from luxxon_agent.stub.ingest import WhipIngest
from luxxon_agent.video import pin_ice_to_loopback
from tests.conftest import free_port


async def serve(app: FastAPI, port: int) -> AsyncIterator[None]:
    """Run `app` with a real uvicorn server on 127.0.0.1:`port` until the caller is done."""
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while not server.started:
        assert loop.time() < deadline, "uvicorn did not start"
        assert not task.done(), "uvicorn exited at start"
        await asyncio.sleep(0.02)
    try:
        yield
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)


@pytest.fixture
async def ingest_server() -> AsyncIterator[tuple[WhipIngest, str]]:
    """A WhipIngest mounted in a small FastAPI app, served on loopback; yields (ingest, base)."""
    pin_ice_to_loopback()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    ingest = WhipIngest(base)
    app = FastAPI()
    app.include_router(ingest.router)
    async for _ in serve(app, port):
        try:
            yield ingest, base
        finally:
            await ingest.aclose()


async def wait_for(predicate: Callable[[], object], timeout: float, what: str) -> None:
    """Poll a cheap condition on the event loop until true, bounded by `timeout` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.05)
