"""The agent's live status: per-operator figures, a local HTTP endpoint and its reader.

The endpoint is deliberately tiny (asyncio streams, HTTP/1.0, GET only) and
listens on loopback or a Unix socket: `GET /status` is JSON, `GET /metrics`
Prometheus text. `fetch_status()` is what `luxxon-agent status` uses, so the
CLI needs no HTTP library.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from luxxon_agent.errors import EXIT_STARTUP_FAILURE, LuxxonError
from luxxon_agent.secret import redact, strip_userinfo

logger = logging.getLogger(__name__)

MAX_REQUEST_BYTES = 8192


@dataclass
class VideoStatus:
    state: str = "idle"
    bitrate_kbps: float = 0.0
    fps: float = 0.0
    frames: int = 0
    bytes_sent: int = 0
    reconnects: int = 0


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
    availability: str = "STARTING"
    """STARTING, ONLINE, OFFLINE, BUSY (serving) or STOPPED, as this agent sees it."""
    reason: str | None = None
    """Why the operator cannot serve, when it cannot."""
    session_id: str | None = None
    session_state: str | None = None
    session_started_at: str | None = None
    max_duration_seconds: int | None = None
    rate_per_second_micro_usdc: int | None = None
    live_seconds: int = 0
    earned_micro_usdc: int = 0
    """Estimate: live seconds × rate × (1 − fee); the server's meter decides."""
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
    state: str = "starting"
    operators: list[OperatorStatus] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The JSON body; the endpoint is unauthenticated, so URLs and errors are redacted."""
        data = asdict(self)
        data["api_base_url"] = strip_userinfo(self.api_base_url)
        for op in data["operators"]:
            for key in ("reason", "last_error"):
                if op.get(key):
                    op[key] = redact(op[key])
            if op.get("gps", {}).get("source"):
                op["gps"]["source"] = redact(op["gps"]["source"])
        return data


def render_metrics(status: dict[str, Any]) -> str:
    """Prometheus text exposition (format 0.0.4) of a status dict."""
    lines = [
        "# HELP luxxon_agent_api_up 1 when the API answered recently.",
        "# TYPE luxxon_agent_api_up gauge",
        f"luxxon_agent_api_up {1 if status['api_ok'] else 0}",
    ]
    gauges: list[tuple[str, str, Callable[[dict[str, Any]], float]]] = [
        (
            "online",
            "1 when the operator is ONLINE or serving.",
            lambda o: 1.0 if o["availability"] in ("ONLINE", "BUSY") else 0.0,
        ),
        (
            "live",
            "1 while a session is LIVE.",
            lambda o: 1.0 if o["session_state"] == "LIVE" else 0.0,
        ),
        ("gps_fix", "1 with a fresh position fix.", lambda o: 1.0 if o["gps"]["fix"] else 0.0),
        (
            "gps_accuracy_meters",
            "Horizontal accuracy of the fix.",
            lambda o: (
                o["gps"]["accuracy_m"] if o["gps"]["accuracy_m"] is not None else float("nan")
            ),
        ),
        ("video_bitrate_kbps", "Publish bitrate.", lambda o: o["video"]["bitrate_kbps"]),
        ("video_fps", "Publish frame rate.", lambda o: o["video"]["fps"]),
        (
            "telemetry_pending",
            "Samples spooled, not yet delivered.",
            lambda o: o["telemetry"]["pending"],
        ),
        (
            "session_live_seconds",
            "Seconds LIVE in the current session.",
            lambda o: o["live_seconds"],
        ),
    ]
    counters: list[tuple[str, str, Callable[[dict[str, Any]], float]]] = [
        ("video_reconnects_total", "WHIP reconnects.", lambda o: o["video"]["reconnects"]),
        ("video_frames_total", "Frames sent.", lambda o: o["video"]["frames"]),
        ("telemetry_delivered_total", "Samples delivered.", lambda o: o["telemetry"]["delivered"]),
        ("sessions_served_total", "Sessions served since start.", lambda o: o["sessions_served"]),
    ]
    for kind, table in (("gauge", gauges), ("counter", counters)):
        for name, text, get in table:
            metric = f"luxxon_agent_{name}"
            lines.append(f"# HELP {metric} {text}")
            lines.append(f"# TYPE {metric} {kind}")
            for op in status["operators"]:
                label = op["label"].replace("\\", "\\\\").replace('"', '\\"')
                lines.append(f'{metric}{{operator="{label}"}} {float(get(op))}')
    return "\n".join(lines) + "\n"


class StatusServer:
    """Serves `snapshot()` on `listen` (`HOST:PORT` or `unix:/path`)."""

    def __init__(self, listen: str, snapshot: Callable[[], dict[str, Any]], metrics: bool) -> None:
        self.listen = listen
        self._snapshot = snapshot
        self._metrics = metrics
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        try:
            if self.listen.startswith("unix:"):
                self._server = await asyncio.start_unix_server(self._handle, self.listen[5:])
            else:
                host, _, port = self.listen.rpartition(":")
                self._server = await asyncio.start_server(self._handle, host, int(port))
        except OSError as exc:
            raise StatusEndpointError(f"status endpoint {self.listen}: {exc.strerror}") from None
        logger.info("status endpoint on %s", self.address)

    @property
    def address(self) -> str:
        if self._server is None or self.listen.startswith("unix:"):
            return self.listen
        host, port = self._server.sockets[0].getsockname()[:2]
        return f"{host}:{port}"

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=5)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
            writer.close()
            return
        request_line = head.split(b"\r\n", 1)[0].decode("latin-1").split()
        path = request_line[1] if len(request_line) >= 2 else ""
        if len(request_line) < 2 or request_line[0] != "GET":
            status, ctype, body = "405 Method Not Allowed", "text/plain", b"GET only\n"
        elif path == "/status":
            status, ctype = "200 OK", "application/json"
            body = json.dumps(self._snapshot()).encode()
        elif path == "/metrics" and self._metrics:
            status, ctype = "200 OK", "text/plain; version=0.0.4"
            body = render_metrics(self._snapshot()).encode()
        else:
            status, ctype, body = "404 Not Found", "text/plain", b"not found\n"
        writer.write(
            f"HTTP/1.0 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n".encode()
            + body
        )
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        writer.close()


class StatusEndpointError(LuxxonError):
    """The status endpoint cannot listen or cannot be read."""

    exit_code = EXIT_STARTUP_FAILURE


async def fetch_status(listen: str, path: str = "/status", timeout: float = 3.0) -> str:
    """GET `path` from a status endpoint; the body as text."""
    try:
        async with asyncio.timeout(timeout):
            if listen.startswith("unix:"):
                reader, writer = await asyncio.open_unix_connection(listen[5:])
            else:
                host, _, port = listen.rpartition(":")
                reader, writer = await asyncio.open_connection(host, int(port))
            writer.write(f"GET {path} HTTP/1.0\r\nHost: agent\r\n\r\n".encode())
            await writer.drain()
            raw = await reader.read(16 * 1024 * 1024)
            writer.close()
    except (OSError, TimeoutError) as exc:
        reason = getattr(exc, "strerror", None) or type(exc).__name__
        raise StatusEndpointError(
            f"no agent status at {listen} ({reason}); is `luxxon-agent run` running?"
        ) from None
    head, _, body = raw.partition(b"\r\n\r\n")
    first = head.split(b"\r\n", 1)[0].decode("latin-1")
    if " 200 " not in first + " ":
        raise StatusEndpointError(f"status endpoint {listen}{path}: {first}")
    return body.decode("utf-8")
