"""A real uvicorn server on 127.0.0.1 with the WHIP ingest mounted, for end-to-end tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from fastapi import FastAPI

from luxxon_agent.stub.ingest import WhipIngest
from luxxon_agent.video import pin_ice_to_loopback
from tests.conftest import free_port
from tests.support import serve


@pytest.fixture
async def ingest_server() -> AsyncIterator[tuple[WhipIngest, str]]:
    """A WhipIngest mounted in a small FastAPI app, served on loopback; yields (ingest, base)."""
    pin_ice_to_loopback()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    ingest = WhipIngest(base)
    app = FastAPI()
    app.include_router(ingest.router)
    async with serve(app, port):
        try:
            yield ingest, base
        finally:
            await ingest.aclose()
