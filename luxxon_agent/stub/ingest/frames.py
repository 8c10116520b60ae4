"""Decoded frames at the ingest: one timeline per input, the JPEG snapshot, keyframe
counting, the viewers' track and the reader that drops non-video media.

Every decoded frame is stamped once, on arrival, on the input's own 90 kHz
timeline; viewers then share it read-only, and the timeline runs on across
publisher reconnects (each connection restarts its RTP time at 0).
"""

from __future__ import annotations

import asyncio
import fractions
import logging
import queue
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import av
    from aiortc import RTCPeerConnection
    from aiortc.mediastreams import MediaStreamTrack

logger = logging.getLogger(__name__)

VIDEO_CLOCK = 90000
TIME_BASE = fractions.Fraction(1, VIDEO_CLOCK)
"""RTP video clock rate: the time base of the ingest's frame timestamps."""


class FrameTimeline:
    """The newest decoded frame of an input, stamped on the input's timeline."""

    def __init__(self) -> None:
        self.latest: av.VideoFrame | None = None
        self._jpeg: bytes | None = None
        self._epoch: float | None = None
        """Event-loop time of the first frame: zero of the timeline."""
        self._last_pts = -1
        self._new_frame = asyncio.Event()

    def stamp(self, frame: av.VideoFrame, loop_time: float) -> None:
        """Give `frame` the next pts on this timeline and make it the newest one."""
        if self._epoch is None:
            self._epoch = loop_time
        self._last_pts = max(round((loop_time - self._epoch) * VIDEO_CLOCK), self._last_pts + 1)
        frame.pts = self._last_pts
        frame.time_base = TIME_BASE
        self.latest = frame
        self._jpeg = None
        self._new_frame.set()
        self._new_frame = asyncio.Event()

    async def next_frame(self) -> av.VideoFrame:
        """Wait for the next frame stamped on this timeline."""
        await self._new_frame.wait()
        frame = self.latest
        assert frame is not None  # set before the event fires
        return frame

    def jpeg(self) -> bytes | None:
        """The newest frame as a JPEG (encoded once per frame), or None before the first."""
        if self.latest is None:
            return None
        if self._jpeg is None:
            self._jpeg = encode_jpeg(self.latest)
        return self._jpeg


def encode_jpeg(frame: av.VideoFrame) -> bytes:
    import av

    codec = av.CodecContext.create("mjpeg", "w")
    assert isinstance(codec, av.VideoCodecContext)
    codec.width = frame.width
    codec.height = frame.height
    codec.pix_fmt = "yuvj420p"
    codec.time_base = frame.time_base or TIME_BASE
    # a yuvj420p frame comes back as itself: it is shared, so its pts is left alone
    image = frame.reformat(format="yuvj420p")
    packets = codec.encode(image) + codec.encode(None)
    return b"".join(bytes(p) for p in packets)


def viewer_track(timeline: FrameTimeline) -> MediaStreamTrack:
    """A track of the input's newest frames, whichever publisher connection they came from."""
    from aiortc.mediastreams import MediaStreamTrack

    class LatestFrameTrack(MediaStreamTrack):
        kind = "video"

        async def recv(self) -> av.VideoFrame:
            # the frame was stamped on arrival; it is not modified here (other viewers'
            # encoders may be reading it in aiortc's worker threads)
            return await timeline.next_frame()

    return LatestFrameTrack()


async def discard(track: MediaStreamTrack) -> None:
    """Read a track to its end and drop every frame: unread, aiortc queues every
    decoded frame without bound (~190 KB/s of audio)."""
    from aiortc.mediastreams import MediaStreamError

    while True:
        try:
            await track.recv()
        except MediaStreamError:
            return


def count_encoded_keyframes(pc: RTCPeerConnection, on_keyframe: Callable[[], None]) -> bool:
    """Call `on_keyframe` for each keyframe handed to a video receiver's decoder.

    Decoded frames do not always say they were keyframes (libvpx's never do),
    so the encoded ones are counted. aiortc passes `(codec, encoded frame)` to
    its decoder thread through a queue it fills from the event loop; wrapping
    that queue is the one place the encoded frames can be seen. It is a
    private attribute: when a future aiortc lacks it, this returns False and
    the caller counts decoded `key_frame` flags instead (right for H.264,
    always 0 for VP8).
    """
    receivers = [t.receiver for t in pc.getTransceivers() if t.kind == "video"]
    attr = "_RTCRtpReceiver__decoder_queue"
    if not all(isinstance(getattr(r, attr, None), queue.Queue) for r in receivers):
        logger.warning("aiortc internals changed: keyframes are counted from decoded frames")
        return False

    class KeyframeCountingQueue(queue.Queue[Any]):
        def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
            if item is not None and is_keyframe(item[0].name, item[1].data):
                on_keyframe()
            super().put(item, block, timeout)

    for receiver in receivers:
        setattr(receiver, attr, KeyframeCountingQueue())
    return True


def is_keyframe(codec: str, data: bytes) -> bool:
    """Whether an encoded (depayloaded) frame is a keyframe."""
    if codec == "VP8":
        # RFC 6386 9.1: bit 0 of the frame tag is 0 on a key frame
        return bool(data) and not data[0] & 0x01
    if codec == "H264":
        # Annex B, as aiortc depayloads it: a keyframe carries an IDR slice (NAL type 5)
        at = data.find(b"\x00\x00\x01")
        while at != -1 and at + 3 < len(data):
            if data[at + 3] & 0x1F == 5:
                return True
            at = data.find(b"\x00\x00\x01", at + 3)
    return False
