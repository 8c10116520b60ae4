"""The stub's WHIP ingest as a process, for the server side of a NetnsLink.

Run inside the server namespace:
    python -m tests.link_ingest --host 10.231.47.1 --port 8080 --out /tmp/x/frames

It creates one input, writes its whipUrl to `<out>.url` (owner-only: the URL is
the credential, so it never goes through argv or stdout), prints "ready", and
appends one line per decoded frame to `<out>`:
    F <arrival unix s> <burned-in clock unix s or -> <width>x<height>
and once a second a line of the input's counters:
    S <unix s> <publisher connections> <frames>
until SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import time
from typing import Any

from fastapi import FastAPI

from luxxon_agent.stub.ingest import WhipIngest
from luxxon_agent.video.testsrc import read_burned_clock


async def main(host: str, port: int, out: str) -> None:
    import uvicorn

    ingest = WhipIngest(f"http://{host}:{port}")
    app = FastAPI()
    app.include_router(ingest.router)
    video = ingest.create_input("ses_link")
    fd = os.open(out + ".url", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(video.whip_url)
    lines = open(out, "a", buffering=1)  # noqa: SIM115  # closed below, after the server

    def on_frame(frame: Any, received_at: Any) -> None:
        burned = read_burned_clock(frame)
        stamp = f"{burned[0].timestamp():.3f}" if burned is not None else "-"
        lines.write(f"F {time.time():.3f} {stamp} {frame.width}x{frame.height}\n")

    ingest.add_frame_listener(video.ref, on_frame)
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning"))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    serving = asyncio.create_task(server.serve())
    while not server.started:
        if serving.done():
            serving.result()
            return
        await asyncio.sleep(0.02)
    print("ready", flush=True)
    try:
        while not stop.is_set():
            with_timeout = asyncio.ensure_future(stop.wait())
            await asyncio.wait({with_timeout}, timeout=1.0)
            with_timeout.cancel()
            stats = await ingest.stats(video.ref)
            if stats is not None:
                lines.write(f"S {time.time():.3f} {stats.publishers} {stats.frames}\n")
    finally:
        server.should_exit = True
        await serving
        await ingest.aclose()
        lines.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    asyncio.run(main(args.host, args.port, args.out))
