"""Our own H.264 encoder stage, so bitrate cap, keyframe interval and the encoder are ours.

aiortc's built-in H.264 encoder is libx264 with fixed settings (bitrate 0.5-3
Mbit/s, no keyframe interval, software only). This track encodes raw frames
with PyAV itself and hands aiortc finished Annex B packets, which aiortc only
packetizes (the same path as passthrough). Keyframe requests (PLI/FIR) from
the receiver are honoured through `request_keyframe()`.
"""

from __future__ import annotations

import asyncio
import collections
import fractions
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from luxxon_agent.errors import MediaError
from luxxon_agent.video.ladder import QP_LOW, Ladder
from luxxon_agent.video.sustained import Sustained

if TYPE_CHECKING:
    import av
    from aiortc.mediastreams import MediaStreamTrack

logger = logging.getLogger(__name__)

VIDEO_TIME_BASE = fractions.Fraction(1, 90000)
HARDWARE_H264_ENCODERS = ("h264_v4l2m2m",)
OUTPUT_WINDOW_S = 2.0
"""The encoder's own output rate is measured over this long (a keyframe interval)."""
QP_FRAMES = 30
"""The quantiser is averaged over this many frames (a second at 30 fps)."""
FF_QP2LAMBDA = 118
"""FFmpeg reports a frame's QP in its quality side data times this."""
OVERSHOOT = 1.3
NOT_FOLLOWING_S = 1.0
"""libx264 producing more than OVERSHOOT x its aim for this long is reopened."""
PINNED_BELOW = 1.3
PINNED_USING = 0.8
"""libx264 follows a rising `bit_rate` only as far as the VBV buffer sized when the
context opened lets it (measured at 640x360 30 fps, aimed at 850 kbit/s: 740-770 from a
buffer of 60-78 kbit, the full rate from 150). A context opened at less than
1 / PINNED_BELOW of today's target that uses PINNED_USING of what it was opened at, and
less than PINNED_USING of what it was aimed at (the picture wants more), for
NOT_FOLLOWING_S, is reopened at the target."""
MAX_TRIM = 1.2
"""libx264 under a VBV buffer of a few frames spends less than it is told: measured over
seconds of the noisy test pattern at a steady target, 0.86 of it at 180p15 and 360p15,
0.91-0.93 at 360p30 and 540p30. Media then reached 80 % of a 1 Mbit/s link only while the
estimate ran past the link (bench_link's drop phase: 614-710 kbit/s for 707-885). So it
is told its aim x (what it was told / what it made) over OUTPUT_WINDOW_S, up to MAX_TRIM,
while the picture wants more (mean QP >= the ladder's QP_LOW): an easy picture's shortfall
is the picture's, and trimming it would only store up an overshoot for the next busy one.
The frames the dropper skipped count as made. Not near the last congestion point (the
estimator's `keep_headroom`): there the link was full, and the shortfall is headroom
that a step down finds the link narrowed under. Trimmed there too, bench_link's step from
1 Mbit/s to 300 kbit/s came with the media at 860 kbit/s, and froze the picture 1.2-2.3 s
in two runs of three. Where the loss there is the radio's the shortfall is trimmed all the
same (BandwidthSnapshot.keep_headroom)."""
OUTPUT_HEADROOM = 1.5
"""libx264 is aimed at most this far above what it produced over OUTPUT_WINDOW_S."""
ADAPTIVE_BUFFER_S = 0.15
"""VBV buffer of an adaptive encoder, in seconds of its target when it opens (not of its
VBV rate, the rung's ceiling, which is up to 4 x more on a narrow link): the most a
keyframe may weigh. The frame before a keyframe stays on screen until the keyframe has
crossed the link, one frame interval plus what it weighs over an average frame at the
link's rate, and past 200 ms that is a freeze: at 0.15 s of a target 0.85 x the link,
opened up to 1.3 x above today's target, that is 0.18 s at 15 fps. Measured in bench_link
with 0.25 s: every periodic keyframe at 180p15 on the 300 kbit/s link from a context
opened a little above the target left a 0.26-0.28 s gap (0.2-0.9 s frozen in that phase;
none in three runs at 0.15 s). A keyframe bigger than the bottleneck's queue also loses
packets even paced (pacer.py): with 1 s, each ladder step's IDR at 540p froze the
1 Mbit/s phase 2-6 s."""
MIN_BUFFER_FRAMES = 2.0
"""...but never under this many average frames: x264 needs room for a P-frame's swing
(at 15 fps two frames are 0.13 s, under ADAPTIVE_BUFFER_S)."""
DROP_AHEAD_S = 0.4
"""An adaptive encoder that has produced more than this many seconds of its target ahead
of the wall clock skips frames until it is back under (libwebrtc's frame dropper does the
same). libx264 runs over its target for seconds after a reopen, a ladder step or a busy
scene, its VBV rate being the rung's ceiling; the pacer spreads that but cannot make the
link take it. The bar lets a keyframe (ADAPTIVE_BUFFER_S of the target) through whole."""
MAX_UNSENT_S = 0.09
DROP_ANYWAY_S = 2 * DROP_AHEAD_S
"""...but a frame is not skipped when none has gone for MAX_UNSENT_S (one frame in three
goes at 30 fps, one in two at 15 fps), unless the encoder is more than DROP_ANYWAY_S ahead:
the picture keeps moving while the debt is paid, as libwebrtc's dropper spreads its drops.
Skipped one after another, frames froze it: measured in bench_link, after the estimate fell
from 1087 to 319 kbit/s at the step to 300 kbit/s, no frame went for 0.5 s (bits made at
the higher target, paid at the lower one), and such runs froze 0.3-1.0 s at the step."""
MIN_TARGET_BPS = 50_000.0
"""Below this libx264 cannot make a picture worth sending, whatever the link."""
_UNUSABLE: set[str] = set()
"""Hardware encoders that failed to open in this process: `auto` stops trying them."""


