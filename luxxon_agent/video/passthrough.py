"""Passthrough that degrades instead of freezing: forward the camera's H.264, or re-encode it.

A camera's encoder does not hear the link. When the estimate stays below the
camera's own bitrate (measured over `CAMERA_WINDOW_S`) for `DOWN_HOLD_S`,
or at once when the estimator is backing off on loss or delay, forwarding it
means dropping most packets and decoding nothing; instead
`PassthroughSwitch` goes to TRANSCODE: decode the camera's stream and encode
it with our libx264 at the estimate (same track, same RTP stream, no
reconnect). It returns to PASSTHROUGH once the estimate has stayed
`UP_MARGIN` above the camera's rate for `UP_HOLD_S`, or tries it (a probe) when
the transcoder's target has reached `PROBE_FROM` of the camera's rate with no
congestion for `QUIET_S`: a link that carries that much without a queue
probably carries the camera. A box that cannot
afford the transcode (`VideoOptions.transcode=False`, or encoding that turns
out slower than the frame rate) forwards keyframes only (KEYFRAMES): a slow
but whole picture rather than a broken stream, and tries passthrough again
after `PROBE_S` (doubling while it keeps failing).

Switching to TRANSCODE starts the decoder warm: the track keeps the camera's
packets since its last keyframe (`MAX_GOP_S` at most) and decodes them before
the first frame it encodes, so the first transcoded keyframe follows the switch
at once instead of at the camera's next keyframe; with no keyframe kept it
forwards keyframes only until one comes. Switching back waits for a camera
keyframe, and re-encodes until then, so the receiver never gets a P-frame whose
reference it does not have.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Callable
from dataclasses import replace
from enum import StrEnum
from typing import TYPE_CHECKING, Any, cast

from luxxon_agent.video.encoder import VIDEO_TIME_BASE, H264Encoder, VideoOptions
from luxxon_agent.video.sustained import Sustained

if TYPE_CHECKING:
    import av
    from aiortc.mediastreams import MediaStreamTrack

logger = logging.getLogger(__name__)

CAMERA_WINDOW_S = 4.0
"""The camera's bitrate is measured over this long (two keyframe intervals, typically)."""
DOWN_MARGIN = 1.1
"""Transcode when the estimate is below the camera's rate times this (RTP and SRTP
overhead, retransmissions)..."""
DOWN_HOLD_S = 1.0
"""...for this long (no wait when the estimator is backing off: that is the link
saying so, and every second forwarding the camera into it is a second frozen)."""
UP_MARGIN = 1.3
"""Back to passthrough when the estimate is above the camera's rate times this..."""
UP_HOLD_S = 8.0
"""...for this long."""
PROBE_FROM = 0.8
QUIET_S = 4.0
"""Probe when the transcoder's target is at least PROBE_FROM of the camera's rate and
the link has shown no congestion for QUIET_S: the estimate cannot prove more than the
transcoder sends (1.5 x what arrived), so waiting for UP_MARGIN can take a long while."""
PROBE_S = 15.0
"""Where the estimate cannot grow to the camera's rate (keyframes only, or a transcoder
that needs far less than its target: the estimate stays within 1.5 x what is sent), or
the link has shown no congestion for UP_HOLD_S, try passthrough after this, and twice as
long after each try the link refused (back to PROBE_S once the estimate has grown
REOPENED x past the rate at which a probe was refused: the link has changed since). A
probe is refused when undone within PROBE_GRACE_S (or still too narrow at its end)
before the link has passed the camera's rate; once it has, congestion means the link
narrowed, and the next probe waits PROBE_S (docs/video.md)."""
REOPENED = 2.0
MAX_GOP_S = 10.0
"""Camera packets kept for a warm decoder start: a camera with a longer keyframe
interval waits for its next keyframe instead."""
MAX_PROBE_S = 120.0
PROBE_GRACE_S = 12.0
"""A probe is judged by congestion, not by the estimate, for this long: the estimate
starts where transcoding left it and needs about 10 s at 25 %/s to reach the camera's."""
APP_LIMITED_SHARE = 0.5
"""A transcoder producing less than this share of its target is app-limited."""
AFFORDABLE_SHARE = 0.8
"""Transcoding that takes more than this share of the frame interval is not affordable."""
COST_SAMPLE_FRAMES = 30


