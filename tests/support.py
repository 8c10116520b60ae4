"""Helpers shared by the test packages: a real uvicorn server on loopback and bounded waits.

`free_port()` and `require_tool()` stay in tests/conftest.py, where every package finds them.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any, Literal

import httpx
import pytest

if TYPE_CHECKING:
    from luxxon_agent.stub.ingest import WhipIngest


@contextlib.asynccontextmanager
async def serve(
    app: object, port: int, *, lifespan: Literal["on", "off"] = "off"
) -> AsyncIterator[None]:
    """Serve `app` with a real uvicorn server on 127.0.0.1:`port` in this event loop."""
    import uvicorn

    config = uvicorn.Config(
        app,  # type: ignore[arg-type]  # any ASGI app
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan=lifespan,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while not server.started:  # bounded: uvicorn has no started event
        assert not task.done(), "uvicorn exited at start"
        assert loop.time() < deadline, "uvicorn did not start"
        await asyncio.sleep(0.02)
    try:
        yield
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)


async def wait_for(
    predicate: Callable[[], object | Awaitable[object]],
    timeout: float,
    what: str,
    *,
    interval: float = 0.05,
) -> Any:
    """Poll a cheap condition (plain or async) until truthy, bounded by `timeout` seconds;
    return its value.

    The predicate may itself assert (a publisher that must keep running): that fails at once.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = predicate()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(interval)


async def frame_count(ingest: WhipIngest, ref: str) -> int:
    """Frames the ingest decoded for input `ref` (0 before it has stats)."""
    stats = await ingest.stats(ref)
    return stats.frames if stats is not None else 0


async def wait_frames(
    ingest: WhipIngest,
    ref: str,
    count: int,
    timeout: float,
    *,
    alive: Callable[[], None] | None = None,
) -> None:
    """Wait until the ingest decoded `count` frames of input `ref`.

    `alive` asserts that the publisher still runs; it is checked while frames are missing.
    """

    async def enough() -> bool:
        if await frame_count(ingest, ref) >= count:
            return True
        if alive is not None:
            alive()
        return False

    await wait_for(enough, timeout, f"{count} frames", interval=0.1)


async def wait_healthy(health_url: str, proc: asyncio.subprocess.Process, timeout: float) -> None:
    """Wait until a stub started as a subprocess answers `health_url` with 200."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    async with httpx.AsyncClient() as client:
        while loop.time() < deadline:
            assert proc.returncode is None, "stub exited during startup"
            try:
                if (await client.get(health_url)).status_code == 200:
                    return
            except httpx.TransportError:
                pass  # not listening yet
            await asyncio.sleep(0.1)
    pytest.fail(f"stub did not answer /health within {timeout} s")
