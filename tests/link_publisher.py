"""Today's Publisher with an observe-only RtcpTap on its video sender, as a process.

Run inside the client namespace of a NetnsLink, the whipUrl on stdin:
    python -m tests.link_publisher --source 'testsrc://?size=640x360&fps=30' --bitrate 1500000

`--no-remb` ignores the ingest's REMB: the estimate then rests on receiver
reports alone, as against a server that sends nothing else.

Prints one JSON line every half second: the time, the publisher's state and
reconnects, and the estimator's snapshot (None before the first connection).
The tap observes only: the encoder does not follow the estimate (that is the
publisher's job), so this shows what the estimator makes of the real link.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import time

from luxxon_agent.secret import Secret
from luxxon_agent.video import Publisher, PublisherState, VideoOptions, open_media_source
from luxxon_agent.video.bandwidth import BandwidthEstimator
from luxxon_agent.video.rtcp_tap import RtcpTap


async def main(source_url: str, bitrate: int, use_remb: bool) -> None:
    url = Secret(sys.stdin.readline().strip())
    source = await open_media_source(source_url)
    publisher = Publisher(url, source, options=VideoOptions(bitrate=bitrate))
    estimator = BandwidthEstimator(max_bps=bitrate)
    taps: list[RtcpTap] = []

    def on_state(state: PublisherState) -> None:
        if state is PublisherState.PUBLISHING:
            # the Publisher does not expose its connection yet: the video helper plugs the
            # tap in there; until then the test driver reaches for it
            pc = publisher._pc
            assert pc is not None
            tap = RtcpTap(pc.getSenders()[0], estimator, enforce=False, use_remb=use_remb)
            tap.attach()
            taps.append(tap)

    publisher.on_state(on_state)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await publisher.start()
    try:
        while not stop.is_set():
            stats = publisher.stats()
            snap = estimator.snapshot().to_dict() if taps else None
            line = {"t": time.time(), "state": stats.state, "reconnects": stats.reconnects}
            print(json.dumps(line | {"estimate": snap}, default=str), flush=True)
            try:
                await asyncio.wait_for(stop.wait(), 0.5)
            except TimeoutError:
                pass
    finally:
        await publisher.stop()
        await source.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--source", required=True)
    parser.add_argument("--bitrate", type=int, default=1_500_000)
    parser.add_argument(
        "--no-remb",
        action="store_true",
        help="receiver reports only, as from a server without REMB",
    )
    args = parser.parse_args()
    asyncio.run(main(args.source, args.bitrate, not args.no_remb))
