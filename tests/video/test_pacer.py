"""The pacer on its own: order kept, bursts spread, its queue bounded, padding in the gaps."""

from __future__ import annotations

import asyncio
import time

from luxxon_agent.video.pacer import MAX_QUEUE_S, PACING_FACTOR, Pacer

PACKET = b"\x80" + bytes(1199)


async def test_a_burst_leaves_in_order_spread_at_the_pacing_rate() -> None:
    sent: list[tuple[float, bytes]] = []

    async def send(data: bytes) -> None:
        sent.append((time.monotonic(), data))

    pacer = Pacer(send)
    pacer.set_estimate(1_000_000)
    burst = [PACKET[:-2] + i.to_bytes(2, "big") for i in range(20)]  # 24 kB
    await asyncio.gather(*(pacer.send(p) for p in burst))
    assert [d for _, d in sent] == burst
    # 24 kB at 1.5 Mbit/s is 128 ms; the first packet goes at once
    spread = sent[-1][0] - sent[0][0]
    assert spread >= 0.8 * (19 * 1200 * 8 / (PACING_FACTOR * 1_000_000)), spread
    assert pacer.delayed_packets >= 15


async def test_a_backlog_speeds_the_pacer_up_instead_of_growing() -> None:
    sent: list[float] = []

    async def send(data: bytes) -> None:
        sent.append(time.monotonic())

    pacer = Pacer(send)
    pacer.set_estimate(80_000)  # the floor: 200 kbit/s would take 4 s for 100 kB
    began = time.monotonic()
    await asyncio.gather(*(pacer.send(PACKET) for _ in range(84)))
    # drained at the queue bound's rate, not the floor's: well under a second
    assert len(sent) == 84 and sent[-1] - began < 4 * MAX_QUEUE_S + 0.5


async def test_padding_only_in_the_time_media_leaves_free() -> None:
    kinds: list[str] = []

    async def send(data: bytes) -> None:
        kinds.append("pad" if data == b"P" * 255 else "media")

    pacer = Pacer(send, make_padding=lambda: b"P" * 255)
    pacer.set_estimate(1_000_000)
    pacer.padding_bps = 400_000
    pacer.start()
    try:
        await asyncio.sleep(0.3)
        assert kinds.count("pad") > 10
        pacer.padding_bps = 0
        await asyncio.sleep(0.05)
        count = kinds.count("pad")
        await pacer.send(PACKET)
        await asyncio.sleep(0.1)
        assert kinds.count("pad") == count and kinds[-1] == "media"
    finally:
        await pacer.close()
