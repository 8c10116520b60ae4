"""One WebRTC connection to a WHIP endpoint: the peer connection, its codecs, its resource.

This is the one boundary where aiortc and PyAV errors become ours (`MediaError`),
as `api/` does for httpx: above it the publisher sees `MediaError`/`WhipError`
and the connection's state, never an aiortc exception.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from luxxon_agent.clock import Clock
from luxxon_agent.errors import MediaError
from luxxon_agent.video import twcc
from luxxon_agent.video.bandwidth import BandwidthEstimator
from luxxon_agent.video.encoder import H264Encoder, VideoOptions, make_encoding_track
from luxxon_agent.video.mediasource import MediaSource
from luxxon_agent.video.passthrough import PassthroughSwitch, make_switching_track
from luxxon_agent.video.rtcp_tap import AiortcChangedError, RtcpTap, media_local_address
from luxxon_agent.video.stats import SenderReport, counting_track, read_sender
from luxxon_agent.video.whip import IceServer, WhipClient, WhipResource

if TYPE_CHECKING:
    from aiortc import RTCPeerConnection, RTCRtpSender
    from aiortc.mediastreams import MediaStreamTrack

logger = logging.getLogger(__name__)

CONSTRAINED_BASELINE = "42e01f"
"""The H.264 profile-level-id offered first: what Cloudflare and every browser decode."""


def _webrtc_errors() -> tuple[type[BaseException], ...]:
    """What aiortc, aioice and PyAV raise for a connection that cannot be made."""
    import av
    from aiortc.exceptions import InternalError, InvalidAccessError, InvalidStateError

    return (
        ValueError,
        OSError,
        InternalError,
        InvalidAccessError,
        InvalidStateError,
        av.FFmpegError,
    )


class RateControl(Protocol):
    """What follows the estimate: our encoder, or the passthrough switch's track."""

    def set_target(
        self,
        bitrate_bps: float,
        now: float,
        carried_bps: float | None = None,
        *,
        keep_headroom: bool = False,
    ) -> None: ...


@dataclass
class VideoTrack:
    """The video of one connection and what steers it."""

    track: MediaStreamTrack
    codec: str
    encoder: str | None
    """Its name when known now; our encoder reports its own when it opens."""
    control: RateControl | None = None
    h264: H264Encoder | None = None


def video_track(
    source: MediaSource,
    options: VideoOptions,
    *,
    adaptive: bool,
    switch: PassthroughSwitch | None,
    now: Callable[[], float],
    on_encoder: Callable[[str], None],
    on_ladder_step: Callable[[], None],
) -> VideoTrack:
    """The track for one connection: passthrough (switching with `switch`), our H.264, or
    aiortc's VP8 (which follows REMB by itself)."""
    if source.kind == "h264":
        if options.codec != "h264":
            logger.info("source is H.264 passthrough: sending H.264, not %s", options.codec)
        if switch is None:
            return VideoTrack(source.video_track(), "h264", "passthrough")
        track = make_switching_track(
            source.video_track(),
            source.fps,
            options,
            switch,
            now=now,
            on_encoder=on_encoder,
            on_ladder_step=on_ladder_step,
        )
        control: RateControl = track  # type: ignore[assignment]
        return VideoTrack(track, "h264", "passthrough", control=control)
    if options.codec == "vp8":
        return VideoTrack(source.video_track(), "vp8", "aiortc-vp8")
    encoder = H264Encoder(
        source.fps, options, adaptive=adaptive, on_open=on_encoder, on_ladder_step=on_ladder_step
    )
    track = make_encoding_track(source.video_track(), encoder)
    return VideoTrack(track, "h264", None, control=encoder if adaptive else None, h264=encoder)


@dataclass
class ConnectTimings:
    """When each step of one connection's set-up ended, on the publisher's monotonic clock
    (None: not yet): what a restart or a reconnection spends its time on."""

    began: float
    gathered: float | None = None
    """The offer is complete (aiortc gathers every candidate before it)."""
    answered: float | None = None
    """The WHIP POST was answered 201."""
    ice_connected: float | None = None
    dtls_connected: float | None = None
    """The connection state is `connected`: ICE and the DTLS handshake are done."""
    first_frame: float | None = None
    """The first frame (encoded, for our encoder) was handed to aiortc to send."""

    def describe(self) -> str:
        """Seconds from the start of the set-up to the end of each step."""
        steps = (
            ("gathered", self.gathered),
            ("answered", self.answered),
            ("ICE", self.ice_connected),
            ("DTLS", self.dtls_connected),
            ("first frame", self.first_frame),
        )
        return ", ".join(
            f"{name} {'-' if at is None else f'+{at - self.began:.3f}'}" for name, at in steps
        )


