"""WhipIngest: the stub's `VideoBackend` with a real WHIP/WHEP ingest on aiortc.

Each session's input has an unguessable whipUrl (`/whip/<token>`, the URL is
the credential) and a whepUrl for viewers (`/whep/<token>`). An offer is
checked completely (`sdp.check_offer`) and negotiated on a new peer
connection before it touches the input. The first publisher goes live at
once; a later one (a crashed publisher coming back) waits as `pending` until
its first decoded frame, then replaces the live one. DELETE on a resource
ends that connection. An input serves at most `max_viewers` WHEP viewers at
once; a viewer whose connection fails or closes (a reloaded page, a vanished
peer), or is not connected `viewer_connect_timeout` after its answer, is
dropped without waiting for a DELETE.

Disconnect windows are the stretches without decoded media longer than
`gap_threshold`: from the input's creation to the first frame, and from any
frame to the next; a gap still open when asked is reported up to "now" (or
the close). With a store (`restore`), what a restart must not forget is kept
in the stub's SQLite (ingest/store.py), and the time the stub was down falls
inside a window.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import secrets
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from luxxon_agent.clock import SYSTEM_CLOCK, Clock
from luxxon_agent.stub.ingest import frames
from luxxon_agent.stub.ingest.feedback import FeedbackSender
from luxxon_agent.stub.ingest.inputs import (
    FrameListener,
    IngestStats,
    InputState,
    InputView,
    PublisherConnection,
)
from luxxon_agent.stub.ingest.sdp import PARSE_ERRORS, BadOffer, Role, check_offer, first_lines
from luxxon_agent.stub.ingest.store import IngestStore, Window
from luxxon_agent.stub.video import MediaStatus, OpenInput, VideoInput
from luxxon_agent.video import twcc

if TYPE_CHECKING:
    from aiortc import RTCPeerConnection
    from aiortc.mediastreams import MediaStreamTrack
    from fastapi import APIRouter

    from luxxon_agent.stub.store import Store

logger = logging.getLogger(__name__)

SAVE_EVERY_S = 1.0
"""How stale the stored start of an input's quiet stretch may get while frames flow."""
PENDING_TIMEOUT_S = 20.0
"""How long an accepted offer may wait for its first frame beside a live publisher."""
MAX_VIEWERS = 8
"""WHEP viewers per input: each holds an aiortc connection and a VP8/H.264 encoder."""
VIEWER_CONNECT_TIMEOUT_S = 20.0
"""How long an answered viewer may take to connect: one that never does (gone before ICE,
no candidate the ingest can reach) would otherwise hold its slot, and aioice gives up on
unanswered checks only after about a minute."""
VIEWERS_RETRY_AFTER_S = 5
"""Retry-After of the 503 answered to a viewer beyond `max_viewers`."""


class InputGone(Exception):
    """The input was closed while an offer was being negotiated (answered 404)."""


class ViewersFull(Exception):
    """The input already has its `max_viewers` viewers (answered 503 with Retry-After,
    as RFC 9725 section 4.6 answers an endpoint without capacity)."""


def _negotiation_errors() -> tuple[type[BaseException], ...]:
    from aiortc.exceptions import (
        InternalError,
        InvalidAccessError,
        InvalidStateError,
        OperationError,
    )

    # aiortc reports offers it cannot use with its own errors, with asserts and
    # look-up errors from its parser, and with a StopIteration that leaves a coroutine
    # as RuntimeError
    return (
        *PARSE_ERRORS,
        RuntimeError,
        InternalError,
        InvalidAccessError,
        InvalidStateError,
        OperationError,
    )


