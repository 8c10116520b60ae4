"""The status endpoint (JSON + Prometheus) and the watchdog's idea of "really working"."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from luxxon_agent.agent.config import AgentConfig
from luxxon_agent.agent.status import (
    OperatorStatus,
    StatusEndpointError,
    StatusServer,
    fetch_status,
    render_metrics,
)
from luxxon_agent.agent.supervisor import Supervisor
from luxxon_agent.clock import FakeClock


def _snapshot() -> dict[str, object]:
    op = OperatorStatus(label='cam "1"', device_kind="FIXED", availability="BUSY")
    op.session_state = "LIVE"
    op.video.frames = 42
    op.gps.fix, op.gps.accuracy_m = True, 2.5
    return {"api_ok": True, "state": "running", "operators": [op.__dict__ | {
        "video": op.video.__dict__, "gps": op.gps.__dict__, "telemetry": op.telemetry.__dict__,
    }]}  # fmt: skip


async def test_status_endpoint_tcp_and_unix(tmp_path: Path) -> None:
    for listen in ("127.0.0.1:0", f"unix:{tmp_path / 'status.sock'}"):
        server = StatusServer(listen, _snapshot, metrics=True)
        await server.start()
        try:
            body = json.loads(await fetch_status(server.address))
            assert body["operators"][0]["video"]["frames"] == 42
            metrics = await fetch_status(server.address, "/metrics")
            assert 'luxxon_agent_live{operator="cam \\"1\\""} 1.0' in metrics
            assert 'luxxon_agent_gps_accuracy_meters{operator="cam \\"1\\""} 2.5' in metrics
            with pytest.raises(StatusEndpointError, match="404"):
                await fetch_status(server.address, "/nope")
        finally:
            await server.stop()
    with pytest.raises(StatusEndpointError, match="is `luxxon-agent run` running"):
        await fetch_status(f"unix:{tmp_path / 'status.sock'}")


def test_metrics_are_prometheus_text() -> None:
    text = render_metrics(_snapshot())
    names = [line.split()[2] for line in text.splitlines() if line.startswith("# TYPE")]
    assert len(names) == len(set(names))  # each family declared once
    assert text.endswith("\n")


@dataclass
class _Stats:
    bytes_sent: int


class _Publisher:
    def __init__(self) -> None:
        self.bytes = 0

    def stats(self) -> _Stats:
        return _Stats(self.bytes)


class _Run:
    def __init__(self) -> None:
        self.publisher = _Publisher()
        self.last_sampler_tick: float | None = 0.0


async def test_watchdog_withheld_when_api_video_or_telemetry_stall() -> None:
    config = AgentConfig.model_validate(
        {
            "agent": {"stall_seconds": 10},
            "operators": [{
                "label": "cam", "position": "fixed://?lat=1&lng=2", "video": "testsrc://",
                "coverage": {"lat": 1, "lng": 2, "radius_m": 100},
            }],
        }
    )  # fmt: skip
    clock = FakeClock()
    supervisor = Supervisor(config, env={}, clock=clock)
    assert supervisor.stalled() is None  # just started: the API gets its grace period
    await clock.advance(11)
    assert supervisor.stalled() == "the API has not answered since start"
    supervisor.api_health.ok(clock.monotonic())
    assert supervisor.stalled() is None
    run = _Run()
    supervisor.runs["cam"] = run  # type: ignore[assignment]
    run.last_sampler_tick = clock.monotonic()
    assert supervisor.stalled() is None
    for _ in range(3):  # bytes moving, telemetry ticking, API answering: working
        await clock.advance(5)
        run.publisher.bytes += 1000
        run.last_sampler_tick = clock.monotonic()
        supervisor.api_health.ok(clock.monotonic())
        assert supervisor.stalled() is None
    await clock.advance(11)  # the publish froze (and so did everything else)
    supervisor.api_health.ok(clock.monotonic())
    run.last_sampler_tick = clock.monotonic()
    assert supervisor.stalled() == "cam: no video bytes sent for 11 s"
    run.publisher.bytes += 1
    assert supervisor.stalled() is None
    await clock.advance(11)
    run.publisher.bytes += 1
    supervisor.api_health.ok(clock.monotonic())
    assert supervisor.stalled() == "cam: telemetry loop silent for 11 s"