class Connection:
    """An established (or establishing) peer connection and the WHIP resource it holds."""

    def __init__(
        self, pc: RTCPeerConnection, sender: RTCRtpSender, tap: RtcpTap, timings: ConnectTimings
    ) -> None:
        self.pc = pc
        self.sender = sender
        self.tap = tap
        self.timings = timings

    def local_address(self) -> str | None:
        """The local IP address the media flows from, once ICE has chosen a pair."""
        return media_local_address(self.sender)

    def failure(self) -> str | None:
        """Why this connection is dead, or None while it may still carry media."""
        state = self.pc.connectionState
        if state in ("failed", "closed"):
            return f"connection {state}"
        dtls = self.sender.transport.state
        if dtls in ("failed", "closed"):
            return f"DTLS {dtls}"
        return None

    @property
    def connected(self) -> bool:
        return bool(self.pc.connectionState == "connected")

    def on_change(self, listener: Callable[[], None]) -> None:
        self.pc.on("connectionstatechange", listener)

    async def report(self) -> SenderReport:
        return await read_sender(self.sender)

    async def close(self) -> None:
        self.tap.detach()
        await self.pc.close()


async def open_connection(
    whip: WhipClient,
    source: MediaSource,
    track: MediaStreamTrack,
    codec: str,
    *,
    ice_servers: tuple[IceServer, ...],
    estimator: BandwidthEstimator,
    enforce: bool,
    clock: Clock,
    on_frame: Callable[[], None],
    on_resource: Callable[[WhipResource], None],
    before_post: Awaitable[None] | None = None,
) -> Connection:
    """Offer `track` (plus the source's audio) to `whip`; answered and ready to connect.

    `before_post` (the DELETE of a stale resource) runs while the offer gathers and
    must end before the POST; what it raises, this raises.

    `on_resource` hears of the resource as soon as the POST created it, before
    anything else can fail, so it is never forgotten. Errors: `WhipError` from
    the server, `MediaError` for everything on our side. The connection's RTCP
    feeds `estimator`; with `enforce` the retransmission budget and the PLI
    limit apply (without, they are only counted).
    """
    timings = ConnectTimings(clock.monotonic())

    def count_frame() -> None:
        if timings.first_frame is None:
            timings.first_frame = clock.monotonic()
        on_frame()

    errors = _webrtc_errors()
    setup_errors: tuple[type[BaseException], ...] = (*errors, AiortcChangedError)
    try:
        pc, sender = _build(source, track, codec, ice_servers, count_frame)
        tap = RtcpTap(sender, estimator, enforce=enforce, clock=clock)
        tap.attach()
    except setup_errors as exc:
        raise MediaError(f"cannot set up the WebRTC connection: {exc}") from exc
    connection = Connection(pc, sender, tap, timings)
    _time_states(pc, timings, clock)
    try:
        try:
            from aiortc import RTCSessionDescription

            await pc.setLocalDescription(await pc.createOffer())
            timings.gathered = clock.monotonic()
            if before_post is not None:
                await before_post
            offer = pc.localDescription.sdp
            if enforce:
                # aiortc neither offers nor uses it: the tap numbers and reads (twcc.py)
                offer = twcc.add_transport_cc(offer)
            resource = await whip.publish(offer)
            timings.answered = clock.monotonic()
            on_resource(resource)
            await pc.setRemoteDescription(
                RTCSessionDescription(sdp=resource.answer_sdp, type="answer")
            )
            if enforce:
                tap.use_transport_cc(twcc.negotiated_id(resource.answer_sdp))
        except errors as exc:
            raise MediaError(f"WebRTC negotiation failed: {exc}") from exc
    except BaseException:
        await connection.close()
        raise
    return connection


def _time_states(pc: RTCPeerConnection, timings: ConnectTimings, clock: Clock) -> None:
    def ice_changed() -> None:
        if timings.ice_connected is None and pc.iceConnectionState == "completed":
            timings.ice_connected = clock.monotonic()

    def state_changed() -> None:
        if timings.dtls_connected is None and pc.connectionState == "connected":
            timings.dtls_connected = clock.monotonic()

    pc.on("iceconnectionstatechange", ice_changed)
    pc.on("connectionstatechange", state_changed)


def _build(
    source: MediaSource,
    track: MediaStreamTrack,
    codec: str,
    ice_servers: tuple[IceServer, ...],
    on_frame: Callable[[], None],
) -> tuple[RTCPeerConnection, RTCRtpSender]:
    from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpSender

    pc = RTCPeerConnection(RTCConfiguration(iceServers=[s.to_rtc() for s in ice_servers]))
    transceiver = pc.addTransceiver(counting_track(track, on_frame), direction="sendonly")
    codecs = RTCRtpSender.getCapabilities("video").codecs
    prefs = [c for c in codecs if c.mimeType.lower() == f"video/{codec}"]
    prefs.sort(key=lambda c: c.parameters.get("profile-level-id") != CONSTRAINED_BASELINE)
    rtx = [c for c in codecs if c.mimeType.lower() == "video/rtx"]
    transceiver.setCodecPreferences(prefs + rtx)
    request_keyframe: Any = getattr(track, "request_keyframe", None)
    if request_keyframe is not None:
        # aiortc answers PLI/FIR by flagging its own encoder; ours is outside it
        transceiver.sender._send_keyframe = request_keyframe  # type: ignore[method-assign]
    audio = source.audio_track()
    if audio is not None:
        pc.addTransceiver(audio, direction="sendonly")
    return pc, transceiver.sender