@dataclass(frozen=True)
class VideoOptions:
    """How the publisher sends video."""

    codec: str = "h264"
    """`h264` (preferred, our encoder or passthrough) or `vp8` (aiortc's libvpx encoder)."""
    bitrate: int = 2_000_000
    """Bitrate cap in bit/s for our H.264 encoder (VBV max rate)."""
    keyframe_interval: float = 2.0
    """Seconds between keyframes from our H.264 encoder."""
    encoder: str = "auto"
    """`auto` (hardware if it opens, else libx264), `libx264`, or `h264_v4l2m2m`."""
    preset: str = "ultrafast"
    """libx264 preset; ultrafast keeps a small computer's CPU for the rest of the agent."""
    max_level: int | None = None
    """Highest H.264 level_idc passed through (31 = Cloudflare's 3.1); None allows any."""
    transcode: bool = True
    """A passthrough camera wider than the link is re-encoded at the estimate; False
    (a box that cannot afford an encoder) forwards its keyframes only."""

    def __post_init__(self) -> None:
        if self.codec not in ("h264", "vp8"):
            raise ValueError("codec must be h264 or vp8")
        if self.encoder not in ("auto", "libx264", *HARDWARE_H264_ENCODERS):
            raise ValueError("encoder must be auto, libx264 or h264_v4l2m2m")
        if self.bitrate < 100_000 or self.keyframe_interval <= 0:
            raise ValueError("bitrate must be >= 100000 and keyframe_interval > 0")


def _level_for(width: int, height: int) -> str:
    # 3.1 covers 1280x720@30; larger frames need 4.0 (an honest SPS, not a forced 3.1)
    return "3.1" if width * height <= 1280 * 720 else "4.0"


