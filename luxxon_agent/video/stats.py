"""What a publisher reports: its state, and the counters read from aiortc's sender stats."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, astuple, dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aiortc import RTCRtpSender
    from aiortc.mediastreams import MediaStreamTrack


class PublisherState(StrEnum):
    IDLE = "idle"
    CONNECTING = "connecting"
    PUBLISHING = "publishing"
    RECONNECTING = "reconnecting"
    BLOCKED = "blocked"
    """Refused for a reason a quick retry cannot fix (credentials, URL gone, camera gone);
    only with `PublisherOptions.persistent`, which retries slowly from here."""
    STOPPED = "stopped"
    FAILED = "failed"


@dataclass(frozen=True)
class PublisherStats:
    """A snapshot for status lines and metrics."""

    state: PublisherState
    bitrate_bps: float
    """Payload bit/s over the last sampling second."""
    fps: float
    """Frames sent per second over the last sampling second."""
    packets_lost: int
    """As the receiver reports it (RTCP), for the current connection."""
    reconnects: int
    frames_sent: int
    bytes_sent: int
    """RTP payload bytes over all connections."""
    encoder: str | None
    """`passthrough`, `libx264`, `h264_v4l2m2m`, `aiortc-vp8`, or None before media."""
    last_error: str | None
    freezes: int = 0
    """Times the source handed nothing to send for more than FREEZE_S."""
    adaptive: bool = False
    estimate_bps: float | None = None
    """The link's estimated bandwidth (bandwidth.py), on the wire."""
    target_bps: float | None = None
    """What the encoder (or the passthrough switch) aims at; None at a fixed rate."""
    sent_bps: float = 0.0
    """Everything sent over the last second on the wire, retransmissions included."""
    loss: float = 0.0
    """Fraction lost, from the receiver's reports over the last 2 s."""
    rtt_ms: float | None = None
    retransmitted_bytes: int = 0
    padding_bytes: int = 0
    """Padding-only probe bytes sent on the wire (pacer.py), in all."""
    receive_bps: float | None = None
    """What arrived at the receiver, from its reports (wire)."""
    remb_bps: float | None = None
    """The receiver's last REMB (payload), None when it sends none."""
    link_reason: str | None = None
    """Why the estimate last changed or held, e.g. `loss 14 %`, `link clear`."""
    rung: str | None = None
    """The ladder's picture, e.g. `360p30`, for our encoder: the software path's, or the
    transcoder's while a camera is re-encoded."""
    ladder_steps: int = 0
    """Ladder steps since the publisher started, over all its connections and encoders."""
    mode: str | None = None
    """`passthrough`, `transcode` or `keyframes` for an H.264 camera."""
    mode_switches: int = 0
    mode_reason: str | None = None
    transport_cc: bool = False
    """The estimate follows transport-wide congestion feedback (twcc.py) now; False:
    receiver reports (and REMB) only."""
    keyframe_requests: int = 0
    """PLIs and FIRs the receiver sent, over all connections."""
    keyframe_requests_refused: int = 0
    """...of which the PLI rate limit kept from the encoder."""
    repairs_refused: int = 0
    """NACKed packets not sent again because the retransmission budget was spent."""
    repairs_unavailable: int = 0
    """NACKed packets no longer in aiortc's history. Each refused or unavailable repair
    is a hole the receiver waits at until the next keyframe."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class RepairCounts:
    """What the RTCP tap did with the receiver's requests (PublisherStats says what each
    count is); summed over connections with `+`."""

    keyframe_requests: int = 0
    keyframe_requests_refused: int = 0
    repairs_refused: int = 0
    repairs_unavailable: int = 0

    def __add__(self, other: RepairCounts) -> RepairCounts:
        return RepairCounts(
            *(mine + theirs for mine, theirs in zip(astuple(self), astuple(other), strict=True))
        )


@dataclass(frozen=True)
class SenderReport:
    """What aiortc's `getStats()` says about one sender."""

    bytes_sent: int
    packets_lost: int
    remote_mark: tuple[float, int] | None
    """(timestamp, packets received) of the last receiver report; changes with each one."""


async def read_sender(sender: RTCRtpSender) -> SenderReport:
    bytes_sent, lost, mark = 0, 0, None
    for stat in (await sender.getStats()).values():
        if stat.type == "outbound-rtp":
            bytes_sent = stat.bytesSent
        elif stat.type == "remote-inbound-rtp":
            lost = stat.packetsLost
            mark = (stat.timestamp.timestamp(), stat.packetsReceived)
    return SenderReport(bytes_sent, lost, mark)


