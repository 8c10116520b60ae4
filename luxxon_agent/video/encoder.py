"""Our own H.264 encoder stage, so bitrate cap, keyframe interval and the encoder are ours.

aiortc's built-in H.264 encoder is libx264 with fixed settings (bitrate 0.5-3
Mbit/s, no keyframe interval, software only). This track encodes raw frames
with PyAV itself and hands aiortc finished Annex B packets, which aiortc only
packetizes (the same path as passthrough). Keyframe requests (PLI/FIR) from
the receiver are honoured through `request_keyframe()`.
"""

from __future__ import annotations

import asyncio
import fractions
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from luxxon_agent.errors import MediaError

if TYPE_CHECKING:
    import av
    from aiortc.mediastreams import MediaStreamTrack

logger = logging.getLogger(__name__)

VIDEO_TIME_BASE = fractions.Fraction(1, 90000)
HARDWARE_H264_ENCODERS = ("h264_v4l2m2m",)
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
    width: int, height: int, fps: float, options: VideoOptions
) -> tuple[av.video.codeccontext.VideoCodecContext, str]:
    """An opened H.264 encoder context and its name; hardware first when allowed."""
    import av

    names = ["libx264"]
    if options.encoder == "auto":
        names = [n for n in HARDWARE_H264_ENCODERS if n not in _UNUSABLE] + ["libx264"]
    elif options.encoder != "libx264":
        names = [options.encoder]
    failures: list[str] = []
    for name in names:
        try:
            codec = av.CodecContext.create(name, "w")
            codec.width = width
            codec.height = height
            codec.pix_fmt = "yuv420p"
            codec.time_base = VIDEO_TIME_BASE
            codec.framerate = fractions.Fraction(round(fps * 1000), 1000)
            codec.bit_rate = options.bitrate
            codec.gop_size = max(1, round(options.keyframe_interval * fps))
            codec.max_b_frames = 0
            opts: dict[str, str] = {
                "maxrate": str(options.bitrate),
                "bufsize": str(options.bitrate),
            }
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
        except (av.FFmpegError, ValueError, OSError) as exc:
            failures.append(f"{name}: {exc}")
            if options.encoder == "auto":
                _UNUSABLE.add(name)
            continue
        if failures:
            logger.info("H.264 encoder %s in use (%s)", name, "; ".join(failures))
        return codec, name
    raise MediaError("no H.264 encoder could be opened: " + "; ".join(failures))


def make_encoding_track(
    source: MediaStreamTrack, fps: float, options: VideoOptions, on_encoder: Any = None
) -> MediaStreamTrack:
    """Wrap a raw-frame track into one that yields H.264 packets."""
    from aiortc.mediastreams import MediaStreamTrack

    class H264EncodingTrack(MediaStreamTrack):
        kind = "video"

        def __init__(self) -> None:
            super().__init__()
            self._source = source
            self._codec: Any = None
            self._size: tuple[int, int] | None = None
            self._force_keyframe = False
            self._pending: list[av.Packet] = []

        def request_keyframe(self) -> None:
            self._force_keyframe = True

        async def recv(self) -> av.Packet:
            import av

            loop = asyncio.get_running_loop()
            while not self._pending:
                frame = await self._source.recv()
                if frame.format.name != "yuv420p":
                    frame = frame.reformat(format="yuv420p")
                if self._size != (frame.width, frame.height):
                    self._codec, name = open_h264_encoder(frame.width, frame.height, fps, options)
                    self._size = (frame.width, frame.height)
                    if on_encoder is not None:
                        on_encoder(name)
                frame.pict_type = (
                    av.video.frame.PictureType.I
                    if self._force_keyframe
                    else av.video.frame.PictureType.NONE
                )
                self._force_keyframe = False
                # encoding is CPU work that would stall the event loop; PyAV releases the GIL
                self._pending = await loop.run_in_executor(None, self._codec.encode, frame)
            packet = self._pending.pop(0)
            packet.time_base = VIDEO_TIME_BASE
            return packet

        def stop(self) -> None:
            super().stop()
            self._source.stop()

    return H264EncodingTrack()
