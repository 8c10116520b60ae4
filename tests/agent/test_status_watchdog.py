"""The status endpoint (JSON + Prometheus) and the watchdog's idea of "really working"."""

from __future__ import annotations

import json
import math
from pathlib import Path

import httpx
import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from luxxon_agent.agent.config import AgentConfig
from luxxon_agent.agent.metrics import COUNTERS, GAUGES, LABELLED, metrics_registry
from luxxon_agent.agent.session import END_BUDGET_S, SHUTDOWN_DRAIN_MAX_S
from luxxon_agent.agent.status import (
    AgentStatus,
    Availability,
    OperatorStatus,
    SessionPhase,
    StatusEndpointError,
    fetch_status,
)
from luxxon_agent.agent.status_server import StatusServer
from luxxon_agent.agent.supervisor import Supervisor, shutdown_budget_seconds
from luxxon_agent.clock import FakeClock
from luxxon_agent.video import PublisherState


def _status() -> AgentStatus:
    op = OperatorStatus(label='cam "1"', device_kind="FIXED", availability=Availability.BUSY)
    op.session_state, op.session_id = SessionPhase.LIVE, "ses_1"
    op.video.frames = 42
    op.video.estimate_kbps, op.video.target_kbps, op.video.sent_kbps = 1800.0, 1500.0, 1520.5
    op.video.mode, op.video.mode_switches = "transcode", 2
    op.video.transport_cc = True
    op.gps.fix, op.gps.accuracy_m = True, 2.5
    idle = OperatorStatus(label="cam-2", device_kind="FIXED", availability=Availability.OFFLINE)
    return AgentStatus(
        version="0", pid=1, started_at="now", api_base_url="http://127.0.0.1:1",
        api_ok=True, state="running", operators=[op, idle],
    )  # fmt: skip


async def test_status_endpoint_tcp_and_unix(tmp_path: Path) -> None:
    for listen in ("127.0.0.1:0", f"unix:{tmp_path / 'status.sock'}"):
        server = StatusServer(listen, _status, metrics=True)
        await server.start()
        try:
            body = json.loads(await fetch_status(server.address))
            assert body["operators"][0]["video"]["frames"] == 42
            metrics = await fetch_status(server.address, "/metrics")
            assert 'luxxon_agent_live{operator="cam \\"1\\""} 1.0' in metrics
            assert 'luxxon_agent_gps_accuracy_meters{operator="cam \\"1\\""} 2.5' in metrics
            assert 'luxxon_agent_video_frames_total{operator="cam \\"1\\""} 42.0' in metrics
            assert 'luxxon_agent_live{operator="cam-2"} 0.0' in metrics
            for path in ("/nope", "/"):
                with pytest.raises(StatusEndpointError, match="404"):
                    await fetch_status(server.address, path)
        finally:
            await server.stop()
    with pytest.raises(StatusEndpointError, match="is `luxxon-agent run` running"):
        await fetch_status(f"unix:{tmp_path / 'status.sock'}")
    assert not (tmp_path / "status.sock").exists()  # stop() removes its socket


async def test_status_endpoint_refuses_a_busy_port_in_one_line() -> None:
    first = StatusServer("127.0.0.1:0", _status, metrics=False)
    await first.start()
    try:
        with pytest.raises(StatusEndpointError, match=f"status endpoint {first.address}: "):
            await StatusServer(first.address, _status, metrics=False).start()
        with pytest.raises(StatusEndpointError, match="404"):  # metrics off: no route
            await fetch_status(first.address, "/metrics")
        async with httpx.AsyncClient(base_url=f"http://{first.address}") as client:
            assert (await client.post("/status")).status_code == 405  # read-only
    finally:
        await first.stop()


