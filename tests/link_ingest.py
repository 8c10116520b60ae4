"""The stub's WHIP ingest as a process, for the server side of a NetnsLink.

Run inside the server namespace:
    python -m tests.link_ingest --host 10.231.47.1 --port 8080 --out /tmp/x/frames

It creates one input, writes its whipUrl to `<out>.url` (owner-only: the URL is
the credential, so it never goes through argv or stdout), prints "ready", and
appends one line per decoded frame to `<out>`:
    F <arrival unix s> <burned-in clock unix s or -> <width>x<height>
once a second a line of the input's counters:
    S <unix s> <publisher connections> <frames>
and one line per WHIP request answered (POST or DELETE):
    W <unix s> <method> <status>
until SIGTERM.

`--refuse-until-delete` makes it behave like some production WHIP servers:
while the input has a live publisher resource, a new POST is answered 403
until that resource is DELETEd (the stub itself lets a new publisher replace
the old one). The resource lives until its DELETE, whatever its media does.
`--transport-cc` answers transport-cc feedback to a publisher that offers it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import time
from typing import Any

from fastapi import FastAPI, Request, Response
from starlette.middleware.base import RequestResponseEndpoint

from luxxon_agent.stub.ingest import WhipIngest
from luxxon_agent.video.testsrc import read_burned_clock


async def main(
    host: str, port: int, out: str, refuse_until_delete: bool, transport_cc: bool
) -> None:
    import uvicorn

    ingest = WhipIngest(f"http://{host}:{port}", transport_cc=transport_cc)
    app = FastAPI()
    app.include_router(ingest.router)
    video = ingest.create_input("ses_link")
    fd = os.open(out + ".url", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(video.whip_url)
    lines = open(out, "a", buffering=1)  # noqa: SIM115  # closed below, after the server
    held: dict[str, str] = {}
    """WHIP endpoint path -> path of its live resource (--refuse-until-delete)."""

    @app.middleware("http")
    async def whip_requests(request: Request, call_next: RequestResponseEndpoint) -> Response:
        path, method = request.url.path, request.method
        if not path.startswith("/whip/") or method not in ("POST", "DELETE"):
            return await call_next(request)
        endpoint = path.rsplit("/", 1)[0] if method == "DELETE" else path
        if refuse_until_delete and method == "POST" and endpoint in held:
            response = Response("a publisher resource is still live: DELETE it first", 403)
        elif refuse_until_delete and method == "DELETE" and held.get(endpoint) == path:
            del held[endpoint]
            await call_next(request)
            # ours until DELETEd: gone from the ingest already (its media died) is still a 200
            response = Response(status_code=200)
        else:
            response = await call_next(request)
            if method == "POST" and response.status_code == 201:
                held[endpoint] = response.headers["location"]
        lines.write(f"W {time.time():.3f} {method} {response.status_code}\n")
        return response

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
    parser.add_argument("--refuse-until-delete", action="store_true")
    parser.add_argument("--transport-cc", action="store_true")
    args = parser.parse_args()
    asyncio.run(main(args.host, args.port, args.out, args.refuse_until_delete, args.transport_cc))
