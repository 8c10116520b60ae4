"""The served stub (`luxxon-agent stub -v`) never holds its event loop: the 64 KiB worst
case on every route, with debug logging on, leaves no callback running longer than 200 ms
(issue 12, item 4).

The probe is the stub's loop watch (runtime.watch_loop): it wakes every 50 ms and logs
how long the loop was held whenever a wake-up comes more than 100 ms late. Beside it,
/health is sampled at 20 Hz from another thread, and every sample must be answered.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.stub.conftest import ServedHarness
from tests.stub.stub_process import stub_process
from tests.video.test_ingest_offers import aiortc_offer

LIMIT = 64 * 1024
HELD_TOO_LONG_S = 0.2


def worst_case_bodies() -> dict[str, bytes]:
    """JSON bodies just under the limit, each expensive in its own way."""
    return {
        "long string": json.dumps({"label": "x" * (LIMIT - 20)}).encode(),
        "deep nesting": b"[" * (LIMIT // 2 - 1) + b"]" * (LIMIT // 2 - 1),
        "many keys": json.dumps({f"k{i}": i for i in range(LIMIT // 12)}).encode()[: LIMIT - 1],
        "many numbers": ("[" + ",".join(["1e308"] * (LIMIT // 6 - 1)) + "]").encode(),
    }


def padded_offer(base: str, line: str) -> bytes:
    room = LIMIT - len(base.encode()) - 1
    return (base + line * (room // len(line))).encode()


class HealthProbe(threading.Thread):
    """GET /health every 50 ms on its own connection, recording each latency."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.latencies: list[float] = []
        self.failures: list[str] = []
        self.stop = threading.Event()

    def run(self) -> None:
        with httpx.Client(timeout=5) as http:
            while not self.stop.wait(0.05):
                began = time.perf_counter()
                try:
                    status = http.get(self.url).status_code
                except httpx.HTTPError as exc:
                    self.failures.append(type(exc).__name__)
                    continue
                self.latencies.append(time.perf_counter() - began)
                if status != 200:
                    self.failures.append(str(status))


@pytest.mark.timeout(240)
async def test_no_callback_holds_the_loop_with_worst_case_bodies_and_debug_logs(
    tmp_path: Path,
) -> None:
    with stub_process(tmp_path, "-v") as origin:
        probe = HealthProbe(f"{origin}/api/v1/health")
        harness = ServedHarness(clock=None, video=None, app=None, transport=None, origin=origin)  # type: ignore[arg-type]
        try:
            operator, consumer, started = await harness.live()
            probe.start()
            oversized = await _post_worst_cases(harness, operator, started)
            # the offers' ICE checks and DTLS attempts go on after their answers
            await asyncio.sleep(2.0)
        finally:
            probe.stop.set()
            for client in harness.clients:
                await client.aclose()
        probe.join(10)
    log_path = tmp_path / "stub.log"
    text = log_path.read_text()
    held = [
        (float(seconds), " ".join(what.split())[:200])
        for what, seconds in re.findall(r"(event loop) held for\s+(\d+\.\d+) s", text)
    ]
    too_long = [entry for entry in held if entry[0] > HELD_TOO_LONG_S]
    assert not too_long, too_long
    assert probe.latencies and not probe.failures, probe.failures
    assert len(probe.latencies) >= 20, "the probe ran for too short a time to mean anything"
    print(
        f"longest callbacks {sorted(held, reverse=True)[:3]};"
        f" /health max {max(probe.latencies):.3f} s"
    )
    assert "Traceback" not in text, text[-3000:]
    assert oversized == 413


async def _post_worst_cases(
    harness: ServedHarness, operator: httpx.AsyncClient, started: dict[str, object]
) -> int:
    """Post every worst case; returns the status of the offer past the limit."""
    session = started["session"]
    assert isinstance(session, dict)
    ids = {"session_id": session["id"], "workspace_id": session["operatorWorkspaceId"],
           "key_id": "key_x", "operator_id": "op_x"}  # fmt: skip
    document = (await operator.get("/docs-json")).json()
    bodies = worst_case_bodies()
    statuses: dict[str, int] = {}
    for template, operations in document["paths"].items():
        if not template.startswith("/api/v1/"):
            continue  # the WHIP/WHEP endpoints get SDP below
        path = template.removeprefix("/api/v1").format(**ids)
        for method, operation in operations.items():
            if "requestBody" not in operation:
                continue
            for shape, body in bodies.items():
                assert len(body) < LIMIT
                response = await operator.request(
                    method.upper(), path, content=body, headers={"Content-Type": "application/json"}
                )
                statuses[f"{method} {template} {shape}"] = response.status_code
    assert all(400 <= status < 500 for status in statuses.values()), statuses
    base = await aiortc_offer("video")
    candidate = "a=candidate:1 1 udp 2130706431 127.0.0.1 9 typ host\r\n"
    whip, whep = str(started["whipUrl"]), str(started["whepUrl"])
    async with httpx.AsyncClient(timeout=30) as http:
        for url in (whip, whep):
            for line in ("a=x:1\r\n", candidate):
                offer = padded_offer(base, line)
                assert len(offer) < LIMIT
                response = await http.post(
                    url, content=offer, headers={"Content-Type": "application/sdp"}
                )
                assert response.status_code in (201, 400), (url[-10:], response.text)
        # and one past the limit (issue 12: a 5 MB offer held the loop for minutes)
        oversized = base + "a=x:1\r\n" * 150_000
        response = await http.post(
            whip, content=oversized.encode(), headers={"Content-Type": "application/sdp"}
        )
        return response.status_code
