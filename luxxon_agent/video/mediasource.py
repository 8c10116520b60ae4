"""Media sources by URL: testsrc://, file://, v4l2://, rtsp://, and optional alsa:// audio.

A `MediaSource` is opened once per publisher and outlives its peer
connections: each connection takes fresh tracks from `video_track()` /
`audio_track()` (aiortc stops a track when its sender stops), fed from one
reader through a `MediaRelay`, so a reconnect does not reopen the camera.

`kind` says what `video_track()` yields: `raw` frames (the publisher encodes
them) or `h264` packets sent untouched (passthrough).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import parse_qs, urlsplit

from luxxon_agent.clock import SYSTEM_CLOCK, Clock
from luxxon_agent.errors import MediaError
from luxxon_agent.secret import strip_userinfo
from luxxon_agent.video.h264 import (
    NAL_SPS,
    START_CODE,
    H264Profile,
    find_profile,
    nal_type,
    parameter_sets,
    split_annexb,
)
from luxxon_agent.video.testsrc import TIME_BASE, VIDEO_CLOCK_RATE, TestSource

if TYPE_CHECKING:
    import av
    from aiortc.mediastreams import MediaStreamTrack

logger = logging.getLogger(__name__)

SCHEMES = ("testsrc", "file", "v4l2", "rtsp", "rtsps")


@dataclass
class MediaSource:
    """An opened source. Call `close()` once when the publisher is done."""

    url_kind: str
    """The URL scheme (testsrc, file, v4l2, rtsp)."""
    kind: str
    """`raw` (frames to encode) or `h264` (packets passed through)."""
    fps: float
    profile: H264Profile | None = None
    """The camera's SPS profile when passing through."""
    transcode_reason: str | None = None
    """Why an H.264 camera is decoded and re-encoded instead of passed through."""
    _make_video: Any = field(default=None, repr=False)
    _make_audio: Any = field(default=None, repr=False)
    _closers: list[Any] = field(default_factory=list, repr=False)

    def video_track(self) -> MediaStreamTrack:
        """A new video track for one peer connection."""
        track: MediaStreamTrack = self._make_video()
        return track

    def audio_track(self) -> MediaStreamTrack | None:
        """A new audio track for one peer connection, or None without audio."""
        return self._make_audio() if self._make_audio else None

    async def close(self) -> None:
        closers, self._closers = self._closers, []
        for close in closers:
            close()


def _query(url: str) -> tuple[Any, dict[str, str]]:
    parts = urlsplit(url)
    return parts, {k: v[-1] for k, v in parse_qs(parts.query).items()}


def _size(value: str | None, default: tuple[int, int]) -> tuple[int, int]:
    if not value:
        return default
    try:
        width, height = (int(x) for x in value.lower().split("x"))
    except ValueError:
        raise MediaError(f"bad size {value!r}: use WIDTHxHEIGHT") from None
    return width, height


def _pts_normaliser() -> Any:
    """A function mapping (pts, time_base) to strictly increasing 90 kHz timestamps.

    Files that loop and cameras that restart jump back in time; the encoder
    and the RTP timestamps need time that only moves forward.
    """
    state = {"offset": 0, "last": -1}

    def normalise(pts: int | None, time_base: Any, step: int) -> int:
        raw = 0 if pts is None or time_base is None else int(pts * time_base * VIDEO_CLOCK_RATE)
        out = raw + state["offset"]
        if out <= state["last"]:
            state["offset"] += state["last"] + step - out
            out = state["last"] + step
        state["last"] = out
        return out

    return normalise


def _raw_track_class() -> Any:
    from aiortc.mediastreams import MediaStreamTrack

    class RawVideoTrack(MediaStreamTrack):
        """Frames from `next_frame()` with strictly increasing 90 kHz pts."""

        kind = "video"

        def __init__(self, next_frame: Any, fps: float, on_stop: Any = None) -> None:
            super().__init__()
            self._next_frame = next_frame
            self._normalise = _pts_normaliser()
            self._step = int(VIDEO_CLOCK_RATE / fps)
            self._on_stop = on_stop

        async def recv(self) -> Any:
            frame = await self._next_frame()
            frame.pts = self._normalise(frame.pts, frame.time_base, self._step)
            frame.time_base = TIME_BASE
            return frame

        def stop(self) -> None:
            super().stop()
            if self._on_stop is not None:
                self._on_stop()
                self._on_stop = None

    return RawVideoTrack


