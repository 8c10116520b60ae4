"""Video benchmarks: what one stream costs the publisher, latency, and restart time.

Run: /work/venv/bin/python benchmarks/bench_video.py [--seconds 10] [--only NAME]

Every case publishes to the real WHIP ingest (in this process) on loopback.
The publisher runs as `luxxon-agent publish` in its own process, so its CPU
(user+system, percent of one core) and peak RSS are read from /proc alone.
Cases:
  rtsp-passthrough-720p / 1080p   camera H.264 sent untouched
  rtsp-transcode-720p / 1080p     camera decoded and re-encoded (libx264 ultrafast)
  ffmpeg-x264-720p / 1080p        ffmpeg decoding the same RTSP stream and encoding
                                  libx264 ultrafast/zerolatency to null: the floor
  testsrc-x264-720p / 1080p       synthetic frames drawn and encoded
  latency                         glass-to-glass from the burned-in clock (testsrc 720p30)
  restart                         SIGKILL the publisher, start a new one: seconds to a new frame,
                                  and where they went (the publisher's set-up log lines)
The RTSP camera is GStreamer (tests/video/rtsp_camera.py, system python3 + gi).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import statistics
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import uvicorn  # noqa: E402
from fastapi import FastAPI  # noqa: E402

from luxxon_agent.stub.ingest import WhipIngest  # noqa: E402
from luxxon_agent.video import pin_ice_to_loopback, read_burned_clock  # noqa: E402

CLI = str(Path(sys.executable).with_name("luxxon-agent"))
CAMERA = ROOT / "tests" / "video" / "rtsp_camera.py"
TICKS = os.sysconf("SC_CLK_TCK")
SIZES = {"720p": (1280, 720), "1080p": (1920, 1080)}


def offers_accepted(ingest: WhipIngest, ref: str) -> int:
    """Publisher offers the ingest answered 201 (a reconnect's POST counts at once)."""
    view = ingest.input_view(ref)
    return view.offers if view is not None else 0


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


@asynccontextmanager
async def ingest_server() -> AsyncIterator[WhipIngest]:
    pin_ice_to_loopback()
    port = free_port()
    ingest = WhipIngest(f"http://127.0.0.1:{port}")
    app = FastAPI()
    app.include_router(ingest.router)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.02)
    try:
        yield ingest
    finally:
        await ingest.aclose()
        server.should_exit = True
        await task


@asynccontextmanager
async def camera(size: str) -> AsyncIterator[str]:
    width, height = SIZES[size]
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        "/usr/bin/python3",
        str(CAMERA),
        str(port),
        "constrained-baseline",
        str(width),
        str(height),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 15)
    assert line.strip() == b"ready", line
    try:
        yield f"rtsp://127.0.0.1:{port}/cam"
    finally:
        proc.kill()
        await proc.wait()


async def spawn_publisher(
    whip_url: str, source: str, seconds: float, *, log: bool = False
) -> asyncio.subprocess.Process:
    """`luxxon-agent publish`; `log`: its log as JSON lines on stderr (a pipe), else discarded."""
    env = os.environ | {
        "LUXXON_WHIP_URL": whip_url,
        "LUXXON_ICE_LOOPBACK": "1",
        "XDG_STATE_HOME": "/tmp/luxxon-bench-state",
    }
    return await asyncio.create_subprocess_exec(
        CLI,
        "publish",
        "--source",
        source,
        "--seconds",
        str(seconds),
        "--bitrate",
        "2500000",
        *(["--json"] if log else []),
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE if log else asyncio.subprocess.DEVNULL,
    )


SETUP_LINES = {
    "start": re.compile(r"started ([\d.]+) s after the process .* source open in ([\d.]+) s"),
    "delete": re.compile(r"set-up \(s\): DELETE ([\d.]+) s"),
    "steps": re.compile(
        r"gathered \+([\d.]+), answered \+([\d.]+), ICE \+([\d.]+), DTLS \+([\d.]+),"
        r" first frame \+([\d.]+); first frame ([\d.]+) s after the process started"
    ),
}


