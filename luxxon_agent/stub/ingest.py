"""The stub's real WHIP ingest: aiortc answers, decodes, keeps stats and the latest frame.

`WhipIngest` implements the stub's `VideoBackend` (stub/video.py). Each
session's input has an unguessable whipUrl (`/whip/<token>`, the URL is the
credential) and a whepUrl for viewers (`/whep/<token>`). A POST to the
whipUrl answers 201 with the SDP answer and a relative `Location`
(`/whip/<token>/<resource>`); a new POST replaces the previous peer
connection (a crashed publisher coming back); DELETE on the resource ends it.

Disconnect windows are the stretches without decoded media longer than
`gap_threshold`: from the input's creation to the first frame, and from any
frame to the next (publisher crashed, cut off, replaced, never came); a gap
still open when asked is reported up to "now" (or the close). An input that
never gets a frame is one window from its creation on.

With a store (`restore`, called by the stub at start), the ingest keeps in
the stub's SQLite what a restart must not forget: each input's creation, the
start of its current stretch without media (the last frame, written at most
once a second, at each window's close and at shutdown) and every closed
window. A restarted stub serves the same whipUrls again, and the time it was
down falls inside a window.

WHEP viewers get the latest decoded frames re-encoded by aiortc, and keep
playing across publisher reconnects. Every decoded frame is stamped once, on
arrival, on the input's own 90 kHz timeline; viewers then share it read-only.
Non-video tracks (a publisher's microphone) are read and discarded, so
aiortc's unbounded receive queue cannot grow.
"""

from __future__ import annotations

import asyncio
import fractions
import logging
import secrets
import sqlite3
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Request, Response

from luxxon_agent.clock import SYSTEM_CLOCK, Clock
from luxxon_agent.stub.store import ts
from luxxon_agent.stub.video import OpenInput, VideoInput

if TYPE_CHECKING:
    import av
    from aiortc import RTCPeerConnection

    from luxxon_agent.stub.config import StubConfig
    from luxxon_agent.stub.store import Store

logger = logging.getLogger(__name__)

SDP = "application/sdp"
VIDEO_CLOCK = 90000
TIME_BASE = fractions.Fraction(1, VIDEO_CLOCK)
"""RTP video clock rate: the time base of the ingest's frame timestamps."""
SAVE_EVERY_S = 1.0
"""How stale the stored start of an input's quiet stretch may get while frames flow."""

SCHEMA = """
CREATE TABLE IF NOT EXISTS ingest_inputs (
    ref TEXT PRIMARY KEY,
    session_id TEXT NOT NULL,
    created_at TEXT NOT NULL,
    quiet_since TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS ingest_windows (
    ref TEXT NOT NULL REFERENCES ingest_inputs(ref),
    started_at TEXT NOT NULL,
    ended_at TEXT NOT NULL,
    PRIMARY KEY (ref, started_at)
);
"""
"""The ingest's tables in the stub's database: enough to rebuild an input after a restart."""


class _BadOffer(Exception):
    """The POSTed SDP could not be used; answered with 400."""


@dataclass(frozen=True)
class IngestStats:
    """Per-input numbers for tests, benchmarks and the session page."""

    frames: int
    keyframes: int
    """Keyframes received, counted from the encoded frames (VP8 frame tag, H.264 IDR)."""
    first_frame_at: datetime | None
    last_frame_at: datetime | None
    bytes_received: int
    """Bytes on the current publisher connection's transport (RTP and RTCP)."""
    bitrate_bps: float
    """Over the current publisher connection, since it started sending."""
    publishers: int
    """How many publisher connections this input has had."""
    width: int | None
    height: int | None