def _passthrough_track_class() -> Any:
    from aiortc.mediastreams import MediaStreamTrack

    class H264PassthroughTrack(MediaStreamTrack):
        """Encoded packets from a camera, made fit for RTP without decoding.

        MP4 length-prefixed NAL units become Annex B; SPS/PPS from the
        container are put in front of keyframes that lack them; nothing is
        sent before the first keyframe; timestamps only move forward.
        """

        kind = "video"

        def __init__(self, relayed: MediaStreamTrack, headers: bytes, avcc: bool, fps: float):
            super().__init__()
            self._relayed = relayed
            self._headers = headers
            self._avcc = avcc
            self._normalise = _pts_normaliser()
            self._step = int(VIDEO_CLOCK_RATE / fps)
            self._started = False

        async def recv(self) -> Any:
            import av

            while True:
                # a player opened with decode=False hands out packets only
                packet = cast("av.Packet[Any]", await self._relayed.recv())
                if packet.is_keyframe:
                    self._started = True
                if self._started:
                    break
            data = bytes(packet)
            if self._avcc:
                data = _avcc_packet_to_annexb(data)
            if packet.is_keyframe and self._headers:
                if not any(nal_type(u) == NAL_SPS for u in split_annexb(data)):
                    data = self._headers + data
            out = av.Packet(data)
            out.is_keyframe = packet.is_keyframe
            out.pts = self._normalise(packet.pts, packet.time_base, self._step)
            out.time_base = TIME_BASE
            return out

        def stop(self) -> None:
            super().stop()
            self._relayed.stop()

    return H264PassthroughTrack


def _avcc_packet_to_annexb(data: bytes) -> bytes:
    out = bytearray()
    pos = 0
    while pos + 4 <= len(data):
        size = int.from_bytes(data[pos : pos + 4], "big")
        out += START_CODE + data[pos + 4 : pos + 4 + size]
        pos += 4 + size
    return bytes(out)


async def _open_player(
    target: str, fmt: str | None, options: dict[str, str], *, decode: bool
) -> Any:
    from aiortc.contrib.media import MediaPlayer

    try:
        # av.open blocks (an RTSP handshake can take seconds): keep it off the event loop
        return await asyncio.to_thread(
            MediaPlayer, target, format=fmt, options=options, decode=decode
        )
    except Exception as exc:
        import av

        if not isinstance(exc, OSError | ValueError | AssertionError | av.FFmpegError):
            raise
        # `from None`: the original exception quotes the URL with its password
        raise MediaError(f"cannot open media source: {strip_userinfo(str(exc))}") from None


def _player_stream(player: Any) -> Any:
    # MediaPlayer keeps its container private; the stream's codec facts are needed
    container = player._MediaPlayer__container
    return container.streams.video[0] if container.streams.video else None


def _stream_fps(stream: Any, fallback: float) -> float:
    """The stream's own frame rate when it states one, else the requested rate."""
    if stream is None:
        return fallback
    return float(stream.average_rate or stream.guessed_rate or fallback)


def _relay_source(video: MediaStreamTrack, relay: Any, fps: float) -> Any:
    raw_cls = _raw_track_class()

    def make() -> Any:
        # unbuffered: a slow encoder skips to the newest frame instead of falling behind
        proxy = relay.subscribe(video, buffered=False)
        return raw_cls(proxy.recv, fps, on_stop=proxy.stop)

    return make


def _stop_player(player: Any) -> Any:
    def close() -> None:
        for track in (player.video, player.audio):
            if track is not None:
                track.stop()

    return close


def _looping_video(player: Any, reopen: Callable[[], Awaitable[Any]]) -> MediaStreamTrack:
    """`player`'s video, played again from the start by a fresh player at each end.

    aiortc's own `loop` seeks back inside the same player, whose real-time pacing
    then compares the restarted timestamps with the first pass's start and stops
    waiting: a looping file went out at 75-90 fps. A new player paces each pass
    from its own first frame; `_pts_normaliser` keeps the timestamps going forward.
    """
    from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

    class LoopingTrack(MediaStreamTrack):
        kind = "video"

        def __init__(self) -> None:
            super().__init__()
            self._player = player

        async def recv(self) -> Any:
            while True:
                try:
                    return await self._player.video.recv()
                except MediaStreamError:
                    if self.readyState != "live":
                        raise
                    _stop_player(self._player)()
                    self._player = await reopen()

        def stop(self) -> None:
            super().stop()
            _stop_player(self._player)()

    return LoopingTrack()