async def setup_breakdown(proc: asyncio.subprocess.Process, timeout: float) -> dict[str, float]:
    """Where a starting publisher's time went, from its log: seconds since process start
    at the end of each phase."""
    assert proc.stderr is not None
    found: dict[str, float] = {}
    deadline = time.monotonic() + timeout
    while "first_frame" not in found and (left := deadline - time.monotonic()) > 0:
        try:
            raw = await asyncio.wait_for(proc.stderr.readline(), left)
        except TimeoutError:
            break
        if not raw:
            break
        try:
            message = str(json.loads(raw)["msg"])
        except (ValueError, KeyError):
            continue
        if match := SETUP_LINES["start"].search(message):
            found["imports"] = float(match[1])
            found["source_open"] = found["imports"] + float(match[2])
        if match := SETUP_LINES["delete"].search(message):
            found["orphan_delete_s"] = float(match[1])
        if match := SETUP_LINES["steps"].search(message):
            gathered, answered, ice, dtls, sent, age = (float(x) for x in match.groups())
            # the set-up's own offsets, placed on the process clock by its first frame
            began = age - sent
            found |= {
                "gathered": began + gathered,
                "answered": began + answered,
                "ice": began + ice,
                "dtls": began + dtls,
                "first_frame": age,
            }
    return found


async def measure(pid: int, seconds: float) -> tuple[float, float]:
    """CPU percent of one core and peak RSS (MB) of `pid` over `seconds`."""
    start_cpu, start = cpu_seconds(pid), time.monotonic()
    peak = 0.0
    while time.monotonic() - start < seconds:
        peak = max(peak, rss_mb(pid))
        await asyncio.sleep(0.5)
    used = cpu_seconds(pid) - start_cpu
    return 100 * used / (time.monotonic() - start), peak


async def wait_frames(ingest: WhipIngest, ref: str, count: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        stats = await ingest.stats(ref)
        if stats is not None and stats.frames >= count:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"fewer than {count} frames in {timeout} s")
        await asyncio.sleep(0.05)


async def publisher_case(ingest: WhipIngest, source: str, seconds: float) -> dict[str, Any]:
    video_input = ingest.create_input("bench")
    proc = await spawn_publisher(video_input.whip_url, source, seconds + 8)
    try:
        await wait_frames(ingest, video_input.ref, 30, 30)
        before = (await ingest.stats(video_input.ref)).frames  # type: ignore[union-attr]
        t0 = time.monotonic()
        cpu, rss = await measure(proc.pid, seconds)
        stats = await ingest.stats(video_input.ref)
        assert stats is not None
        fps = (stats.frames - before) / (time.monotonic() - t0)
        size = f"{stats.width}x{stats.height}"
        return {"cpu_pct": cpu, "rss_mb": rss, "ingest_fps": fps, "size": size}
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            await proc.wait()
        await ingest.close_input(video_input.ref)


async def ffmpeg_case(rtsp: str, seconds: float) -> dict[str, Any]:
    proc = await asyncio.create_subprocess_exec(
        "ffmpeg",
        "-loglevel",
        "fatal",
        "-rtsp_transport",
        "tcp",
        "-i",
        rtsp,
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-tune",
        "zerolatency",
        "-b:v",
        "2500k",
        "-f",
        "null",
        "-",
        stdin=asyncio.subprocess.DEVNULL,
    )
    try:
        await asyncio.sleep(3)
        cpu, rss = await measure(proc.pid, seconds)
        return {"cpu_pct": cpu, "rss_mb": rss}
    finally:
        proc.kill()
        await proc.wait()


async def latency_case(ingest: WhipIngest, seconds: float) -> dict[str, Any]:
    video_input = ingest.create_input("bench-latency")
    delays: list[float] = []

    def on_frame(frame: Any, received_at: datetime) -> None:
        clock = read_burned_clock(frame)
        if clock is not None:
            delays.append((datetime.now(UTC) - clock[0]).total_seconds() * 1000)

    ingest.add_frame_listener(video_input.ref, on_frame)
    proc = await spawn_publisher(
        video_input.whip_url, "testsrc://?size=1280x720&fps=30", seconds + 8
    )
    try:
        await wait_frames(ingest, video_input.ref, 30, 30)
        delays.clear()
        await asyncio.sleep(seconds)
    finally:
        proc.send_signal(signal.SIGTERM)
        await proc.wait()
    delays.sort()
    return {
        "frames": len(delays),
        "median_ms": statistics.median(delays),
        "p95_ms": delays[int(len(delays) * 0.95) - 1],
    }