@dataclass
class _Input:
    ref: str
    session_id: str
    whip_token: str
    whep_token: str
    created_at: datetime
    quiet_since: datetime
    """Start of the current stretch without media: the last frame, or the creation before one."""
    saved_quiet_since: datetime | None = None
    """`quiet_since` as last written to the store (None: not written)."""
    pc: RTCPeerConnection | None = None
    resource: str | None = None
    publishers: int = 0
    frames: int = 0
    keyframes: int = 0
    first_frame_at: datetime | None = None
    connection_started: float | None = None
    windows: list[tuple[datetime, datetime]] = field(default_factory=list)
    closed_at: datetime | None = None
    latest: av.VideoFrame | None = None
    media_epoch: float | None = None
    """Event-loop time of the first frame: zero of the input's frame timeline."""
    last_pts: int = -1

    @property
    def last_frame_at(self) -> datetime | None:
        """`quiet_since` moves to every frame's arrival, so after the first frame it is the last."""
        return self.quiet_since if self.first_frame_at is not None else None

    keyframes_from_encoded: bool = False
    """The current connection counts keyframes from encoded frames (_count_encoded_keyframes)."""
    latest_jpeg: bytes | None = None
    new_frame: asyncio.Event = field(default_factory=asyncio.Event)
    frame_listeners: list[Any] = field(default_factory=list)
    viewers: dict[str, RTCPeerConnection] = field(default_factory=dict)
    consumers: set[asyncio.Task[None]] = field(default_factory=set)