class RateMeter:
    """Bit/s and frames/s over spans of at least `min_span` seconds."""

    def __init__(self, min_span: float = 0.5) -> None:
        self.min_span = min_span
        self.bitrate_bps = 0.0
        self.fps = 0.0
        self._last: tuple[float, int, int] | None = None

    def add(self, now: float, bytes_sent: int, frames: int) -> None:
        if self._last is None:
            self._last = (now, bytes_sent, frames)
            return
        then, prev_bytes, prev_frames = self._last
        span = now - then
        if span >= self.min_span:
            self.bitrate_bps = max(0, bytes_sent - prev_bytes) * 8 / span
            self.fps = (frames - prev_frames) / span
            self._last = (now, bytes_sent, frames)

    def reset(self) -> None:
        self.bitrate_bps = self.fps = 0.0
        self._last = None


def counting_track(inner: MediaStreamTrack, on_frame: Callable[[], None]) -> MediaStreamTrack:
    """`inner`, calling `on_frame()` for each frame or packet handed to aiortc."""
    from aiortc.mediastreams import MediaStreamTrack

    class CountingTrack(MediaStreamTrack):
        kind = inner.kind

        async def recv(self) -> Any:
            data = await inner.recv()
            on_frame()
            return data

        def stop(self) -> None:
            super().stop()
            inner.stop()

    return CountingTrack()


FREEZE_S = 0.5
"""A gap between frames handed to aiortc longer than this counts as a freeze."""


class StatsBook:
    """The publisher's running counters, across its connections."""

    def __init__(self, monotonic: Callable[[], float]) -> None:
        self._monotonic = monotonic
        self._last_frame_at: float | None = None
        self.freezes = 0
        self.encoder: str | None = None
        self.encoders_opened = 0
        self.ladder_steps = 0
        """Across encoders: each connection's, each transcoding spell's (a counter)."""
        self.reconnects = 0
        self.frames = 0
        self.packets_lost = 0
        self.last_error: str | None = None
        self._bytes_closed = 0
        """Bytes of the connections already closed."""
        self._bytes_current = 0
        self._repairs_closed = RepairCounts()
        """The RTCP tap's counts of the connections already closed."""
        self._meter = RateMeter()

    def count_frame(self) -> None:
        self.frames += 1
        now = self._monotonic()
        if self._last_frame_at is not None and now - self._last_frame_at > FREEZE_S:
            self.freezes += 1
        self._last_frame_at = now

    def encoder_opened(self, name: str) -> None:
        self.encoders_opened += 1
        self.encoder = name

    def ladder_stepped(self) -> None:
        self.ladder_steps += 1

    def new_connection(self) -> None:
        self._bytes_closed += self._bytes_current
        self._bytes_current = 0
        self.packets_lost = 0
        self._last_frame_at = None
        self._meter.reset()

    def add_repairs(self, repairs: RepairCounts) -> None:
        """A closing connection's tap counts, kept in the totals."""
        self._repairs_closed += repairs

    def connection_closed(self, last: SenderReport | None) -> None:
        if last is not None:
            # the last second of bytes would otherwise be lost from the totals
            self._bytes_current = last.bytes_sent
        self._meter.reset()

    def add(self, now: float, report: SenderReport) -> None:
        self._bytes_current = report.bytes_sent
        self.packets_lost = report.packets_lost
        self._meter.add(now, report.bytes_sent, self.frames)

    def snapshot(
        self, state: PublisherState, repairs_now: RepairCounts | None = None
    ) -> PublisherStats:
        """The counters now; `repairs_now`: the open connection's tap counts, if any."""
        repairs = self._repairs_closed + (repairs_now or RepairCounts())
        return PublisherStats(
            state=state,
            bitrate_bps=self._meter.bitrate_bps,
            fps=self._meter.fps,
            packets_lost=self.packets_lost,
            reconnects=self.reconnects,
            frames_sent=self.frames,
            bytes_sent=self._bytes_closed + self._bytes_current,
            encoder=self.encoder,
            last_error=self.last_error,
            freezes=self.freezes,
            ladder_steps=self.ladder_steps,
            **asdict(repairs),
        )