class PassthroughMode(StrEnum):
    PASSTHROUGH = "passthrough"
    TRANSCODE = "transcode"
    KEYFRAMES = "keyframes"
    """Keyframes only: the camera's stream is too wide and transcoding is not possible."""


class PassthroughSwitch:
    """Decides the mode from the camera's measured bitrate and the target, with hysteresis."""

    def __init__(self, *, transcode: bool = True) -> None:
        self.transcode_allowed = transcode
        self.mode = PassthroughMode.PASSTHROUGH
        self.switches = 0
        self.reason = "start"
        self.target_bps: float | None = None
        self.congested = False
        """Set by the publisher: the estimator is backing off (loss or delay)."""
        self.queue_or_loss = False
        """Set by the publisher: the link shows loss, a queue or a REMB fall. Only that
        undoes a probe: fewer bytes arriving than were sent over one report's span, with
        nothing lost and nothing queued, is the span's edge at the probe's step up in
        rate, not a full link (what a full link does not pass is lost or queued)."""
        self.passed_bps: float | None = None
        """Set by the publisher: what the link passed (wire) by the last report. A probe
        during which it reached the camera's rate was carried: if congestion undoes it,
        the link narrowed, and that is no refusal."""
        self.padding = True
        """Set by the publisher: padding probes can prove the estimate here. Then an
        app-limited transcoder is no reason to try passthrough blind: padding lifts the
        estimate to the camera's rate where the link takes it."""
        self._congested_at: float | None = None
        self._packets: collections.deque[tuple[float, int]] = collections.deque()
        self._bytes = 0
        self._switch = Sustained()
        """How long the current mode's switch condition has held."""
        self._probe_s = PROBE_S
        self._probing = False
        self._carried = False
        """The link passed the camera's rate during the current probe."""
        self._refused_bps: float | None = None
        self._entered_at = 0.0
        self._listeners: list[Callable[[PassthroughMode], None]] = []

    def on_switch(self, listener: Callable[[PassthroughMode], None]) -> None:
        self._listeners.append(listener)

    def camera_bps(self, now: float) -> float | None:
        """The camera's bitrate over the last CAMERA_WINDOW_S, once that much was seen."""
        if not self._packets or now - self._packets[0][0] < CAMERA_WINDOW_S / 2:
            return None
        return self._bytes * 8 / max(1e-3, now - self._packets[0][0])

    def add_packet(self, size: int, now: float) -> None:
        self._packets.append((now, size))
        self._bytes += size
        while self._packets and self._packets[0][0] < now - CAMERA_WINDOW_S:
            self._bytes -= self._packets.popleft()[1]

    def not_affordable(self, why: str, now: float) -> None:
        """Transcoding turned out too slow here: keyframes only from now on."""
        self.transcode_allowed = False
        if self.mode is PassthroughMode.TRANSCODE:
            self._enter(PassthroughMode.KEYFRAMES, why, now)

    def update(
        self, target_bps: float, now: float, output_bps: float | None = None
    ) -> PassthroughMode:
        """The mode for `target_bps`; `output_bps` is what the transcoder produces."""
        self.target_bps = target_bps
        camera = self.camera_bps(now)
        if camera is None:
            return self.mode
        if self.mode is PassthroughMode.PASSTHROUGH:
            narrow = target_bps < camera * DOWN_MARGIN
            # the payload's rate against the wire's: the link passed at least the camera
            if self._probing and self.passed_bps is not None and self.passed_bps >= camera:
                self._carried = True
            in_grace = self._probing and now - self._entered_at < PROBE_GRACE_S
            if in_grace:
                narrow = narrow and self.congested and self.queue_or_loss
            elif self._probing and not narrow:
                self._probing = False  # the probe held: the link takes the camera again
                self._probe_s = PROBE_S
            if self._switch.held(narrow, now, 0.0 if self.congested else DOWN_HOLD_S):
                if self._probing and self._carried:
                    self._probe_s = PROBE_S  # the link took the camera, then narrowed
                elif self._probing:
                    # refused: undone in the grace, or still narrow at its end
                    self._probe_s = min(MAX_PROBE_S, self._probe_s * 2)
                    self._refused_bps = target_bps
                self._probing = False
                mode = (
                    PassthroughMode.TRANSCODE
                    if self.transcode_allowed
                    else PassthroughMode.KEYFRAMES
                )
                self._enter(
                    mode,
                    f"estimate {target_bps / 1000:.0f} kbit/s below the camera's"
                    f" {camera / 1000:.0f} kbit/s",
                    now,
                )
            return self.mode
        if self.congested:
            self._congested_at = now
        wide = target_bps >= camera * UP_MARGIN
        limited = not self.padding and (
            self.mode is PassthroughMode.KEYFRAMES
            or (output_bps is not None and output_bps < APP_LIMITED_SHARE * target_bps)
        )
        quiet = self._congested_at is None or now - self._congested_at >= QUIET_S
        carried = target_bps >= camera * PROBE_FROM
        if self._refused_bps is not None and target_bps >= self._refused_bps * REOPENED:
            self._refused_bps = None
            self._probe_s = PROBE_S
        if self._switch.held(wide, now, UP_HOLD_S):
            self._probe_s = PROBE_S
            self._enter(
                PassthroughMode.PASSTHROUGH,
                f"estimate {target_bps / 1000:.0f} kbit/s above the camera's"
                f" {camera / 1000:.0f} kbit/s",
                now,
            )
        elif quiet and (limited or carried) and now - self._entered_at >= self._probe_s:
            self._probing, self._carried = True, False
            why = (
                "the estimate cannot grow past what is sent"
                if limited
                else f"{target_bps / 1000:.0f} kbit/s carried with no congestion"
            )
            reason = f"probing the link with passthrough ({why})"
            self._enter(PassthroughMode.PASSTHROUGH, reason, now)
        return self.mode

    def _enter(self, mode: PassthroughMode, reason: str, now: float) -> None:
        logger.warning("video: %s -> %s (%s)", self.mode, mode, reason)
        self.mode, self.reason = mode, reason
        self.switches += 1
        self._switch.reset()
        self._entered_at = now
        for listener in list(self._listeners):
            listener(mode)