class WhipIngest:
    """A WHIP endpoint per session input, served by `router` (mounted at the app root)."""

    def __init__(
        self,
        public_base_url: str,
        *,
        clock: Clock = SYSTEM_CLOCK,
        gap_threshold: float = 2.0,
    ) -> None:
        self._base = public_base_url.rstrip("/")
        self._clock = clock
        self._gap = gap_threshold
        self._store: Store | None = None
        self._inputs: dict[str, _Input] = {}
        self._by_whip: dict[str, _Input] = {}
        self._by_whep: dict[str, _Input] = {}
        self.router = self._make_router()

    # -- VideoBackend ---------------------------------------------------------------------

    def create_input(self, session_id: str) -> VideoInput:
        ref = f"vin_{secrets.token_hex(8)}"
        now = self._clock.now()
        entry = _Input(
            ref,
            session_id,
            secrets.token_urlsafe(24),
            secrets.token_urlsafe(24),
            created_at=now,
            quiet_since=now,
        )
        self._register(entry)
        self._save(entry, insert=True)
        return VideoInput(
            ref=ref,
            whip_url=f"{self._base}/whip/{entry.whip_token}",
            whep_url=f"{self._base}/whep/{entry.whep_token}",
        )

    async def close_input(self, ref: str) -> None:
        entry = self._inputs.get(ref)
        if entry is None or entry.closed_at is not None:
            return
        entry.closed_at = self._clock.now()
        self._by_whip.pop(entry.whip_token, None)
        self._by_whep.pop(entry.whep_token, None)
        await self._drop_publisher(entry)
        for pc in list(entry.viewers.values()):
            await pc.close()
        entry.viewers.clear()
        # at shutdown this is what the next start measures the down time from
        if entry.saved_quiet_since != entry.quiet_since:
            self._save(entry)

    def disconnect_windows(self, ref: str) -> list[tuple[datetime, datetime]]:
        entry = self._inputs.get(ref)
        if entry is None:
            return []
        windows = list(entry.windows)
        end = entry.closed_at or self._clock.now()
        if (end - entry.quiet_since).total_seconds() > self._gap:
            windows.append((entry.quiet_since, end))
        return windows

    def latest_frame_jpeg(self, ref: str) -> bytes | None:
        entry = self._inputs.get(ref)
        if entry is None or entry.latest is None:
            return None
        if entry.latest_jpeg is None:
            entry.latest_jpeg = _encode_jpeg(entry.latest)
        return entry.latest_jpeg

    def restore(self, store: Store, open_inputs: Sequence[OpenInput]) -> None:
        """Keep state in `store` from now on, and serve `open_inputs` again: their whipUrls
        accept a new publisher, and their windows and quiet stretch continue where the
        store left them, so the time the stub was down counts as disconnected."""
        self._store = store
        store.apply_schema(SCHEMA)
        restored = 0
        for item in open_inputs:
            ref = item.video.ref
            whip = _token(item.video.whip_url, "whip")
            whep = _token(item.video.whep_url, "whep")
            if whip is None or whep is None or ref in self._inputs:
                logger.warning("video input %s: not an input this ingest can serve", ref)
                continue
            row = store.one(
                "SELECT created_at, quiet_since FROM ingest_inputs WHERE ref = ?", (ref,)
            )
            if row is None:
                # minted by a build that kept nothing: quiet since it was created
                created = quiet = item.created_at
            else:
                created = datetime.fromisoformat(row["created_at"])
                quiet = datetime.fromisoformat(row["quiet_since"])
            entry = _Input(ref, item.session_id, whip, whep, created_at=created, quiet_since=quiet)
            entry.windows = [
                (datetime.fromisoformat(w["started_at"]), datetime.fromisoformat(w["ended_at"]))
                for w in store.all(
                    "SELECT started_at, ended_at FROM ingest_windows WHERE ref = ?"
                    " ORDER BY started_at",
                    (ref,),
                )
            ]
            self._register(entry)
            if row is None:
                self._save(entry, insert=True)
            else:
                entry.saved_quiet_since = quiet
            restored += 1
        if restored:
            logger.info("video: %d open input(s) restored", restored)

    # -- beyond the protocol: stats and fault injection for tests and the demo ----------

    async def stats(self, ref: str) -> IngestStats | None:
        entry = self._inputs.get(ref)
        if entry is None:
            return None
        received = 0
        if entry.pc is not None:
            # aiortc's inbound-rtp has no byte count; the DTLS transport's (media + RTCP) does
            for stat in (await entry.pc.getStats()).values():
                if stat.type == "transport":
                    received += stat.bytesReceived
        span = (
            self._clock.monotonic() - entry.connection_started
            if entry.connection_started is not None
            else 0.0
        )
        latest = entry.latest
        return IngestStats(
            frames=entry.frames,
            keyframes=entry.keyframes,
            first_frame_at=entry.first_frame_at,
            last_frame_at=entry.last_frame_at,
            bytes_received=received,
            bitrate_bps=received * 8 / span if span > 0 else 0.0,
            publishers=entry.publishers,
            width=latest.width if latest is not None else None,
            height=latest.height if latest is not None else None,
        )

    def add_frame_listener(self, ref: str, listener: Any) -> None:
        """Call `listener(frame, received_at)` for each decoded frame (benchmarks read clocks)."""
        self._inputs[ref].frame_listeners.append(listener)

    async def drop_publisher(self, ref: str) -> None:
        """Close the current publisher's peer connection, as a network cut would."""
        entry = self._inputs.get(ref)
        if entry is not None:
            await self._drop_publisher(entry)

    async def aclose(self) -> None:
        for ref in list(self._inputs):
            await self.close_input(ref)

    # -- internals ------------------------------------------------------------------------

    def _register(self, entry: _Input) -> None:
        self._inputs[entry.ref] = entry
        self._by_whip[entry.whip_token] = entry
        self._by_whep[entry.whep_token] = entry

    def _save(
        self,
        entry: _Input,
        window: tuple[datetime, datetime] | None = None,
        *,
        insert: bool = False,
    ) -> None:
        """Write the input's quiet stretch start (and a window that just closed) to the store.

        A failed write costs accuracy after a restart, never the stream: it is logged and
        retried with the next save.
        """
        entry.saved_quiet_since = entry.quiet_since
        if self._store is None:
            return
        try:
            with self._store.transaction() as conn:
                if insert:
                    conn.execute(
                        "INSERT INTO ingest_inputs"
                        " (ref, session_id, created_at, quiet_since) VALUES (?, ?, ?, ?)",
                        (entry.ref, entry.session_id, ts(entry.created_at), ts(entry.quiet_since)),
                    )
                else:
                    conn.execute(
                        "UPDATE ingest_inputs SET quiet_since = ? WHERE ref = ?",
                        (ts(entry.quiet_since), entry.ref),
                    )
                if window is not None:
                    conn.execute(
                        "INSERT OR REPLACE INTO ingest_windows (ref, started_at, ended_at)"
                        " VALUES (?, ?, ?)",
                        (entry.ref, ts(window[0]), ts(window[1])),
                    )
        except sqlite3.Error as exc:
            logger.warning(
                "video input %s: could not save its disconnect state: %s", entry.ref, exc
            )

    async def _drop_publisher(self, entry: _Input) -> None:
        pc, entry.pc, entry.resource = entry.pc, None, None
        entry.connection_started = None
        # every consumer belongs to the connection going away (a new one is made after this)
        consumers, entry.consumers = entry.consumers, set()
        for task in consumers:
            task.cancel()
        if consumers:
            await asyncio.wait(consumers)
        if pc is not None:
            await pc.close()

    async def _publish(self, entry: _Input, offer: str) -> tuple[str, str]:
        from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

        # a new POST is the publisher coming back: the old connection goes
        await self._drop_publisher(entry)
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        entry.pc = pc
        entry.publishers += 1
        entry.connection_started = self._clock.monotonic()

        @pc.on("track")
        def _on_track(track: Any) -> None:
            if track.kind == "video":
                work = self._consume(entry, pc, track)
            else:
                # unread, aiortc queues every decoded frame without bound (~190 KB/s of audio)
                work = _discard(track)
            task = asyncio.ensure_future(work)
            entry.consumers.add(task)
            task.add_done_callback(entry.consumers.discard)

        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
            # decoded frames do not always say they were keyframes (libvpx's never do), so
            # count encoded ones; receivers exist now and start decoding once connected
            entry.keyframes_from_encoded = _count_encoded_keyframes(pc, entry)
            await pc.setLocalDescription(await pc.createAnswer())
        except (ValueError, AssertionError) as exc:
            # aiortc's SDP parser reports a malformed offer with asserts and ValueErrors
            await self._drop_publisher(entry)
            raise _BadOffer(str(exc) or "malformed SDP offer") from exc
        entry.resource = secrets.token_urlsafe(12)
        return pc.localDescription.sdp, entry.resource

    async def _consume(self, entry: _Input, pc: RTCPeerConnection, track: Any) -> None:
        from aiortc.mediastreams import MediaStreamError

        loop = asyncio.get_running_loop()
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            if entry.pc is not pc:
                return
            now = self._clock.now()
            if entry.first_frame_at is None:
                entry.first_frame_at = now
            quiet_since, entry.quiet_since = entry.quiet_since, now
            if (now - quiet_since).total_seconds() > self._gap:
                window = (quiet_since, now)
                entry.windows.append(window)
                self._save(entry, window)
            elif (
                entry.saved_quiet_since is None
                or (now - entry.saved_quiet_since).total_seconds() >= SAVE_EVERY_S
            ):
                self._save(entry)
            entry.frames += 1
            if frame.key_frame and not entry.keyframes_from_encoded:
                entry.keyframes += 1
            # stamped once, before anyone else sees the frame: viewers share it read-only, and
            # the timeline runs on across publisher reconnects (each restarts RTP time at 0)
            if entry.media_epoch is None:
                entry.media_epoch = loop.time()
            entry.last_pts = max(
                round((loop.time() - entry.media_epoch) * VIDEO_CLOCK), entry.last_pts + 1
            )
            frame.pts = entry.last_pts
            frame.time_base = TIME_BASE
            entry.latest = frame
            entry.latest_jpeg = None
            entry.new_frame.set()
            entry.new_frame = asyncio.Event()
            for listener in list(entry.frame_listeners):
                listener(frame, now)

    async def _view(self, entry: _Input, offer: str) -> tuple[str, str]:
        from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
            for transceiver in pc.getTransceivers():
                if transceiver.kind == "video":
                    transceiver.direction = "sendonly"
                    pc.addTrack(_viewer_track(entry))
                    break
            await pc.setLocalDescription(await pc.createAnswer())
        except (ValueError, AssertionError) as exc:
            await pc.close()
            raise _BadOffer(str(exc) or "malformed SDP offer") from exc
        resource = secrets.token_urlsafe(12)
        entry.viewers[resource] = pc
        return pc.localDescription.sdp, resource

    def _make_router(self) -> APIRouter:
        router = APIRouter()

        def not_found() -> Response:
            return Response(
                status_code=404, content="no such WHIP/WHEP endpoint", media_type="text/plain"
            )

        async def answer_offer(
            entry: _Input | None,
            request: Request,
            negotiate: Callable[[_Input, str], Awaitable[tuple[str, str]]],
        ) -> Response:
            """WHIP and WHEP alike: 201 with `negotiate`'s SDP answer and its resource."""
            if entry is None:
                return not_found()
            if request.headers.get("content-type", "").split(";")[0].strip() != SDP:
                return Response(
                    status_code=415,
                    content="Content-Type must be application/sdp",
                    media_type="text/plain",
                )
            offer = (await request.body()).decode(errors="replace")
            if "m=" not in offer:
                return Response(
                    status_code=400, content="not an SDP offer", media_type="text/plain"
                )
            try:
                answer, resource = await negotiate(entry, offer)
            except _BadOffer as exc:
                return Response(status_code=400, content=str(exc), media_type="text/plain")
            return Response(
                status_code=201,
                content=answer,
                media_type=SDP,
                headers={"Location": f"{request.url.path}/{resource}"},
            )

        @router.post("/whip/{token}")
        async def whip_post(token: str, request: Request) -> Response:
            return await answer_offer(self._by_whip.get(token), request, self._publish)

        @router.delete("/whip/{token}/{resource}")
        async def whip_delete(token: str, resource: str) -> Response:
            entry = self._by_whip.get(token)
            if entry is None or entry.resource != resource:
                return not_found()
            await self._drop_publisher(entry)
            return Response(status_code=200)

        @router.post("/whep/{token}")
        async def whep_post(token: str, request: Request) -> Response:
            return await answer_offer(self._by_whep.get(token), request, self._view)

        @router.delete("/whep/{token}/{resource}")
        async def whep_delete(token: str, resource: str) -> Response:
            entry = self._by_whep.get(token)
            pc = entry.viewers.pop(resource, None) if entry is not None else None
            if pc is None:
                return not_found()
            await pc.close()
            return Response(status_code=200)

        return router