async def _open_player_source(
    url_kind: str,
    target: str,
    fmt: str | None,
    options: dict[str, str],
    fps: float,
    *,
    passthrough: bool,
    max_level: int | None,
    loop: bool = False,
) -> MediaSource:
    from aiortc.contrib.media import MediaRelay

    relay = MediaRelay()
    reason: str | None = None

    def video_of(player: Any, decode: bool) -> tuple[MediaStreamTrack, Callable[[], None]]:
        """The player's video track, looping when asked, and how to close it all."""
        if not loop:
            return player.video, _stop_player(player)
        looping = _looping_video(player, lambda: _open_player(target, fmt, options, decode=decode))
        return looping, looping.stop

    if passthrough:
        player = await _open_player(target, fmt, options, decode=False)
        stream = _player_stream(player)
        if player.video is None or stream is None:
            _stop_player(player)()
            reason = "the source's video is not H.264 or VP8"
        else:
            extradata = bytes(stream.codec_context.extradata or b"")
            headers = parameter_sets(extradata)
            profile = find_profile(headers)
            if stream.codec_context.name != "h264":
                reason = f"the source sends {stream.codec_context.name}, not H.264"
            elif profile is None:
                reason = "the source's SPS is not in its description, so it cannot be checked"
            else:
                reason = profile.passthrough_refusal(max_level)
            if reason is None:
                assert profile is not None
                stream_fps = _stream_fps(stream, fps)
                track_cls = _passthrough_track_class()
                avcc = extradata[:1] == b"\x01"
                video, close = video_of(player, decode=False)

                def make() -> Any:
                    # buffered: a dropped packet would corrupt the picture until the next IDR
                    proxy = relay.subscribe(video, buffered=True)
                    return track_cls(proxy, headers, avcc, stream_fps)

                logger.info("passing H.264 %s through untouched", profile.profile_level_id)
                return MediaSource(
                    url_kind,
                    "h264",
                    stream_fps,
                    profile=profile,
                    _make_video=make,
                    _closers=[close],
                )
            _stop_player(player)()
        logger.warning("transcoding instead of passthrough: %s", reason)
    player = await _open_player(target, fmt, options, decode=True)
    if player.video is None:
        _stop_player(player)()
        raise MediaError("the source has no video stream")
    stream = _player_stream(player)
    stream_fps = _stream_fps(stream, fps)
    video, close = video_of(player, decode=True)
    return MediaSource(
        url_kind,
        "raw",
        stream_fps,
        transcode_reason=reason,
        _make_video=_relay_source(video, relay, stream_fps),
        _closers=[close],
    )


async def open_media_source(
    url: str,
    *,
    audio: str | None = None,
    max_level: int | None = None,
    clock: Clock = SYSTEM_CLOCK,
) -> MediaSource:
    """Open a video source by URL, and optionally an `alsa://DEVICE` audio source.

    testsrc://?size=1280x720&fps=30      synthetic, burned-in clock;
                                         `detail=high` makes it costly to encode
    file://clip.mp4?loop=1               a file (relative) or file:///abs/clip.mp4;
                                         `passthrough=1` sends its H.264 untouched
    v4l2:///dev/video0?size=1280x720&fps=30&format=mjpeg|h264|yuyv422
    rtsp://user:pass@camera/stream       H.264 passthrough when the SPS allows,
                                         `passthrough=0` to always transcode,
                                         `transport=udp` (default tcp)
    """
    parts, query = _query(url)
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise MediaError(f"unknown source scheme {scheme!r}: use one of {', '.join(SCHEMES)}")
    fps = float(query.get("fps", "30"))
    if scheme == "testsrc":
        width, height = _size(query.get("size"), (1280, 720))
        try:
            test = TestSource(width, height, fps, clock=clock, detail=query.get("detail", "low"))
        except ValueError as exc:
            raise MediaError(str(exc)) from None
        raw_cls = _raw_track_class()
        source = MediaSource(
            "testsrc", "raw", fps, _make_video=lambda: raw_cls(test.next_frame, fps)
        )
    elif scheme == "file":
        path = (parts.netloc + parts.path) or ""
        if not path:
            raise MediaError("file:// needs a path")
        source = await _open_player_source(
            "file",
            path,
            None,
            {},
            fps,
            passthrough=query.get("passthrough") == "1",
            max_level=max_level,
            loop=query.get("loop") == "1",
        )
    elif scheme == "v4l2":
        options = {"framerate": query.get("fps", "30")}
        if "size" in query:
            options["video_size"] = query["size"]
        fmt = query.get("format")
        if fmt:
            options["input_format"] = fmt
        source = await _open_player_source(
            "v4l2",
            parts.path,
            "v4l2",
            options,
            fps,
            passthrough=fmt == "h264",
            max_level=max_level,
        )
    else:
        bare = url.split("?", 1)[0]
        options = {"rtsp_transport": query.get("transport", "tcp")}
        source = await _open_player_source(
            "rtsp",
            bare,
            None,
            options,
            fps,
            passthrough=query.get("passthrough", "1") == "1",
            max_level=max_level,
        )
    if audio:
        await _attach_audio(source, audio)
    return source


async def _attach_audio(source: MediaSource, audio: str) -> None:
    from aiortc.contrib.media import MediaRelay

    parts, _ = _query(audio)
    if parts.scheme != "alsa":
        raise MediaError("audio source must be alsa://DEVICE (e.g. alsa://default)")
    player = await _open_player(parts.netloc or "default", "alsa", {}, decode=True)
    if player.audio is None:
        _stop_player(player)()
        raise MediaError(f"no audio from {strip_userinfo(audio)}")
    relay = MediaRelay()
    source._make_audio = lambda: relay.subscribe(player.audio, buffered=False)
    source._closers.append(_stop_player(player))