class _Transcoder:
    """Camera packets in, our encoder's packets out (runs in a worker thread)."""

    def __init__(self, encoder: H264Encoder, fps: float) -> None:
        import av

        self.encoder = encoder
        self._decoder = av.CodecContext.create("h264", "r")
        self._frame_s = 1.0 / fps
        self._spent = 0.0
        self._frames = 0
        self.cost_ms: float | None = None
        """Mean decode + encode time per frame over the first frames, once measured."""

    def warm(self, packets: list[av.Packet[Any]]) -> None:
        """Decode the camera's packets since its last keyframe, encoding nothing: the
        next packet then decodes to a picture the encoder can start its keyframe from."""
        for packet in packets:
            self._decode(packet)

    def transcode(self, packet: av.Packet[Any]) -> list[av.Packet[Any]]:
        began = time.perf_counter()
        out: list[av.Packet[Any]] = []
        for frame in self._decode(packet):
            out += self.encoder.encode(frame)
        self._frames += 1
        if self.cost_ms is None:
            self._spent += time.perf_counter() - began
            if self._frames >= COST_SAMPLE_FRAMES:
                self.cost_ms = self._spent / self._frames * 1000
        return out

    def _decode(self, packet: av.Packet[Any]) -> list[av.VideoFrame]:
        import av

        source = av.Packet(bytes(packet))
        source.pts, source.time_base = packet.pts, VIDEO_TIME_BASE
        try:
            return self._decoder.decode(source)
        except av.FFmpegError as exc:
            logger.debug("transcode: camera packet not decodable: %s", exc)
            return []

    @property
    def affordable(self) -> bool:
        return self.cost_ms is None or self.cost_ms / 1000 <= self._frame_s * AFFORDABLE_SHARE


