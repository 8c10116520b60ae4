"""`GET /metrics`: the agent's status as Prometheus series, through `prometheus_client`.

    registry = metrics_registry(supervisor.status)
    body = prometheus_client.generate_latest(registry)   # served as CONTENT_TYPE

The series are read from the same `AgentStatus` the JSON endpoint serves, at
scrape time (a custom collector: nothing here keeps its own counters). Every
per-operator series carries an `operator` label, the operator's `label`, so a
fleet (several agents, several operators each) is one query per panel
(examples/grafana-dashboard.json).

    luxxon_agent_api_up                            gauge, 1 when the API answered recently
    luxxon_agent_operator_info                     1 per operator; labels operator_id (the
                                                   server's, with per-operator dispatch),
                                                   workspace_id, device_kind
    luxxon_agent_availability                      0/1 per operator and `state` (STARTING,
                                                   ONLINE, OFFLINE, BUSY)
    luxxon_agent_session_info                      1 while the operator holds a session;
                                                   labels session_id, state
    luxxon_agent_{online,live,gps_fix}             gauges, 0/1 per operator
    luxxon_agent_gps_accuracy_meters               gauge (NaN without an accuracy)
    luxxon_agent_video_{bitrate_kbps,fps}          gauges
    luxxon_agent_video_{estimate,target,sent}_kbps gauges: the link's bandwidth estimate, the
                                                   encoder's target (NaN when unknown / fixed),
                                                   all bits on the wire
    luxxon_agent_video_{loss_ratio,rtt_ms,adaptive} gauges (rtt NaN before a receiver report)
    luxxon_agent_video_transport_cc                1 while the estimate follows transport-wide
                                                   feedback, 0 on receiver reports alone
    luxxon_agent_video_info                        1 per operator; labels mode, rung ("" if none)
    luxxon_agent_telemetry_pending                 gauge, samples spooled not yet delivered
    luxxon_agent_session_live_seconds              gauge
    luxxon_agent_session_earned_micro_usdc         gauge, this session's estimated earnings
    luxxon_agent_earned_micro_usdc_total           counter, estimated earnings since start
    luxxon_agent_video_reconnects_total            counter
    luxxon_agent_video_frames_total                counter
    luxxon_agent_video_{freezes,ladder_steps,mode_switches}_total      counters
    luxxon_agent_video_{retransmitted,padding}_bytes_total            counters
    luxxon_agent_telemetry_delivered_total         counter
    luxxon_agent_sessions_served_total             counter
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.registry import Collector

from luxxon_agent.agent.status import AgentStatus, Availability, OperatorStatus, SessionPhase

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
"""The text format every Prometheus 2.x scrapes (Debian 12 ships 2.42)."""
PREFIX = "luxxon_agent_"

OperatorValue = Callable[[OperatorStatus], float]

GAUGES: tuple[tuple[str, str, OperatorValue], ...] = (
    (
        "online",
        "1 when the operator is ONLINE or serving.",
        lambda o: 1.0 if o.availability.serving_or_ready else 0.0,
    ),
    (
        "live",
        "1 while a session is LIVE.",
        lambda o: 1.0 if o.session_state is SessionPhase.LIVE else 0.0,
    ),
    ("gps_fix", "1 with a fresh position fix.", lambda o: 1.0 if o.gps.fix else 0.0),
    (
        "gps_accuracy_meters",
        "Horizontal accuracy of the fix.",
        lambda o: _or_nan(o.gps.accuracy_m),
    ),
    ("video_bitrate_kbps", "Publish bitrate.", lambda o: o.video.bitrate_kbps),
    ("video_fps", "Publish frame rate.", lambda o: o.video.fps),
    (
        "video_estimate_kbps",
        "The link's estimated bandwidth (NaN until estimated).",
        lambda o: _or_nan(o.video.estimate_kbps),
    ),
    (
        "video_target_kbps",
        "The encoder's target bitrate (NaN at a fixed rate).",
        lambda o: _or_nan(o.video.target_kbps),
    ),
    (
        "video_sent_kbps",
        "All bits on the wire, retransmissions included.",
        lambda o: o.video.sent_kbps,
    ),
    ("video_loss_ratio", "Fraction of packets lost (receiver reports).", lambda o: o.video.loss),
    ("video_rtt_ms", "Round-trip time (NaN before a report).", lambda o: _or_nan(o.video.rtt_ms)),
    ("video_adaptive", "1 when the rate follows the estimate.", lambda o: float(o.video.adaptive)),
    (
        "video_transport_cc",
        "1 when the estimate follows transport-wide congestion feedback (0: receiver reports).",
        lambda o: float(o.video.transport_cc),
    ),
    ("telemetry_pending", "Samples spooled, not yet delivered.", lambda o: o.telemetry.pending),
    ("session_live_seconds", "Seconds LIVE in the current session.", lambda o: o.live_seconds),
    (
        "session_earned_micro_usdc",
        "Estimated earnings of the current session (the server's meter decides).",
        lambda o: o.earned_micro_usdc,
    ),
)
COUNTERS: tuple[tuple[str, str, OperatorValue], ...] = (
    ("video_reconnects", "WHIP reconnects.", lambda o: o.video.reconnects),
    ("video_frames", "Frames sent.", lambda o: o.video.frames),
    ("video_freezes", "Times the source stalled.", lambda o: o.video.freezes),
    ("video_ladder_steps", "Encoder ladder changes.", lambda o: o.video.ladder_steps),
    ("video_mode_switches", "Passthrough/transcode switches.", lambda o: o.video.mode_switches),
    (
        "video_retransmitted_bytes",
        "Bytes sent again (NACK).",
        lambda o: o.video.retransmitted_bytes,
    ),
    (
        "video_padding_bytes",
        "Padding bytes sent to probe the link.",
        lambda o: o.video.padding_bytes,
    ),
    (
        "video_keyframe_requests",
        "PLIs and FIRs the receiver sent.",
        lambda o: o.video.keyframe_requests,
    ),
    (
        "video_keyframe_requests_refused",
        "Keyframe requests the PLI rate limit kept from the encoder.",
        lambda o: o.video.keyframe_requests_refused,
    ),
    (
        "video_repairs_refused",
        "NACKed packets not sent again: the retransmission budget was spent.",
        lambda o: o.video.repairs_refused,
    ),
    (
        "video_repairs_unavailable",
        "NACKed packets too old to send again.",
        lambda o: o.video.repairs_unavailable,
    ),
    ("telemetry_delivered", "Samples delivered.", lambda o: o.telemetry.delivered),
    ("sessions_served", "Sessions served since start.", lambda o: o.sessions_served),
    (
        "earned_micro_usdc",
        "Estimated earnings since start, the current session included.",
        lambda o: o.earned_total_micro_usdc,
    ),
)
"""Named without `_total`: prometheus_client appends it to the sample name."""
LABELLED = ("operator_info", "availability", "session_info", "video_info")
"""The families with labels beyond `operator` (built in `StatusCollector.collect`)."""


class StatusCollector(Collector):
    """Series read from `status()` at each scrape."""

    def __init__(self, status: Callable[[], AgentStatus]) -> None:
        self._status = status

    def collect(self) -> Iterator[Metric]:
        status = self._status()
        up = GaugeMetricFamily(
            PREFIX + "api_up", "1 when the API answered recently.", value=float(status.api_ok)
        )
        yield up
        for name, text, value in GAUGES:
            gauge = GaugeMetricFamily(PREFIX + name, text, labels=["operator"])
            for op in status.operators:
                gauge.add_metric([op.label], float(value(op)))
            yield gauge
        for name, text, value in COUNTERS:
            counter = CounterMetricFamily(PREFIX + name, text, labels=["operator"])
            for op in status.operators:
                counter.add_metric([op.label], float(value(op)))
            yield counter
        yield from _labelled(status)


def _labelled(status: AgentStatus) -> Iterator[Metric]:
    """The info and state-set families: one series per label value, the value 0 or 1."""
    info = GaugeMetricFamily(
        PREFIX + "operator_info",
        "The operator's identity (1).",
        labels=["operator", "operator_id", "workspace_id", "device_kind"],
    )
    availability = GaugeMetricFamily(
        PREFIX + "availability",
        "1 for the operator's availability state, 0 for the others.",
        labels=["operator", "state"],
    )
    session = GaugeMetricFamily(
        PREFIX + "session_info",
        "1 while the operator holds the session.",
        labels=["operator", "session_id", "state"],
    )
    video = GaugeMetricFamily(
        PREFIX + "video_info",
        "The operator's video mode (an H.264 camera) and rung (our encoder); empty when none.",
        labels=["operator", "mode", "rung"],
    )
    for op in status.operators:
        video.add_metric([op.label, op.video.mode or "", op.video.rung or ""], 1.0)
        info.add_metric(
            [op.label, op.operator_id or "", op.workspace_id or "", op.device_kind], 1.0
        )
        for state in Availability:
            availability.add_metric([op.label, state.value], float(op.availability is state))
        if op.session_id:
            phase = op.session_state or SessionPhase.ASSIGNED
            session.add_metric([op.label, op.session_id, phase.value], 1.0)
    yield from (info, availability, session, video)


def _or_nan(value: float | None) -> float:
    return value if value is not None else math.nan


def metrics_registry(status: Callable[[], AgentStatus]) -> CollectorRegistry:
    """A registry of its own (not the process-global one) holding the status series."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StatusCollector(status))
    return registry
