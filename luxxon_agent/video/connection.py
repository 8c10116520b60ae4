"""One WebRTC connection to a WHIP endpoint: the peer connection, its codecs, its resource.

This is the one boundary where aiortc and PyAV errors become ours (`MediaError`),
as `api/` does for httpx: above it the publisher sees `MediaError`/`WhipError`
and the connection's state, never an aiortc exception.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from luxxon_agent.errors import MediaError
from luxxon_agent.video.encoder import VideoOptions, make_encoding_track
from luxxon_agent.video.mediasource import MediaSource
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


def video_track(
    source: MediaSource, options: VideoOptions, on_encoder: Callable[[str], None]
) -> tuple[MediaStreamTrack, str, str | None]:
    """(track, codec, encoder name) for one connection: passthrough, our H.264, or aiortc VP8.

    The encoder name is None when our encoder opens lazily (it reports through `on_encoder`).
    """
    if source.kind == "h264":
        if options.codec != "h264":
            logger.info("source is H.264 passthrough: sending H.264, not %s", options.codec)
        return source.video_track(), "h264", "passthrough"
    if options.codec == "vp8":
        return source.video_track(), "vp8", "aiortc-vp8"
    track = make_encoding_track(source.video_track(), source.fps, options, on_encoder=on_encoder)
    return track, "h264", None


class Connection:
    """An established (or establishing) peer connection and the WHIP resource it holds."""

    def __init__(self, pc: RTCPeerConnection, sender: RTCRtpSender) -> None:
        self.pc = pc
        self.sender = sender

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
        await self.pc.close()


async def open_connection(
    whip: WhipClient,
    source: MediaSource,
    track: MediaStreamTrack,
    codec: str,
    *,
    ice_servers: tuple[IceServer, ...],
    on_frame: Callable[[], None],
    on_resource: Callable[[WhipResource], None],
) -> Connection:
    """Offer `track` (plus the source's audio) to `whip`; answered and ready to connect.

    `on_resource` hears of the resource as soon as the POST created it, before
    anything else can fail, so it is never forgotten. Errors: `WhipError` from
    the server, `MediaError` for everything on our side.
    """
    errors = _webrtc_errors()
    try:
        pc, sender = _build(source, track, codec, ice_servers, on_frame)
    except errors as exc:
        raise MediaError(f"cannot set up the WebRTC connection: {exc}") from exc
    connection = Connection(pc, sender)
    try:
        try:
            from aiortc import RTCSessionDescription

            await pc.setLocalDescription(await pc.createOffer())
            resource = await whip.publish(pc.localDescription.sdp)
            on_resource(resource)
            await pc.setRemoteDescription(
                RTCSessionDescription(sdp=resource.answer_sdp, type="answer")
            )
        except errors as exc:
            raise MediaError(f"WebRTC negotiation failed: {exc}") from exc
    except BaseException:
        await connection.close()
        raise
    return connection


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
