"""NetWatch as a process, for a test inside a network namespace.

    ip netns exec NS python -m tests.netwatch_probe ADDRESS...

Prints "ready" once subscribed, then one JSON line per change, until SIGTERM.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys

from luxxon_agent.video.netwatch import NetWatch


async def main(addresses: list[str]) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    async with NetWatch(addresses) as watch:
        print(json.dumps({"ready": True, "default_route": watch.default_route}), flush=True)
        while not stop.is_set():
            change = asyncio.ensure_future(watch.next_change())
            stopped = asyncio.ensure_future(stop.wait())
            await asyncio.wait({change, stopped}, return_when=asyncio.FIRST_COMPLETED)
            stopped.cancel()
            if not change.done():
                change.cancel()
                return
            found = change.result()
            print(
                json.dumps(
                    {"reason": found.reason, "address": found.address, "detail": found.detail}
                ),
                flush=True,
            )


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