async def restart_case(ingest: WhipIngest, rounds: int = 5) -> dict[str, Any]:
    video_input = ingest.create_input("bench-restart")
    first_frame: dict[str, float] = {}

    def on_frame(frame: Any, received_at: datetime) -> None:
        first_frame.setdefault("t", time.monotonic())

    ingest.add_frame_listener(video_input.ref, on_frame)
    results: list[float] = []
    post_to_frame: list[float] = []
    phases: list[dict[str, float]] = []
    proc = await spawn_publisher(video_input.whip_url, "testsrc://?size=1280x720&fps=30", 120)
    try:
        await wait_frames(ingest, video_input.ref, 30, 30)
        for _ in range(rounds):
            proc.send_signal(signal.SIGKILL)
            await proc.wait()
            await asyncio.sleep(0.5)
            first_frame.clear()
            posts = offers_accepted(ingest, video_input.ref)
            t0 = time.monotonic()
            t_post = None
            proc = await spawn_publisher(
                video_input.whip_url, "testsrc://?size=1280x720&fps=30", 120, log=True
            )
            reading = asyncio.ensure_future(setup_breakdown(proc, 10))
            while "t" not in first_frame:
                if time.monotonic() - t0 > 30:
                    raise RuntimeError("no frame 30 s after restart")
                if t_post is None and offers_accepted(ingest, video_input.ref) > posts:
                    t_post = time.monotonic()
                await asyncio.sleep(0.01)
            results.append(first_frame["t"] - t0)
            post_to_frame.append(first_frame["t"] - (t_post or first_frame["t"]))
            await asyncio.sleep(2)
            breakdown = await reading
            # the ingest's first decoded frame, on the same scale (spawn ~ process start)
            breakdown["decoded"] = first_frame["t"] - t0
            phases.append(breakdown)
    finally:
        proc.send_signal(signal.SIGTERM)
        await proc.wait()
    order = ("imports", "source_open", "gathered", "answered", "ice", "dtls", "first_frame")
    medians = {
        key: round(statistics.median(p[key] for p in phases), 3)
        for key in (*order, "orphan_delete_s", "decoded")
        if all(key in p for p in phases)
    }
    return {
        "spawn_to_frame_s": [round(r, 2) for r in results],
        "median_s": round(statistics.median(results), 2),
        "post_to_frame_s": [round(r, 2) for r in post_to_frame],
        "phase_ends_since_start_median_s": medians,
    }


async def main(seconds: float, only: str | None) -> None:
    def wanted(name: str) -> bool:
        return only is None or only in name

    print(f"cores: {os.cpu_count()}, load avg: {os.getloadavg()[0]:.2f}, {seconds:.0f} s per case")
    async with ingest_server() as ingest:
        for size in SIZES:
            if wanted(f"testsrc-x264-{size}"):
                w, h = SIZES[size]
                r = await publisher_case(ingest, f"testsrc://?size={w}x{h}&fps=30", seconds)
                print(f"testsrc-x264-{size}: {r}")
            if not any(
                wanted(f"{k}-{size}") for k in ("rtsp-passthrough", "rtsp-transcode", "ffmpeg-x264")
            ):
                continue
            async with camera(size) as rtsp:
                if wanted(f"rtsp-passthrough-{size}"):
                    r = await publisher_case(ingest, rtsp, seconds)
                    print(f"rtsp-passthrough-{size}: {r}")
                if wanted(f"rtsp-transcode-{size}"):
                    r = await publisher_case(ingest, rtsp + "?passthrough=0", seconds)
                    print(f"rtsp-transcode-{size}: {r}")
                if wanted(f"ffmpeg-x264-{size}"):
                    print(f"ffmpeg-x264-{size}: {await ffmpeg_case(rtsp, seconds)}")
        if wanted("latency"):
            print(f"latency: {await latency_case(ingest, seconds)}")
        if wanted("restart"):
            print(f"restart: {await restart_case(ingest)}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--only", default=None, help="run the cases whose name contains this")
    args = parser.parse_args()
    asyncio.run(main(args.seconds, args.only))