class WhipIngest:
    """A WHIP endpoint per session input, served by `router` (mounted at the app root)."""

    def __init__(
        self,
        public_base_url: str,
        *,
        clock: Clock = SYSTEM_CLOCK,
        gap_threshold: float = 2.0,
        max_viewers: int = MAX_VIEWERS,
        viewer_connect_timeout: float = VIEWER_CONNECT_TIMEOUT_S,
        transport_cc: bool = False,
    ) -> None:
        from luxxon_agent.stub.ingest.router import make_router

        self._base = public_base_url.rstrip("/")
        self._clock = clock
        self._gap = gap_threshold
        self.max_viewers = max_viewers
        self.viewer_connect_timeout = viewer_connect_timeout
        self.transport_cc = transport_cc
        """Answer a publisher's transport-wide sequence numbers with feedback (feedback.py)."""
        self._store: IngestStore | None = None
        self._inputs: dict[str, InputState] = {}
        self._by_whip: dict[str, InputState] = {}
        self._by_whep: dict[str, InputState] = {}
        self._background: set[asyncio.Task[None]] = set()
        self.router: APIRouter | None = make_router(self)

    # -- VideoBackend ---------------------------------------------------------------------

    def create_input(self, session_id: str) -> VideoInput:
        ref = f"vin_{secrets.token_hex(8)}"
        now = self._clock.now()
        entry = InputState(
            ref,
            session_id,
            secrets.token_urlsafe(24),
            secrets.token_urlsafe(24),
            created_at=now,
            quiet_since=now,
        )
        self._register(entry)
        self._save(entry)
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
        await self._drop_publishers(entry)
        for pc in list(entry.viewers.values()):
            await pc.close()
        entry.viewers.clear()
        # at shutdown this is what the next start measures the down time from
        if entry.saved_quiet_since != entry.quiet_since:
            self._save(entry)

    def disconnect_windows(self, ref: str) -> list[Window]:
        entry = self._inputs.get(ref)
        return [] if entry is None else self._windows(entry)

    def latest_frame_jpeg(self, ref: str) -> bytes | None:
        entry = self._inputs.get(ref)
        return None if entry is None else entry.timeline.jpeg()

    def media_status(self, ref: str) -> MediaStatus | None:
        entry = self._inputs.get(ref)
        if entry is None:
            return None
        return MediaStatus(
            connected=entry.publisher is not None,
            last_frame_at=entry.last_frame_at,
            frames_received=entry.frames,
        )

    def restore(self, store: Store, open_inputs: Sequence[OpenInput]) -> None:
        """Keep state in `store` from now on, and serve `open_inputs` again: their whipUrls
        accept a new publisher, and their windows and quiet stretch continue where the
        store left them, so the time the stub was down counts as disconnected."""
        self._store = IngestStore(store)
        restored = 0
        for item in open_inputs:
            ref = item.video.ref
            whip = _token(item.video.whip_url, "whip")
            whep = _token(item.video.whep_url, "whep")
            if whip is None or whep is None or ref in self._inputs:
                logger.warning("video input %s: not an input this ingest can serve", ref)
                continue
            saved = self._store.load(ref)
            # an input minted by a build that kept nothing is quiet since it was created
            created = saved.created_at if saved is not None else item.created_at
            quiet = saved.quiet_since if saved is not None else item.created_at
            entry = InputState(
                ref, item.session_id, whip, whep, created_at=created, quiet_since=quiet
            )
            if saved is not None:
                entry.windows = list(saved.windows)
                entry.saved_quiet_since = quiet
            self._register(entry)
            if saved is None:
                self._save(entry)
            restored += 1
        if restored:
            logger.info("video: %d open input(s) restored", restored)

    # -- beyond the protocol: views, stats and fault injection for tests and the demo ------

    def input_view(self, ref: str) -> InputView | None:
        """A read-only snapshot of input `ref`, or None for an unknown ref."""
        entry = self._inputs.get(ref)
        if entry is None:
            return None
        live = entry.publisher
        return InputView(
            ref=entry.ref,
            session_id=entry.session_id,
            connected=live is not None,
            pc_state=live.pc.connectionState if live is not None and live.pc else None,
            pending=entry.pending is not None,
            publishers=entry.publishers,
            offers=entry.offers,
            frames=entry.frames,
            keyframes=entry.keyframes,
            first_frame_at=entry.first_frame_at,
            last_frame_at=entry.last_frame_at,
            offer_video_codecs=live.video_codecs if live is not None else (),
            readers=len(entry.reading),
            viewers=len(entry.viewers),
            disconnect_windows=tuple(self._windows(entry)),
            closed=entry.closed_at is not None,
        )

    def publisher_connection(self, ref: str) -> RTCPeerConnection | None:
        """The live publisher's aiortc connection, for inspection (tests, diagnostics)."""
        entry = self._inputs.get(ref)
        return entry.publisher.pc if entry is not None and entry.publisher else None

    def viewer_connections(self, ref: str) -> list[RTCPeerConnection]:
        """The WHEP viewers' aiortc connections, for inspection."""
        entry = self._inputs.get(ref)
        return list(entry.viewers.values()) if entry is not None else []

    async def stats(self, ref: str) -> IngestStats | None:
        entry = self._inputs.get(ref)
        if entry is None:
            return None
        received = 0
        live = entry.publisher
        if live is not None and live.pc is not None:
            # aiortc's inbound-rtp has no byte count; the DTLS transport's (media + RTCP) does
            for stat in (await live.pc.getStats()).values():
                if stat.type == "transport":
                    received += stat.bytesReceived
        span = self._clock.monotonic() - live.started if live is not None else 0.0
        latest = entry.timeline.latest
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

    def add_frame_listener(self, ref: str, listener: FrameListener) -> None:
        """Call `listener(frame, received_at)` for each decoded frame (benchmarks read clocks)."""
        self._inputs[ref].frame_listeners.append(listener)

    def attach_track(self, ref: str, track: MediaStreamTrack) -> None:
        """Read decoded video from `track` as input `ref`'s live publisher would deliver it
        (tests feed frames on a fake clock). It replaces any publisher connection."""
        entry = self._inputs[ref]
        conn = PublisherConnection(None, secrets.token_urlsafe(12), self._clock.monotonic())
        previous = self._swap(entry, conn)
        if previous is not None:
            self._spawn(previous.close())
        conn.read(self._consume(entry, conn, track), entry.reading)

    async def drop_publisher(self, ref: str) -> None:
        """Close the publisher connections (live and pending), as a network cut would."""
        entry = self._inputs.get(ref)
        if entry is not None:
            await self._drop_publishers(entry)

    async def publish(self, ref: str, offer: str) -> tuple[str, str]:
        """Accept a publisher's SDP offer for input `ref`: (SDP answer, WHIP resource).

        Raises BadOffer (the offer is unusable) or InputGone."""
        entry = self._inputs.get(ref)
        if entry is None or entry.closed_at is not None:
            raise InputGone(ref)
        return await self.accept_publisher(entry, offer)

    async def aclose(self) -> None:
        for ref in list(self._inputs):
            await self.close_input(ref)
        background, self._background = self._background, set()
        for task in background:
            task.cancel()
        if background:
            await asyncio.wait(background)

    # -- for the router ---------------------------------------------------------------------

    def by_whip(self, token: str) -> InputState | None:
        return self._by_whip.get(token)

    def by_whep(self, token: str) -> InputState | None:
        return self._by_whep.get(token)

    async def accept_publisher(self, entry: InputState, offer: str) -> tuple[str, str]:
        summary = check_offer(offer, "publisher")
        logger.debug(
            "video input %s: publisher offer, %s: %s",
            entry.ref,
            summary.describe(),
            first_lines(offer),
        )
        pc = _new_peer_connection()
        conn = PublisherConnection(
            pc, secrets.token_urlsafe(12), self._clock.monotonic(), summary.video_codecs
        )

        @pc.on("track")
        def _on_track(track: MediaStreamTrack) -> None:
            if track.kind == "video":
                conn.read(self._consume(entry, conn, track), entry.reading)
            else:
                conn.read(frames.discard(track), entry.reading)

        def keyframe() -> None:
            conn.keyframes += 1

        async def receive() -> None:
            from aiortc import RTCSessionDescription

            await pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
            # receivers exist now and start decoding once connected
            conn.keyframes_from_encoded = frames.count_encoded_keyframes(pc, keyframe)
            await pc.setLocalDescription(await pc.createAnswer())

        await self._negotiate(conn, receive, "publisher")
        if entry.closed_at is not None:
            await conn.close()
            raise InputGone(entry.ref)
        answer = pc.localDescription.sdp
        extension_id = twcc.negotiated_id(offer) if self.transport_cc else None
        if extension_id is not None:
            feedback = FeedbackSender(pc.getTransceivers()[0].receiver.transport, extension_id)
            feedback.attach()
            conn.read(feedback.run(), entry.reading)
            answer = twcc.add_transport_cc(answer, extension_id)
        entry.offers += 1
        if entry.publisher is None:
            await self._replace_publisher(entry, conn)
        else:
            previous, entry.pending = entry.pending, conn
            conn.expiry = asyncio.get_running_loop().call_later(
                PENDING_TIMEOUT_S, lambda: self._spawn(self._expire(entry, conn))
            )
            if previous is not None:
                await previous.close()
        return answer, conn.resource

    async def accept_viewer(self, entry: InputState, offer: str) -> tuple[str, str]:
        """Raises BadOffer, InputGone or ViewersFull."""
        summary = check_offer(offer, "viewer")
        self._check_viewer_room(entry)
        logger.debug("video input %s: viewer offer, %s", entry.ref, summary.describe())
        pc = _new_peer_connection()
        conn = PublisherConnection(pc, secrets.token_urlsafe(12), self._clock.monotonic())

        @pc.on("connectionstatechange")
        def _on_state() -> None:
            self._drop_viewer_if_gone(entry, conn.resource, pc)

        async def send() -> None:
            from aiortc import RTCSessionDescription

            await pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
            for transceiver in pc.getTransceivers():
                if transceiver.kind == "video":
                    transceiver.direction = "sendonly"
                    pc.addTrack(frames.viewer_track(entry.timeline))
                    break
            await pc.setLocalDescription(await pc.createAnswer())

        await self._negotiate(conn, send, "viewer")
        if entry.closed_at is not None:
            await pc.close()
            raise InputGone(entry.ref)
        try:
            # others may have been negotiating at the same time
            self._check_viewer_room(entry)
        except ViewersFull:
            await pc.close()
            raise
        entry.viewers[conn.resource] = pc
        # ICE may have failed already, while the answer was made
        self._drop_viewer_if_gone(entry, conn.resource, pc)
        self._spawn(self._viewer_deadline(entry, conn.resource, pc))
        return pc.localDescription.sdp, conn.resource

    async def end_viewer(self, entry: InputState, resource: str) -> bool:
        """DELETE of a WHEP resource: end that viewer's connection; False if unknown."""
        pc = entry.viewers.pop(resource, None)
        if pc is None:
            return False
        await pc.close()
        return True

    async def end_resource(self, entry: InputState, resource: str) -> bool:
        """DELETE of a WHIP resource: end that publisher connection; False if unknown."""
        if entry.pending is not None and entry.pending.resource == resource:
            pending, entry.pending = entry.pending, None
            await pending.close()
            return True
        if entry.publisher is not None and entry.publisher.resource == resource:
            await self._replace_publisher(entry, None)
            return True
        return False

    # -- internals ------------------------------------------------------------------------

    def _register(self, entry: InputState) -> None:
        self._inputs[entry.ref] = entry
        self._by_whip[entry.whip_token] = entry
        self._by_whep[entry.whep_token] = entry

    def _check_viewer_room(self, entry: InputState) -> None:
        if len(entry.viewers) >= self.max_viewers:
            raise ViewersFull(
                f"this stream already has {self.max_viewers} viewers, the most it serves"
            )

    def _drop_viewer_if_gone(self, entry: InputState, resource: str, pc: RTCPeerConnection) -> None:
        """Forget viewer `resource` once its connection failed or closed, and close it."""
        if pc.connectionState not in ("failed", "closed"):
            return
        if entry.viewers.get(resource) is pc:
            del entry.viewers[resource]
            logger.info("video input %s: a viewer's connection %s", entry.ref, pc.connectionState)
        if pc.connectionState == "failed":
            self._spawn(pc.close())

    async def _viewer_deadline(
        self, entry: InputState, resource: str, pc: RTCPeerConnection
    ) -> None:
        await asyncio.sleep(self.viewer_connect_timeout)
        if pc.connectionState != "connected" and entry.viewers.get(resource) is pc:
            del entry.viewers[resource]
            logger.info(
                "video input %s: a viewer did not connect within %.0f s",
                entry.ref,
                self.viewer_connect_timeout,
            )
            await pc.close()

    def _spawn(self, work: Any) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _windows(self, entry: InputState) -> list[Window]:
        windows = list(entry.windows)
        end = entry.closed_at or self._clock.now()
        if (end - entry.quiet_since).total_seconds() > self._gap:
            windows.append((entry.quiet_since, end))
        return windows

    def _save(self, entry: InputState, window: Window | None = None) -> None:
        """Write the input's quiet stretch start (and a window that just closed)."""
        entry.saved_quiet_since = entry.quiet_since
        if self._store is not None:
            self._store.save(
                entry.ref, entry.session_id, entry.created_at, entry.quiet_since, window
            )

    async def _negotiate(self, conn: PublisherConnection, steps: Any, role: Role) -> None:
        """Run aiortc's offer/answer `steps` on `conn`'s new connection; BadOffer if it
        refuses the offer (the new connection is closed, nothing else is touched)."""
        assert conn.pc is not None
        pc = conn.pc
        try:
            await steps()
        except _negotiation_errors() as exc:
            await conn.close()
            text = " ".join(str(exc).split())[:120]
            raise BadOffer(
                f"the offer was refused in negotiation: {type(exc).__name__}"
                + (f": {text}" if text else "")
            ) from None
        wanted = ("recvonly", "sendrecv") if role == "publisher" else ("sendonly", "sendrecv")
        if not any(
            t.kind == "video" and t.currentDirection in wanted for t in pc.getTransceivers()
        ):
            await conn.close()
            raise BadOffer("no video codec in common (H.264 packetization-mode 1 or VP8)")

    def _swap(
        self, entry: InputState, conn: PublisherConnection | None
    ) -> PublisherConnection | None:
        """Make `conn` the live publisher (None: none); returns the one it replaces."""
        previous, entry.publisher = entry.publisher, conn
        if conn is not None:
            entry.publishers += 1
            if entry.pending is conn:
                entry.pending = None
            if conn.expiry is not None:
                conn.expiry.cancel()
                conn.expiry = None
        if previous is not None:
            entry.keyframes_before += previous.keyframes
        return previous

    async def _replace_publisher(self, entry: InputState, conn: PublisherConnection | None) -> None:
        """`_swap`, then close the connection replaced."""
        previous = self._swap(entry, conn)
        if previous is not None:
            await previous.close()

    async def _drop_publishers(self, entry: InputState) -> None:
        pending, entry.pending = entry.pending, None
        if pending is not None:
            await pending.close()
        await self._replace_publisher(entry, None)

    async def _expire(self, entry: InputState, conn: PublisherConnection) -> None:
        if entry.pending is conn:
            entry.pending = None
            logger.info(
                "video input %s: the new publisher sent no media; kept the live one", entry.ref
            )
            await conn.close()

    async def _consume(
        self, entry: InputState, conn: PublisherConnection, track: MediaStreamTrack
    ) -> None:
        import av
        from aiortc.mediastreams import MediaStreamError

        loop = asyncio.get_running_loop()
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            if entry.pending is conn:
                # media from the new publisher: it replaces the live one now
                await self._replace_publisher(entry, conn)
            if entry.publisher is not conn:
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
            if getattr(frame, "key_frame", False) and not conn.keyframes_from_encoded:
                conn.keyframes += 1
            # stamped once, before anyone else sees the frame: viewers share it read-only
            assert isinstance(frame, av.VideoFrame)  # the track is a video track
            entry.timeline.stamp(frame, loop.time())
            for listener in list(entry.frame_listeners):
                listener(frame, now)


def _new_peer_connection() -> RTCPeerConnection:
    from aiortc import RTCConfiguration, RTCPeerConnection

    return RTCPeerConnection(RTCConfiguration(iceServers=[]))


def _token(url: str, kind: str) -> str | None:
    """The token of a `…/<kind>/<token>` URL, or None for any other shape."""
    parts = urlsplit(url).path.split("/")
    if len(parts) >= 3 and parts[-2] == kind and parts[-1]:
        return parts[-1]
    return None


def create_video_backend(
    public_base_url: str, clock: Clock, *, transport_cc: bool = False
) -> WhipIngest:
    """A WhipIngest at the stub's public base URL.

    A stub served on a loopback origin keeps media on loopback too
    (`pin_ice_to_loopback`); on another origin aioice gathers the usual host
    candidates.
    """
    from luxxon_agent.video import pin_ice_to_loopback

    # imported here, before serving: the first offer would import it on the event loop,
    # holding it 0.3-0.5 s (measured by the stub's loop watch)
    importlib.import_module("aiortc")
    if urlsplit(public_base_url).hostname in ("127.0.0.1", "localhost", "::1"):
        pin_ice_to_loopback()
    return WhipIngest(public_base_url, clock=clock, transport_cc=transport_cc)