def open_h264_encoder(
    width: int,
    height: int,
    fps: float,
    options: VideoOptions,
    *,
    bitrate: int | None = None,
    max_rate: int | None = None,
    buffer_bits: int | None = None,
    follow: bool = False,
) -> tuple[av.video.codeccontext.VideoCodecContext, str]:
    """An opened H.264 encoder context and its name; hardware first when allowed.

    `bitrate` is the average target (default: the cap), `max_rate` the VBV
    rate (default: the cap), and `buffer_bits` the VBV buffer (default: one
    second of that rate): at most that much in flight, and the largest a
    keyframe can be. With `follow`, libx264 opens as CBR at `max_rate` and is
    aimed at `bitrate`, so that a later `bit_rate` moves it both ways up to
    `max_rate` (see H264Encoder); other encoders open at `bitrate`.
    """
    import av

    names = ["libx264"]
    if options.encoder == "auto":
        names = [n for n in HARDWARE_H264_ENCODERS if n not in _UNUSABLE] + ["libx264"]
    elif options.encoder != "libx264":
        names = [options.encoder]
    rate = max_rate or options.bitrate
    buffer = str(max(1, buffer_bits if buffer_bits is not None else rate))
    failures: list[str] = []
    for name in names:
        try:
            codec = cast(
                "av.video.codeccontext.VideoCodecContext", av.CodecContext.create(name, "w")
            )
            codec.width = width
            codec.height = height
            codec.pix_fmt = "yuv420p"
            codec.time_base = VIDEO_TIME_BASE
            codec.framerate = fractions.Fraction(round(fps * 1000), 1000)
            cbr = follow and name == "libx264"
            codec.bit_rate = rate if cbr else bitrate or options.bitrate
            codec.gop_size = max(1, round(options.keyframe_interval * fps))
            codec.max_b_frames = 0
            opts: dict[str, str] = {"maxrate": str(rate), "bufsize": buffer}
            if name == "libx264":
                opts |= {
                    "preset": options.preset,
                    "tune": "zerolatency",
                    "profile": "baseline",
                    "level": _level_for(width, height),
                    # SPS/PPS before every IDR so a late or reconnected receiver can decode
                    "x264-params": "repeat-headers=1",
                }
            codec.options = opts
            codec.open()
            if cbr:
                codec.bit_rate = bitrate or options.bitrate
        except (av.FFmpegError, ValueError, OSError) as exc:
            failures.append(f"{name}: {exc}")
            if options.encoder == "auto":
                _UNUSABLE.add(name)
            continue
        if failures:
            logger.info("H.264 encoder %s in use (%s)", name, "; ".join(failures))
        return codec, name
    raise MediaError("no H.264 encoder could be opened: " + "; ".join(failures))