def test_metrics_parse_as_prometheus_text_with_the_operator_label() -> None:
    text = generate_latest(metrics_registry(_status)).decode()
    names = [line.split()[2] for line in text.splitlines() if line.startswith("# TYPE")]
    assert len(names) == len(set(names))  # each family declared once
    families = {f.name: f for f in text_string_to_metric_families(text)}
    expected = {"luxxon_agent_api_up"} | {f"luxxon_agent_{n}" for n, _, _ in GAUGES + COUNTERS}
    assert set(families) == expected | {f"luxxon_agent_{n}" for n in LABELLED}
    for name in [n for n, _, _ in GAUGES + COUNTERS] + ["operator_info"]:
        samples = families[f"luxxon_agent_{name}"].samples
        assert sorted(s.labels["operator"] for s in samples) == ['cam "1"', "cam-2"]
    [frames] = [
        s for s in families["luxxon_agent_video_frames"].samples if s.labels["operator"] != "cam-2"
    ]
    assert frames.name == "luxxon_agent_video_frames_total" and frames.value == 42
    states = {
        (s.labels["operator"], s.labels["state"]): s.value
        for s in families["luxxon_agent_availability"].samples
    }
    assert states[('cam "1"', "BUSY")] == 1 and states[('cam "1"', "ONLINE")] == 0
    assert states[("cam-2", "OFFLINE")] == 1 and sum(states.values()) == 2
    [held] = families["luxxon_agent_session_info"].samples  # the idle operator holds none
    assert held.labels["operator"] == 'cam "1"' and held.value == 1
    by_op = {
        name: {s.labels["operator"]: s.value for s in families[f"luxxon_agent_{name}"].samples}
        for name in (
            "video_estimate_kbps", "video_target_kbps", "video_sent_kbps", "video_transport_cc"
        )
    }  # fmt: skip
    assert by_op["video_estimate_kbps"]['cam "1"'] == 1800.0
    assert by_op["video_target_kbps"]['cam "1"'] == 1500.0
    assert by_op["video_sent_kbps"]['cam "1"'] == 1520.5
    assert math.isnan(by_op["video_estimate_kbps"]["cam-2"])  # no video, no estimate
    assert by_op["video_transport_cc"] == {'cam "1"': 1.0, "cam-2": 0.0}
    modes = {
        s.labels["operator"]: s.labels["mode"] for s in families["luxxon_agent_video_info"].samples
    }
    assert modes == {'cam "1"': "transcode", "cam-2": ""}
    [switches] = [
        s for s in families["luxxon_agent_video_mode_switches"].samples
        if s.labels["operator"] == 'cam "1"'
    ]  # fmt: skip
    assert switches.value == 2


class _Run:
    """What the watchdog reads of a session run: the video state it was told, frames sent."""

    def __init__(self) -> None:
        self.frames = 0
        self.video_state: PublisherState | None = PublisherState.PUBLISHING
        self.last_sampler_tick: float | None = 0.0
        self.last_spool_write: float | None = 0.0

    def frames_sent(self) -> int:
        return self.frames


async def test_watchdog_fed_through_api_outage_withheld_when_local_work_stalls() -> None:
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
    await clock.advance(60)
    assert supervisor.stalled() is None  # the API never answered: not the process's fault
    run = _Run()
    supervisor.runs["cam"] = run  # type: ignore[assignment]

    def working() -> None:
        run.last_sampler_tick = run.last_spool_write = clock.monotonic()

    working()
    assert supervisor.stalled() is None
    for _ in range(3):  # frames moving, telemetry ticking into the spool; API still away
        await clock.advance(5)
        run.frames += 50
        working()
        assert supervisor.stalled() is None
    await clock.advance(11)  # the publish froze while telemetry went on
    working()
    assert supervisor.stalled() == "cam: no video frames sent for 11 s"
    run.frames += 1
    assert supervisor.stalled() is None
    run.video_state = PublisherState.RECONNECTING  # waiting on the network: legitimate
    await clock.advance(30)
    working()
    assert supervisor.stalled() is None
    run.video_state = PublisherState.PUBLISHING
    await clock.advance(11)
    run.frames += 1
    assert supervisor.stalled() == "cam: telemetry loop silent for 11 s"
    run.last_sampler_tick = clock.monotonic()  # ticking, but every write fails
    assert supervisor.stalled() == "cam: the spool refused writes for 11 s"


def test_shutdown_budget_covers_drain_and_end_and_the_unit_allows_it() -> None:
    from luxxon_agent.agent.service import render_unit

    base = {
        "label": "cam", "position": "fixed://?lat=1&lng=2", "video": "testsrc://",
        "coverage": {"lat": 1, "lng": 2, "radius_m": 100},
    }  # fmt: skip
    ends = AgentConfig.model_validate({"operators": [base]})
    leaves = AgentConfig.model_validate({"agent": {"on_sigterm": "leave"}, "operators": [base]})
    timeout = ends.agent.shutdown_timeout_seconds
    assert shutdown_budget_seconds(ends) == timeout + SHUTDOWN_DRAIN_MAX_S + END_BUDGET_S
    assert shutdown_budget_seconds(leaves) == timeout
    stop = next(line for line in render_unit().splitlines() if line.startswith("TimeoutStopSec="))
    assert float(stop.partition("=")[2]) > shutdown_budget_seconds(ends)


def test_status_body_redacts_urls_and_errors() -> None:
    op = OperatorStatus(label="cam", device_kind="FIXED", availability="ONLINE")
    op.last_error = "cannot open rtsp://admin:hunter2@10.0.0.9/stream"
    status = AgentStatus(
        version="0", pid=1, started_at="now",
        api_base_url="https://bot:s3cret@api.example/api/v1", operators=[op],
    )  # fmt: skip
    body = json.dumps(status.to_dict())
    assert "s3cret" not in body and "hunter2" not in body
    assert status.to_dict()["api_base_url"] == "https://***@api.example/api/v1"
