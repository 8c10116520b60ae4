"""A non-adaptive Publisher as a process, printing what its estimator makes of the link.

Run inside the client namespace of a NetnsLink, the whipUrl on stdin:
    python -m tests.link_publisher --source 'testsrc://?size=640x360&fps=30' --bitrate 1500000

With `adaptive=False` the publisher's RTCP tap only observes: the encoder
sends at the cap whatever the estimate says, no retransmission or PLI is
refused, and the estimate rests on receiver reports (and REMB falls).
That shows what the estimator makes of the real link.

Prints one JSON line every half second: the time, the publisher's state and
reconnects, and the estimator's snapshot (None before the first connection).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import time

from luxxon_agent.secret import Secret
from luxxon_agent.video import Publisher, PublisherOptions, VideoOptions, open_media_source


async def main(source_url: str, bitrate: int) -> None:
    url = Secret(sys.stdin.readline().strip())
    source = await open_media_source(source_url)
    options = PublisherOptions(video=VideoOptions(bitrate=bitrate), adaptive=False)
    publisher = Publisher(url, source, options)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await publisher.start()
    try:
        while not stop.is_set():
            stats = publisher.stats()
            link = publisher.link_snapshot()
            line = {"t": time.time(), "state": stats.state, "reconnects": stats.reconnects}
            estimate = link.to_dict() if link is not None and link.reports else None
            print(json.dumps(line | {"estimate": estimate}, default=str), flush=True)
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
    args = parser.parse_args()
    asyncio.run(main(args.source, args.bitrate))