def _token(url: str, kind: str) -> str | None:
    """The token of a `…/<kind>/<token>` URL, or None for any other shape."""
    parts = urlsplit(url).path.split("/")
    if len(parts) >= 3 and parts[-2] == kind and parts[-1]:
        return parts[-1]
    return None


def _encode_jpeg(frame: av.VideoFrame) -> bytes:
    import av

    codec = av.CodecContext.create("mjpeg", "w")
    codec.width = frame.width
    codec.height = frame.height
    codec.pix_fmt = "yuvj420p"
    codec.time_base = frame.time_base or TIME_BASE
    # a yuvj420p frame comes back as itself: it is shared, so its pts is left alone
    image = frame.reformat(format="yuvj420p")
    packets = codec.encode(image) + codec.encode(None)
    return b"".join(bytes(p) for p in packets)


def _viewer_track(entry: _Input) -> Any:
    from aiortc.mediastreams import MediaStreamTrack

    class LatestFrameTrack(MediaStreamTrack):
        """The input's newest frames, whichever publisher connection they came from."""

        kind = "video"

        async def recv(self) -> Any:
            # the frame was stamped on arrival; it is not modified here (other viewers'
            # encoders may be reading it in aiortc's worker threads)
            await entry.new_frame.wait()
            frame = entry.latest
            assert frame is not None
            return frame

    return LatestFrameTrack()


