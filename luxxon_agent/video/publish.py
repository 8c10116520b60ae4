"""`publish()`: one source to one WHIP endpoint for a while, the body of `luxxon-agent publish`."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

from luxxon_agent.clock import SYSTEM_CLOCK, Clock, sleep_or_event
from luxxon_agent.secret import Secret
from luxxon_agent.video.encoder import VideoOptions
from luxxon_agent.video.mediasource import open_media_source
from luxxon_agent.video.publisher import (
    Publisher,
    PublisherState,
    PublisherStats,
    whip_url_digest,
)
from luxxon_agent.video.whip import IceServer


def default_state_path(whip_url: Secret) -> Path:
    """Where the last WHIP Location for this whipUrl is kept (per URL, owner-only)."""
    import platformdirs

    digest = whip_url_digest(whip_url)[:16]
    return platformdirs.user_state_path("luxxon-agent") / f"whip-{digest}.json"


async def publish(
    whip_url: Secret,
    source_url: str,
    *,
    token: Secret | None = None,
    seconds: float | None = None,
    options: VideoOptions | None = None,
    audio: str | None = None,
    refetch: Callable[[], Awaitable[Secret | None]] | None = None,
    is_live: Callable[[], Awaitable[bool]] | None = None,
    state_path: Path | None = None,
    ice_servers: tuple[IceServer, ...] = (),
    on_stats: Callable[[PublisherStats], None] | None = None,
    stop: asyncio.Event | None = None,
    clock: Clock = SYSTEM_CLOCK,
) -> PublisherStats:
    """Publish until `seconds` pass, `stop` is set, or the session ends; return the last stats.

    A fatal WHIP or media error propagates after the resource was DELETEd.
    """
    options = options or VideoOptions()
    source = await open_media_source(
        source_url, audio=audio, max_level=options.max_level, clock=clock
    )
    publisher = Publisher(
        whip_url,
        source,
        token=token,
        options=options,
        refetch=refetch,
        is_live=is_live,
        state_path=state_path,
        ice_servers=ice_servers,
        clock=clock,
    )
    stop = stop or asyncio.Event()
    deadline = None if seconds is None else clock.monotonic() + seconds
    try:
        await publisher.start()
        run = asyncio.ensure_future(publisher.wait())
        finished = asyncio.Event()
        run.add_done_callback(lambda _: finished.set())
        while not run.done() and not stop.is_set():
            if deadline is not None and clock.monotonic() >= deadline:
                break
            await sleep_or_event(clock, 1.0, stop, finished)
            if on_stats is not None:
                on_stats(publisher.stats())
        if run.done():
            run.result()
        else:
            run.cancel()
    finally:
        await publisher.stop()
        await source.close()
    final = publisher.stats()
    if on_stats is not None and final.state is PublisherState.STOPPED:
        on_stats(final)
    return final