def make_switching_track(
    camera: MediaStreamTrack,
    fps: float,
    options: VideoOptions,
    switch: PassthroughSwitch,
    *,
    now: Callable[[], float],
    on_encoder: Callable[[str], None] | None = None,
    on_ladder_step: Callable[[], None] | None = None,
) -> MediaStreamTrack:
    """A track of the camera's H.264, or of its re-encoding, as `switch` decides."""
    from aiortc.mediastreams import MediaStreamTrack

    class SwitchingTrack(MediaStreamTrack):
        kind = "video"

        def __init__(self) -> None:
            super().__init__()
            self._transcoder: _Transcoder | None = None
            self._pending: list[Any] = []
            self._cost_logged = False
            self._gop: list[Any] = []
            """The camera's packets since its last keyframe, for a warm decoder start."""

        @property
        def encoder(self) -> H264Encoder | None:
            """Our encoder while the camera is re-encoded (None while it is forwarded)."""
            return self._transcoder.encoder if self._transcoder is not None else None

        def request_keyframe(self) -> None:
            if self._transcoder is not None:
                self._transcoder.encoder.request_keyframe()

        def set_target(
            self,
            bitrate_bps: float,
            at: float,
            carried_bps: float | None = None,
            *,
            keep_headroom: bool = False,
        ) -> None:
            encoder = self._transcoder.encoder if self._transcoder is not None else None
            switch.update(bitrate_bps, at, encoder.output_bps if encoder is not None else None)
            if encoder is not None:
                encoder.set_target(bitrate_bps, at, carried_bps, keep_headroom=keep_headroom)

        async def recv(self) -> Any:
            while not self._pending:
                # the camera's track hands out packets only
                packet = cast("av.Packet[Any]", await camera.recv())
                at = now()
                switch.add_packet(packet.size, at)
                self._pending = await self._route(packet, at)
            return self._pending.pop(0)

        def _keep_gop(self, packet: Any) -> None:
            if packet.is_keyframe:
                self._gop = [packet]
            elif self._gop and len(self._gop) < MAX_GOP_S * fps:
                self._gop.append(packet)
            else:
                self._gop = []  # no keyframe in sight: the next one starts the decoder

        async def _route(self, packet: Any, at: float) -> list[Any]:
            if self._transcoder is None:
                self._keep_gop(packet)
            else:
                self._gop = []
            mode = switch.mode
            if self._transcoder is not None and mode is not PassthroughMode.TRANSCODE:
                if not packet.is_keyframe:
                    return await self._transcode(packet, at)  # until the camera's keyframe
                self._transcoder = None
            if mode is PassthroughMode.PASSTHROUGH:
                return [packet]
            if mode is PassthroughMode.KEYFRAMES:
                return [packet] if packet.is_keyframe else []
            if self._transcoder is None:
                if not self._gop:
                    # no keyframe to start from: keyframes only until the camera's next
                    return [packet] if packet.is_keyframe else []
                transcoder = self._start_transcoder()
                # the packet itself is the last of the GOP: it is transcoded below
                await asyncio.get_running_loop().run_in_executor(
                    None, transcoder.warm, self._gop[:-1]
                )
                self._transcoder, self._gop = transcoder, []
            return await self._transcode(packet, at)

        def _start_transcoder(self) -> _Transcoder:
            camera_bps = switch.camera_bps(now()) or float(options.bitrate)
            # never above the camera's own rate: that is what passthrough is for
            encoder = H264Encoder(
                fps,
                replace(options, bitrate=max(100_000, int(camera_bps))),
                adaptive=True,
                on_open=on_encoder,
                on_ladder_step=on_ladder_step,
            )
            encoder.set_target(switch.target_bps or camera_bps, now())
            logger.warning(
                "video: transcoding the camera costs a decoder and a libx264 encoder"
                " (CPU, and about one frame of latency)"
            )
            return _Transcoder(encoder, fps)

        async def _transcode(self, packet: Any, at: float) -> list[Any]:
            transcoder = self._transcoder
            assert transcoder is not None
            loop = asyncio.get_running_loop()
            out: list[Any] = await loop.run_in_executor(None, transcoder.transcode, packet)
            for encoded in out:
                encoded.time_base = VIDEO_TIME_BASE
            if transcoder.cost_ms is not None and not self._cost_logged:
                self._cost_logged = True
                logger.warning(
                    "video: transcoding costs %.1f ms a frame (%.0f %% of a frame interval)",
                    transcoder.cost_ms,
                    transcoder.cost_ms * fps / 10,
                )
                if not transcoder.affordable:
                    switch.not_affordable("transcoding is slower than the frame rate", at)
            return out

        def stop(self) -> None:
            super().stop()
            camera.stop()

    return SwitchingTrack()