async def _discard(track: Any) -> None:
    """Read a track to its end and drop every frame."""
    from aiortc.mediastreams import MediaStreamError

    while True:
        try:
            await track.recv()
        except MediaStreamError:
            return


def _count_encoded_keyframes(pc: RTCPeerConnection, entry: _Input) -> bool:
    """Count keyframes in the encoded frames handed to each video receiver's decoder.

    aiortc passes `(codec, encoded frame)` to its decoder thread through a queue
    that it fills from the event loop; wrapping that queue is the one place the
    encoded frames can be seen. It is a private attribute: when a future aiortc
    lacks it, this returns False and decoded `key_frame` flags are counted
    instead (right for H.264, always 0 for VP8).
    """
    import queue

    receivers = [t.receiver for t in pc.getTransceivers() if t.kind == "video"]
    attr = "_RTCRtpReceiver__decoder_queue"
    if not all(isinstance(getattr(r, attr, None), queue.Queue) for r in receivers):
        logger.warning("aiortc internals changed: keyframes are counted from decoded frames")
        return False

    class KeyframeCountingQueue(queue.Queue[Any]):
        def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
            if item is not None and _is_keyframe(item[0].name, item[1].data):
                entry.keyframes += 1
            super().put(item, block, timeout)

    for receiver in receivers:
        setattr(receiver, attr, KeyframeCountingQueue())
    return True


def _is_keyframe(codec: str, data: bytes) -> bool:
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


def create_video_backend(config: StubConfig) -> WhipIngest:
    """The stub's hook (`with_video=True`): a WhipIngest at the stub's public base URL.

    A stub served on a loopback origin keeps media on loopback too
    (`pin_ice_to_loopback`); on another origin aioice gathers the usual host
    candidates.
    """
    from luxxon_agent.video import pin_ice_to_loopback

    if urlsplit(config.public_base_url).hostname in ("127.0.0.1", "localhost", "::1"):
        pin_ice_to_loopback()
    return WhipIngest(config.public_base_url, clock=config.clock)
