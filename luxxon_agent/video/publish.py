"""`publish()`: one source to one WHIP endpoint for a while, the body of `luxxon-agent publish`."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path

from luxxon_agent.clock import sleep_or_event
from luxxon_agent.secret import Secret
from luxxon_agent.video.mediasource import open_media_source
from luxxon_agent.video.publisher import Publisher, PublisherOptions, process_age
from luxxon_agent.video.resource_file import whip_url_digest
from luxxon_agent.video.stats import PublisherState, PublisherStats

logger = logging.getLogger(__name__)


def default_state_path(whip_url: Secret) -> Path:
    """Where the last WHIP Location for this whipUrl is kept (per URL, owner-only)."""
    import platformdirs

    digest = whip_url_digest(whip_url)[:16]
    return platformdirs.user_state_path("luxxon-agent") / f"whip-{digest}.json"


async def publish(
    whip_url: Secret,
    source_url: str,
    options: PublisherOptions | None = None,
    *,
    seconds: float | None = None,
    audio: str | None = None,
    on_stats: Callable[[PublisherStats], None] | None = None,
    stats_interval: float = 1.0,
    stop: asyncio.Event | None = None,
) -> PublisherStats:
    """Publish until `seconds` pass, `stop` is set, or the session ends; return the last stats.
    `on_stats` gets them every `stats_interval` seconds (the rates in them are measured
    over the last second, whatever the interval).

    A fatal WHIP or media error propagates after the resource was DELETEd.
    """
    options = options or PublisherOptions()
    clock = options.clock
    started_at, opening = process_age(), clock.monotonic()
    source = await open_media_source(
        source_url, audio=audio, max_level=options.video.max_level, clock=clock
    )
    if started_at is not None:
        logger.info(
            "publish: started %.3f s after the process (interpreter, imports), source open"
            " in %.3f s",
            started_at,
            clock.monotonic() - opening,
        )
    publisher = Publisher(whip_url, source, options)
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
            await sleep_or_event(clock, stats_interval, stop, finished)
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
