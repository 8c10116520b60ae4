"""The state of one ingest input, and the read-only views the ingest hands out.

An input has at most one live publisher connection and at most one pending
one: a newly accepted offer waits beside the live publisher until its first
decoded frame, and only then replaces it, so an offer that never delivers
media (a stray client, a fuzzer, a publisher that dies mid-handshake) cannot
knock a working publisher off its whipUrl.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from luxxon_agent.stub.ingest.frames import FrameTimeline
from luxxon_agent.stub.ingest.store import Window

if TYPE_CHECKING:
    from aiortc import RTCPeerConnection

FrameListener = Any
"""`listener(frame, received_at)`, called for each decoded frame."""


@dataclass(eq=False)
class PublisherConnection:
    """One publisher's peer connection and the tasks reading its tracks."""

    pc: RTCPeerConnection | None
    """None for a track attached directly (`WhipIngest.attach_track`)."""
    resource: str
    """The WHIP resource of this connection (`Location: …/<resource>`)."""
    started: float
    """Monotonic clock time the offer was accepted."""
    video_codecs: tuple[str, ...] = ()
    keyframes: int = 0
    keyframes_from_encoded: bool = False
    readers: set[asyncio.Task[None]] = field(default_factory=set)
    expiry: asyncio.TimerHandle | None = None
    """While pending: the timer that gives up on it."""

    def read(self, work: Any, running: set[asyncio.Task[None]]) -> None:
        """Run `work` (a track reader) as one of this connection's tasks; it is also in
        `running` (the input's) until it finishes."""
        task: asyncio.Task[None] = asyncio.ensure_future(work)
        self.readers.add(task)
        running.add(task)
        task.add_done_callback(self.readers.discard)
        task.add_done_callback(running.discard)

    async def close(self) -> None:
        """Stop the readers, then close the peer connection."""
        if self.expiry is not None:
            self.expiry.cancel()
        readers, self.readers = self.readers, set()
        current = asyncio.current_task()
        for task in readers:
            if task is not current:
                task.cancel()
        waiting = [task for task in readers if task is not current]
        if waiting:
            await asyncio.wait(waiting)
        if self.pc is not None:
            await self.pc.close()


@dataclass(eq=False)
class InputState:
    """Everything the ingest holds for one input; only WhipIngest changes it."""

    ref: str
    session_id: str
    whip_token: str = field(repr=False)
    whep_token: str = field(repr=False)
    created_at: datetime
    quiet_since: datetime
    """Start of the current stretch without media: the last frame, or the creation before one."""
    saved_quiet_since: datetime | None = None
    """`quiet_since` as last written to the store (None: not written)."""
    publisher: PublisherConnection | None = None
    pending: PublisherConnection | None = None
    publishers: int = 0
    """Publisher connections that have been live on this input."""
    offers: int = 0
    """Publisher offers accepted (answered 201), live or not."""
    frames: int = 0
    keyframes_before: int = 0
    """Keyframes of the publisher connections that are gone."""
    first_frame_at: datetime | None = None
    windows: list[Window] = field(default_factory=list)
    closed_at: datetime | None = None
    timeline: FrameTimeline = field(default_factory=FrameTimeline)
    frame_listeners: list[FrameListener] = field(default_factory=list)
    viewers: dict[str, RTCPeerConnection] = field(default_factory=dict)
    reading: set[asyncio.Task[None]] = field(default_factory=set)
    """Every track reader of the input's connections that has not finished."""

    @property
    def last_frame_at(self) -> datetime | None:
        """`quiet_since` moves to every frame's arrival, so after the first frame it is the last."""
        return self.quiet_since if self.first_frame_at is not None else None

    @property
    def keyframes(self) -> int:
        live = self.publisher.keyframes if self.publisher is not None else 0
        return self.keyframes_before + live


@dataclass(frozen=True)
class InputView:
    """A read-only snapshot of one input, for tests, the stub's pages and liveness."""

    ref: str
    session_id: str
    connected: bool
    """A publisher connection is live on the input."""
    pc_state: str | None
    """aiortc's connectionState of the live publisher connection (None without one, or for
    an attached track)."""
    pending: bool
    """A newly accepted offer is waiting for its first frame beside the live publisher."""
    publishers: int
    """Publisher connections that have been live (a new one counts from its first frame)."""
    offers: int
    """Publisher offers accepted (answered 201), including ones that never sent media."""
    frames: int
    """Decoded video frames received, over every publisher connection."""
    keyframes: int
    first_frame_at: datetime | None
    last_frame_at: datetime | None
    offer_video_codecs: tuple[str, ...]
    """Decodable video codecs the live publisher's offer carried (H264, VP8)."""
    readers: int
    """Unfinished tasks reading publisher tracks (video and any audio), of any connection."""
    viewers: int
    """WHEP viewer connections."""
    disconnect_windows: tuple[Window, ...]
    closed: bool


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
