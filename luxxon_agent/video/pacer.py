"""Paced sending: our RTP leaves at a rate, not in bursts, and padding fills the gaps.

aiortc sends every packet of a frame as soon as it is packetized: a keyframe
of 50 kB leaves in a few milliseconds and, on a 1 Mbit/s link with a 200 ms
queue (25 kB), loses its tail there; the receiver waits for the repair or
the next keyframe and the picture freezes. `Pacer` spreads packets at
`PACING_FACTOR` x the estimate (libwebrtc paces at 2.5 x; a lower factor
because here the estimate is all there is, with no transport-wide feedback to
catch an overshoot within a frame), and never lets its own queue hold more
than `MAX_QUEUE_S` of data: it speeds up instead (as libwebrtc's pacer does),
so pacing never turns into latency that grows.

Padding (padding-only RTP packets, from `make_padding`) goes out only in time
the media leaves unused, at the rate `padding_bps` asks, in packets of at most
255 bytes (RTP's padding limit).

Everything runs on the event loop; `send` is awaited in aiortc's sending
coroutine, so a wait here holds the next packet of the same stream, in order.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from luxxon_agent.clock import SYSTEM_CLOCK, Clock

PACING_FACTOR = 1.5
MIN_PACING_BPS = 200_000.0
"""Never slower than this: at the floor estimate a keyframe would take seconds."""
MAX_QUEUE_S = 0.25
"""What waits here is sent within this long, whatever the pacing rate."""
BURST_S = 0.005
"""Packets within this much of their slot leave at once (the loop's timer granularity)."""
PADDING_TICK_S = 0.01
MAX_PADDING_BURST_S = 0.02
"""Padding unsent for longer than this is not made up later in one burst."""

Send = Callable[[bytes], Awaitable[None]]


class Pacer:
    """Sends through `send` at `rate_bps`; with `make_padding`, pads up to `padding_bps`."""

    def __init__(
        self,
        send: Send,
        *,
        make_padding: Callable[[], bytes | None] | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self._send = send
        self._make_padding = make_padding
        self._clock = clock
        self._lock = asyncio.Lock()
        self._next_free = 0.0
        self._waiting_bytes = 0
        self.rate_bps = MIN_PACING_BPS
        self.padding_bps = 0.0
        self._padding_credit = 0.0
        self._padding_task: asyncio.Task[None] | None = None
        self.delayed_packets = 0
        """Packets that waited for their slot."""

    def set_estimate(self, estimate_bps: float) -> None:
        self.rate_bps = max(MIN_PACING_BPS, PACING_FACTOR * estimate_bps)

    def hold(self, seconds: float) -> None:
        """Send nothing new for `seconds` (a bottleneck queue is draining)."""
        self._next_free = max(self._next_free, self._clock.monotonic() + seconds)

    async def send(self, data: bytes) -> None:
        """Send `data` in its slot: after what is queued, at the pacing rate."""
        self._waiting_bytes += len(data)
        try:
            async with self._lock:
                now = self._clock.monotonic()
                wait = self._next_free - now
                if wait > BURST_S:
                    self.delayed_packets += 1
                    await asyncio.sleep(wait)
                    now = self._clock.monotonic()
                await self._send(data)
                self._next_free = max(self._next_free, now) + len(data) * 8 / self._rate()
        finally:
            self._waiting_bytes -= len(data)

    def _rate(self) -> float:
        # never more than MAX_QUEUE_S of backlog: drain it faster rather than let it grow
        return max(self.rate_bps, self._waiting_bytes * 8 / MAX_QUEUE_S)

    def start(self) -> None:
        if self._make_padding is not None and self._padding_task is None:
            self._padding_task = asyncio.create_task(self._pad(), name="rtp-padding")

    async def close(self) -> None:
        task, self._padding_task = self._padding_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _pad(self) -> None:
        assert self._make_padding is not None
        last = self._clock.monotonic()
        while True:
            await asyncio.sleep(PADDING_TICK_S)
            now = self._clock.monotonic()
            elapsed, last = now - last, now
            if self.padding_bps <= 0:
                self._padding_credit = 0.0
                continue
            self._padding_credit = min(
                self._padding_credit + self.padding_bps * elapsed / 8,
                self.padding_bps * MAX_PADDING_BURST_S / 8,
            )
            # only in time the media leaves free: padding never delays a media packet
            while self._padding_credit > 0 and not self._lock.locked():
                if self._next_free - self._clock.monotonic() > BURST_S:
                    break
                packet = self._make_padding()
                if packet is None:
                    break
                self._padding_credit -= len(packet)
                try:
                    await self.send(packet)
                except ConnectionError:
                    return  # the transport closed: the connection is going away