class H264Encoder:
    """Raw frames in, H.264 packets out, at a target bitrate that may change while it runs.

    A target reaches libx264 by `bit_rate` on the open context: FFmpeg's libx264
    wrapper compares it before each frame and calls `x264_encoder_reconfig`. x264
    changes the rate of a CBR stream only (VBV rate = bitrate when it opened: "we
    don't support changing the ABR bitrate", ratecontrol.c), and then not above the
    rate it opened at. So an adaptive context opens as CBR at its rung's ceiling
    and is aimed at the target from its first frame: it follows falls and rises
    within a few frames, with no keyframe. Where it still runs over its aim,
    `_not_following` reopens it; where its VBV buffer (sized for the target it
    opened at) holds it under a rise, `_pinned_below_target` does (one IDR each).
    PyAV cannot change the VBV rate or buffer of an open context. With `adaptive` the ladder
    scales and thins frames below its floors, and frames are skipped when the
    output runs DROP_AHEAD_S ahead of the target.
    `encode()` runs in a worker thread; `set_target()` and `request_keyframe()`
    only store values it reads before the next frame.
    """

    def __init__(
        self,
        fps: float,
        options: VideoOptions,
        *,
        adaptive: bool = False,
        on_open: Callable[[str], None] | None = None,
        on_ladder_step: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.fps = fps
        self._clock = clock
        self.options = options
        self.adaptive = adaptive
        self.target_bps = float(options.bitrate)
        self.ladder: Ladder | None = None
        self._on_open = on_open
        self._on_ladder_step = on_ladder_step
        self._codec: av.video.codeccontext.VideoCodecContext | None = None
        self._opened_for: tuple[int, int] | None = None
        self._opened_fps = fps
        self._force_keyframe = False
        self._last_kept_s: float | None = None
        self._output: collections.deque[tuple[float, int, float, float]] = collections.deque()
        self._output_bytes = 0
        self._asked_sum = 0.0
        self._told_sum = 0.0
        self.trim = 1.0
        """What libx264 is told over its aim (see MAX_TRIM); kept across contexts."""
        self._keep_headroom = False
        self.output_bps: float | None = None
        """What the encoder produced over the last OUTPUT_WINDOW_S (None before that)."""
        self.asked_bps: float | None = None
        """What it was aimed at over the same frames, on average (None before that)."""
        self._qps: collections.deque[float] = collections.deque(maxlen=QP_FRAMES)
        self.mean_qp: float | None = None
        """libx264's mean quantiser over the last QP_FRAMES frames (None: not reported)."""
        self._overshooting = Sustained()
        self._pinned = Sustained()
        self._opened_bps: float | None = None
        self._ahead_bits = 0.0
        self._ahead_at: float | None = None
        self._encoded_at: float | None = None
        """When the dropper last let a frame through (MAX_UNSENT_S)."""
        self._dropped: collections.deque[float] = collections.deque()
        """When frames were skipped, over the last OUTPUT_WINDOW_S."""
        self.frames_dropped = 0
        """Frames skipped because the encoder was DROP_AHEAD_S ahead of its target."""
        self.reopens = 0
        """Contexts reopened because libx264 did not follow its target (down or up)."""

    @property
    def rung_label(self) -> str | None:
        return self.ladder.label if self.ladder is not None else None

    def request_keyframe(self) -> None:
        self._force_keyframe = True

    def set_target(
        self,
        bitrate_bps: float,
        now: float,
        carried_bps: float | None = None,
        *,
        keep_headroom: bool = False,
    ) -> None:
        """Aim at `bitrate_bps` (bounded by the cap); picks the ladder rung with `adaptive`.
        `carried_bps` is what the link carried lately (None: unknown); `keep_headroom`,
        whether the estimate is back where the link was last full, with no sign that the
        loss there is the radio's (no trim then: see MAX_TRIM)."""
        self.target_bps = max(MIN_TARGET_BPS, min(float(self.options.bitrate), bitrate_bps))
        self._keep_headroom = keep_headroom
        if self.ladder is not None:
            self.ladder.choose(
                self.target_bps, now, self.output_bps, self.mean_qp, carried_bps=carried_bps
            )

    def encode(self, frame: av.VideoFrame) -> list[av.Packet[Any]]:
        import av

        if self.adaptive and self.ladder is None:
            self.ladder = Ladder(frame.width, frame.height, self.fps, on_step=self._on_ladder_step)
            self.ladder.choose(self.target_bps, 0.0)
        size = (frame.width, frame.height)
        if self.ladder is not None:
            rung = self.ladder.poll(self._clock())
            if not self._keep(frame, rung.fps_share):
                return []
            size = rung.size(frame.width, frame.height)
        # a keyframe asked for while the ladder waits to step down comes with the step
        deferred = self.ladder is not None and self.ladder.deferring
        new_rung = self._codec is not None and self._opened_for != size
        if new_rung:
            # what the old context ran ahead is sent, queued or dropped by the bottleneck by
            # now: owed at the new target whole it skipped every frame for 1.3 s after a
            # step from 845 to 170 kbit/s (bench_link); the new rung's first frame goes,
            # and the dropper holds its second to the target as for any keyframe
            self._ahead_bits = min(self._ahead_bits, DROP_AHEAD_S * self.target_bps)
        if self._ahead_of_target(keyframe_due=self._force_keyframe and not deferred):
            self.frames_dropped += 1
            self._dropped.append(self._clock())
            return []
        codec = self._codec
        reopen = (
            codec is None
            or new_rung
            or self._not_following()
            or self._pinned_below_target()
            or (not deferred and self._keyframe_too_big())
        )
        if reopen and deferred and self.ladder is not None:
            # a new context costs a keyframe anyway: the step down that waited comes with it
            size = self.ladder.settle().size(frame.width, frame.height)
            deferred = False
        if size != (frame.width, frame.height) or frame.format.name != "yuv420p":
            frame = frame.reformat(width=size[0], height=size[1], format="yuv420p")
        if reopen or codec is None:
            codec = self._open(size)
        elif self.adaptive:
            # libx264 spends its rate per frame at the frame rate it was opened at: after a
            # frame-rate step (no new context) it is told the rate that makes `aim` at this one
            told = int(self._aim() * self._applied_trim() * self._opened_fps / self._rung_fps())
            if abs((codec.bit_rate or 0) - told) > 0.05 * told:
                codec.bit_rate = told
        forced = self._force_keyframe and not deferred
        frame.pict_type = (
            av.video.frame.PictureType.I if forced else av.video.frame.PictureType.NONE
        )
        if forced or reopen:
            self._force_keyframe = False  # a new context starts with a keyframe
        packets = list(codec.encode(frame))
        produced = sum(p.size for p in packets)
        self._ahead_bits += produced * 8
        aim = self._aim()
        self._count_output(produced, aim, aim * self._applied_trim())
        for packet in packets:
            self._count_qp(packet)
        return packets

    def _ahead_of_target(self, *, keyframe_due: bool) -> bool:
        """Whether this frame is to be skipped: more than DROP_AHEAD_S of the target sent
        ahead of the clock, and a frame went within MAX_UNSENT_S or the encoder is more than
        DROP_ANYWAY_S ahead (never a keyframe that is due: the receiver waits on it)."""
        if not self.adaptive:
            return False
        now = self._clock()
        if self._ahead_at is not None:
            spent = self.target_bps * (now - self._ahead_at)
            self._ahead_bits = max(0.0, self._ahead_bits - spent)
        self._ahead_at = now
        skip = (
            not keyframe_due
            and self._ahead_bits > DROP_AHEAD_S * self.target_bps
            and (
                self._ahead_bits > DROP_ANYWAY_S * self.target_bps
                or self._encoded_at is None
                or now - self._encoded_at < MAX_UNSENT_S
            )
        )
        if not skip:
            self._encoded_at = now
        return skip

    def _count_qp(self, packet: av.Packet[Any]) -> None:
        from av.packet import PacketSideData

        try:
            stats = bytes(PacketSideData.from_packet(packet, "quality_stats"))
        except (ValueError, KeyError, TypeError):
            return  # an encoder that does not report it (hardware): the floors decide
        if len(stats) >= 4:
            self._qps.append(int.from_bytes(stats[:4], "little") / FF_QP2LAMBDA)
            # written here only; readers take the float
            self.mean_qp = sum(self._qps) / len(self._qps)

    def _count_output(self, size: int, aim_bps: float, told_bps: float) -> None:
        # only the encoding thread touches the window; readers see the floats
        now = self._clock()
        self._output.append((now, size, aim_bps, told_bps))
        self._output_bytes += size
        self._asked_sum += aim_bps
        self._told_sum += told_bps
        if now - self._output[0][0] >= OUTPUT_WINDOW_S:
            self.output_bps = self._output_bytes * 8 / (now - self._output[0][0])
            self.asked_bps = self._asked_sum / len(self._output)
            self._retrim(self._told_sum / len(self._output))
        while self._output and self._output[0][0] < now - OUTPUT_WINDOW_S:
            _, old_size, old_aim, old_told = self._output.popleft()
            self._output_bytes -= old_size
            self._asked_sum -= old_aim
            self._told_sum -= old_told

    def _applied_trim(self) -> float:
        """The trim libx264 is told now: none while it keeps headroom (see MAX_TRIM)."""
        return 1.0 if self._keep_headroom else self.trim

    def _retrim(self, told_bps: float) -> None:
        """libx264's shortfall over the output window, made up next time (see MAX_TRIM)."""
        demand = self._demand_bps()
        wants_more = self.mean_qp is not None and self.mean_qp >= QP_LOW
        if not wants_more or not demand:
            self.trim = 1.0
            return
        self.trim = min(MAX_TRIM, max(1.0, told_bps / demand))

    def _aim(self) -> int:
        """What libx264 is told: the target, but no more than OUTPUT_HEADROOM x what it
        produced lately. x264's ABR banks what it did not spend and spends it later: a
        simple picture under a high target banks seconds of bits, and when the link
        narrows the encoder keeps sending them, whatever its new target."""
        aim = self.target_bps
        if self.output_bps is not None:
            aim = min(aim, max(MIN_TARGET_BPS, OUTPUT_HEADROOM * self.output_bps))
        return int(aim)

    def _not_following(self) -> bool:
        """Whether libx264 has kept producing well over its aim for NOT_FOLLOWING_S, the
        frames the dropper skipped counted in: it is spending bits it banked under a higher
        target, or it kept the higher rate it was opened at, and only a new context forgets
        that (one IDR: the least disruptive way PyAV leaves, measured in docs/video.md).
        Its aim over the same window counts too: a context that follows a fall within a
        frame still shows the higher rate in a window that spans the fall."""
        demand = self._demand_bps()
        if not self.adaptive or demand is None:
            return False
        asked = max(self._aim(), self.asked_bps or 0.0)
        if not self._overshooting.held(demand > OVERSHOOT * asked, self._clock(), NOT_FOLLOWING_S):
            return False
        logger.info(
            "libx264 kept to %.0f kbit/s for a %.0f kbit/s target: reopening it",
            demand / 1000,
            self._aim() / 1000,
        )
        self.reopens += 1
        return True

    def _demand_bps(self) -> float | None:
        """What libx264 would send without the frame dropper: its output over the last
        OUTPUT_WINDOW_S, scaled by the frames offered over the frames it encoded."""
        if self.output_bps is None:
            return None
        now = self._clock()
        while self._dropped and self._dropped[0] < now - OUTPUT_WINDOW_S:
            self._dropped.popleft()
        encoded = len(self._output)
        return self.output_bps * (encoded + len(self._dropped)) / max(1, encoded)

    def _keyframe_too_big(self) -> bool:
        """Whether a keyframe asked for now would be sized for a rate well above today's
        target: the VBV buffer, the most it may weigh, was set when the context opened, and
        a keyframe bigger than the bottleneck's queue loses its tail there (the receiver then
        waits for the next one, seconds with PLIs rate-limited). A new context sized for the
        target starts with a keyframe of its own."""
        opened = self._opened_bps
        return (
            self.adaptive
            and self._force_keyframe
            and opened is not None
            and opened >= PINNED_BELOW * self.target_bps
        )

    def _pinned_below_target(self) -> bool:
        """Whether libx264 is held near the rate it was opened at, well under its target now
        (see PINNED_BELOW), and under what it was aimed at: the VBV buffer, sized when the
        context opened, lets it follow only so far up; a new context (one IDR) takes more."""
        opened = self._opened_bps
        output, asked = self.output_bps, self.asked_bps
        if not self.adaptive or output is None or asked is None or opened is None:
            return False
        pinned = (
            self.target_bps >= PINNED_BELOW * opened
            and output >= PINNED_USING * opened
            and output < PINNED_USING * asked
        )
        if not self._pinned.held(pinned, self._clock(), NOT_FOLLOWING_S):
            return False
        logger.info(
            "libx264 opened at %.0f kbit/s stays there under a %.0f kbit/s target: reopening it",
            opened / 1000,
            self.target_bps / 1000,
        )
        self.reopens += 1
        return True

    def _keep(self, frame: av.VideoFrame, fps_share: float) -> bool:
        """Thin the frame rate to `fps_share` of the source's, by timestamps."""
        if fps_share >= 1.0 or frame.pts is None or frame.time_base is None:
            self._last_kept_s = None
            return True
        at = float(frame.pts * frame.time_base)
        interval = 1.0 / (self.fps * fps_share)
        # half a source frame of slack: timestamps jitter around the ideal grid
        if self._last_kept_s is not None and at - self._last_kept_s < interval - 0.5 / self.fps:
            return False
        self._last_kept_s = at
        return True

    def _rung_fps(self) -> float:
        return self.fps * (self.ladder.rung.fps_share if self.ladder is not None else 1.0)

    def _open(self, size: tuple[int, int]) -> av.video.codeccontext.VideoCodecContext:
        ceiling = self.options.bitrate
        if self.ladder is not None:
            ceiling = int(min(ceiling, self.ladder.ceiling_bps))
        fps = self._rung_fps()
        bitrate = int(self.target_bps) if self.adaptive else None
        buffer_bits = None
        if bitrate is not None:
            # the link's rate, not the rung's ceiling, decides what a keyframe may weigh
            buffer_bits = int(max(ADAPTIVE_BUFFER_S * bitrate, MIN_BUFFER_FRAMES * bitrate / fps))
        # libx264 opens as CBR at the ceiling, aimed at the target: it then follows
        # `bit_rate` both ways, up to the ceiling, without a new context (see H264Encoder)
        self._codec, name = open_h264_encoder(
            size[0],
            size[1],
            fps,
            self.options,
            bitrate=bitrate,
            max_rate=ceiling,
            buffer_bits=buffer_bits,
            follow=self.adaptive,
        )
        self._opened_for = size
        self._opened_fps = fps
        self._opened_bps = float(bitrate) if bitrate is not None else None
        self._overshooting.reset()
        self._pinned.reset()
        self._output.clear()
        self._output_bytes = 0
        self._asked_sum = 0.0
        self._told_sum = 0.0
        self.asked_bps = None
        self._dropped.clear()
        self.output_bps = None
        self._qps.clear()  # another picture size: its quantisers are another story
        self.mean_qp = None
        if self._on_open is not None:
            self._on_open(name)
        return self._codec


def make_encoding_track(source: MediaStreamTrack, encoder: H264Encoder) -> MediaStreamTrack:
    """Wrap a raw-frame track into one that yields H.264 packets from `encoder`."""
    from aiortc.mediastreams import MediaStreamTrack

    class H264EncodingTrack(MediaStreamTrack):
        kind = "video"

        def __init__(self) -> None:
            super().__init__()
            self._source = source
            self._pending: list[av.Packet[Any]] = []

        def request_keyframe(self) -> None:
            encoder.request_keyframe()

        async def recv(self) -> av.Packet[Any]:
            loop = asyncio.get_running_loop()
            while not self._pending:
                # the raw tracks hand out frames only
                frame = cast("av.VideoFrame", await self._source.recv())
                # encoding is CPU work that would stall the event loop; PyAV releases the GIL
                self._pending = await loop.run_in_executor(None, encoder.encode, frame)
            packet = self._pending.pop(0)
            packet.time_base = VIDEO_TIME_BASE
            return packet

        def stop(self) -> None:
            super().stop()
            self._source.stop()

    return H264EncodingTrack()
