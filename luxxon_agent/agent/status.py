"""The agent's live status: its shape (`AgentStatus`, `OperatorStatus`) and its reader.

`Supervisor.status()` builds it; the endpoint (agent/status_server.py,
uvicorn on loopback or a Unix socket) serves `GET /status` as JSON and
`GET /metrics` as Prometheus text; `fetch_status()`, what `luxxon-agent
status` uses, reads either with httpx.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from luxxon_agent.errors import EXIT_STARTUP_FAILURE, LuxxonError
from luxxon_agent.secret import redact, strip_userinfo

STATUS_PATH = "/status"
METRICS_PATH = "/metrics"
UNIX_PREFIX = "unix:"
"""`listen = "unix:/run/luxxon-agent/status.sock"`: a Unix socket instead of a TCP port."""


class Availability(StrEnum):
    """What the agent's link decided about an operator (`WorkspaceLink.view`)."""

    STARTING = "STARTING"
    """Not judged yet, or healthy and not yet ONLINE on the server."""
    ONLINE = "ONLINE"
    OFFLINE = "OFFLINE"
    """It cannot serve (the reason is in the status)."""
    BUSY = "BUSY"
    """It holds a session."""

    @property
    def serving_or_ready(self) -> bool:
        return self in (Availability.ONLINE, Availability.BUSY)


class SessionPhase(StrEnum):
    """Where a session run is; changed only by `SessionRun._set_phase`."""

    ASSIGNED = "ASSIGNED"
    """Taken, not started (or a resume not yet reconciled)."""
    LIVE = "LIVE"
    ENDING = "ENDING"
    """Stopping sampling, draining the spool, stopping the video, POST /end."""
    DONE = "DONE"
    """This run is over: the session ended, was left LIVE for a restart, or given up."""


@dataclass
class VideoStatus:
    """The publisher's figures (video.PublisherStats, mapped in `SessionRun._video_figures`)."""

    state: str = "idle"
    bitrate_kbps: float = 0.0
    """Media payload over the last second."""
    fps: float = 0.0
    frames: int = 0
    bytes_sent: int = 0
    reconnects: int = 0
    freezes: int = 0
    """Times the source handed nothing to send for a while."""
    adaptive: bool = False
    """The rate follows the link's bandwidth estimate."""
    estimate_kbps: float | None = None
    """The link's estimated bandwidth, on the wire."""
    target_kbps: float | None = None
    """What the encoder aims at; None at a fixed rate."""
    sent_kbps: float = 0.0
    """Everything on the wire over the last second, retransmissions included."""
    loss: float = 0.0
    """Fraction lost, from the receiver's reports."""
    rtt_ms: float | None = None
    retransmitted_bytes: int = 0
    padding_bytes: int = 0
    """Padding sent to probe the link (on the wire)."""
    rung: str | None = None
    """Our encoder's picture on its ladder, e.g. `360p30`."""
    ladder_steps: int = 0
    mode: str | None = None
    """`passthrough`, `transcode` or `keyframes` for an H.264 camera."""
    mode_switches: int = 0
    mode_reason: str | None = None
    transport_cc: bool = False
    """The estimate follows transport-wide congestion feedback; False: receiver reports
    (and REMB) only, or no estimate."""
    keyframe_requests: int = 0
    """PLIs and FIRs the receiver sent."""
    keyframe_requests_refused: int = 0
    """...of which the PLI rate limit kept from the encoder."""
    repairs_refused: int = 0
    """NACKed packets not sent again: the retransmission budget was spent."""
    repairs_unavailable: int = 0
    """NACKed packets too old to send again."""


@dataclass
class GpsStatus:
    fix: bool = False
    lat: float | None = None
    lng: float | None = None
    accuracy_m: float | None = None
    age_s: float | None = None
    source: str = ""


@dataclass
class TelemetryStatus:
    spooled: int = 0
    """Samples taken (and signed) for the current session."""
    delivered: int = 0
    pending: int = 0


@dataclass
class OperatorStatus:
    label: str
    device_kind: str
    workspace_id: str | None = None
    availability: Availability = Availability.STARTING
    reason: str | None = None
    """Why the operator cannot serve, when it cannot."""
    session_id: str | None = None
    operator_id: str | None = None
    """The server's operator this is, with per-operator dispatch."""
    session_state: SessionPhase | None = None
    session_started_at: str | None = None
    max_duration_seconds: int | None = None
    rate_per_second_micro_usdc: int | None = None
    live_seconds: int = 0
    earned_micro_usdc: int = 0
    """Estimate: live seconds × rate × (1 − fee); the server's meter decides."""
    earned_total_micro_usdc: int = 0
    """The same estimate summed over every session since start, this one included."""
    sessions_served: int = 0
    last_error: str | None = None
    video: VideoStatus = field(default_factory=VideoStatus)
    gps: GpsStatus = field(default_factory=GpsStatus)
    telemetry: TelemetryStatus = field(default_factory=TelemetryStatus)


@dataclass
class AgentStatus:
    version: str
    pid: int
    started_at: str
    api_base_url: str
    api_ok: bool = False
    api_last_ok_age_s: float | None = None
    api_last_error: str | None = None
    """Why the last API call failed, until the API answers again."""
    state: str = "starting"
    operators: list[OperatorStatus] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The JSON body; the endpoint is unauthenticated, so URLs and errors are redacted."""
        data = asdict(self)
        data["api_base_url"] = strip_userinfo(self.api_base_url)
        if self.api_last_error:
            data["api_last_error"] = redact(self.api_last_error)
        for op in data["operators"]:
            for key in ("reason", "last_error"):
                if op.get(key):
                    op[key] = redact(op[key])
            if op.get("gps", {}).get("source"):
                op["gps"]["source"] = redact(op["gps"]["source"])
        return data


class StatusEndpointError(LuxxonError):
    """The status endpoint cannot listen or cannot be read."""

    exit_code = EXIT_STARTUP_FAILURE


async def fetch_status(listen: str, path: str = STATUS_PATH, timeout: float = 3.0) -> str:
    """GET `path` from the status endpoint at `listen` (`HOST:PORT` or `unix:/path`)."""
    import httpx

    if listen.startswith(UNIX_PREFIX):
        transport = httpx.AsyncHTTPTransport(uds=listen.removeprefix(UNIX_PREFIX))
        base_url = "http://agent"
    else:
        transport = httpx.AsyncHTTPTransport()
        base_url = f"http://{listen}"
    # trust_env=False: a loopback endpoint is never reached through an HTTP proxy
    async with httpx.AsyncClient(
        transport=transport, base_url=base_url, timeout=timeout, trust_env=False
    ) as client:
        try:
            response = await client.get(path)
        except httpx.TransportError as exc:
            reason = str(exc) or type(exc).__name__
            raise StatusEndpointError(
                f"no agent status at {listen} ({reason}); is `luxxon-agent run` running?"
            ) from None
    if response.status_code != 200:
        raise StatusEndpointError(
            f"status endpoint {listen}{path}: HTTP {response.status_code} {response.reason_phrase}"
        )
    return response.text
