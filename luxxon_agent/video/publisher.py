"""The publisher: keeps one source flowing to one whipUrl, through crashes and network flips.

One connection at a time: build a peer connection, POST the offer (WHIP),
watch it. When ICE/DTLS fails, or the receiver's RTCP reports stop for
`stale_after` seconds (aiortc has no "disconnected" state and notices a dead
peer only after ~30 s of failed consent checks), it DELETEs the resource it
last got in `Location` and POSTs a fresh offer to the same whipUrl, with
backoff and jitter. That Location is also written to `state_path`, so a
restarted process DELETEs the orphan of the one that died.

POST answers: 403/409 mean an old publisher may still hold the endpoint:
DELETE and retry, with backoff, at most `max_refusals` rounds in a row
(then the endpoint belongs to someone else: fail with WhipError). 404/410:
the URL is gone, `refetch()` asks the API for the current one
(GET /sessions/:id/producer-token). 429 and 5xx: retry.
Other 4xx: stop with the error (retrying an unchanged request cannot help).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from luxxon_agent.backoff import Backoff
from luxxon_agent.clock import SYSTEM_CLOCK, Clock, sleep_or_event
from luxxon_agent.errors import LuxxonError, MediaError, WhipError
from luxxon_agent.files import write_atomic
from luxxon_agent.secret import Secret, redact_url
from luxxon_agent.video.encoder import VideoOptions, make_encoding_track
from luxxon_agent.video.mediasource import MediaSource
from luxxon_agent.video.whip import IceServer, WhipClient

if TYPE_CHECKING:
    from aiortc import RTCPeerConnection, RTCRtpSender

logger = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({403, 409, 429, 500, 502, 503, 504})
GONE_STATUSES = frozenset({404, 410})
REFUSED_STATUSES = frozenset({403, 409})
MAX_REFUSALS = 5
"""Consecutive 403/409 DELETE-and-retry rounds before the publisher gives up."""
STABLE_AFTER = 10.0
"""Seconds a connection must have lasted for its loss to reset the backoff."""


class PublisherState(StrEnum):
    IDLE = "idle"
    CONNECTING = "connecting"
    PUBLISHING = "publishing"
    RECONNECTING = "reconnecting"
    STOPPED = "stopped"
    FAILED = "failed"


@dataclass(frozen=True)
class PublisherStats:
    """A snapshot for status lines and metrics."""

    state: PublisherState
    bitrate_bps: float
    """Payload bit/s over the last sampling second."""
    fps: float
    """Frames sent per second over the last sampling second."""
    packets_lost: int
    """As the receiver reports it (RTCP), for the current connection."""
    reconnects: int
    frames_sent: int
    bytes_sent: int
    """RTP payload bytes over all connections."""
    encoder: str | None
    """`passthrough`, `libx264`, `h264_v4l2m2m`, `aiortc-vp8`, or None before media."""
    last_error: str | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class _StopRequested(Exception):
    """The publisher was told to stop while waiting."""


class Publisher:
    """Publishes `source` to `whip_url` until `stop()` or the session is no longer live."""

    def __init__(
        self,
        whip_url: Secret,
        source: MediaSource,
        *,
        token: Secret | None = None,
        options: VideoOptions | None = None,
        refetch: Callable[[], Awaitable[Secret | None]] | None = None,
        is_live: Callable[[], Awaitable[bool]] | None = None,
        state_path: Path | None = None,
        ice_servers: tuple[IceServer, ...] = (),
        backoff: Backoff | None = None,
        stale_after: float = 5.0,
        connect_timeout: float = 15.0,
        max_refusals: int = MAX_REFUSALS,
        clock: Clock = SYSTEM_CLOCK,
        rng: random.Random | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._whip_url = whip_url
        self._token = token
        self._source = source
        self._options = options or VideoOptions()
        self._refetch = refetch
        self._is_live = is_live
        self._state_path = state_path
        self._ice_servers = ice_servers
        self._announced_ice: tuple[IceServer, ...] = ()
        self._backoff = backoff or Backoff(initial=0.5, maximum=10.0)
        self._stale_after = stale_after
        self._connect_timeout = connect_timeout
        self._max_refusals = max_refusals
        self._clock = clock
        self._rng = rng or random.Random()
        self._transport = transport
        self._whip = WhipClient(whip_url, token=token, transport=transport)
        self._state = PublisherState.IDLE
        self._stop_event = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._pc: RTCPeerConnection | None = None
        self._location: str | None = None
        self._state_listeners: list[Callable[[PublisherState], None]] = []
        self._encoder: str | None = None
        self._reconnects = 0
        self._frames = 0
        self._bytes_total = 0
        self._bytes_connection = 0
        self._packets_lost = 0
        self._bitrate = 0.0
        self._fps = 0.0
        self._last_error: str | None = None
        self._encoders_opened = 0

    def __repr__(self) -> str:
        return f"Publisher({redact_url(self._whip_url.reveal())}, {self._state})"

    # -- public face ---------------------------------------------------------------------

    @property
    def state(self) -> PublisherState:
        return self._state

    @property
    def encoders_opened(self) -> int:
        """How many encoder contexts this publisher opened (0 in passthrough)."""
        return self._encoders_opened

    def on_state(self, listener: Callable[[PublisherState], None]) -> None:
        self._state_listeners.append(listener)

    def stats(self) -> PublisherStats:
        return PublisherStats(
            state=self._state,
            bitrate_bps=self._bitrate,
            fps=self._fps,
            packets_lost=self._packets_lost,
            reconnects=self._reconnects,
            frames_sent=self._frames,
            bytes_sent=self._bytes_total + self._bytes_connection,
            encoder=self._encoder,
            last_error=self._last_error,
        )

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="whip-publisher")

    async def wait(self) -> None:
        """Wait until the publisher ends; re-raises what made it fail."""
        if self._task is not None:
            await asyncio.shield(self._task)

    async def stop(self) -> None:
        """Orderly stop: DELETE the resource, close the connection. Safe to call twice."""
        self._stop_event.set()
        if self._task is not None:
            # the outcome (a failure) belongs to wait(); stop() only needs it finished
            await asyncio.gather(self._task, return_exceptions=True)
        await self._whip.aclose()

    async def __aenter__(self) -> Publisher:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- the loop ------------------------------------------------------------------------

    def _set_state(self, state: PublisherState) -> None:
        if state == self._state:
            return
        logger.info("Publisher %s -> %s", self._state, state)
        self._state = state
        for listener in list(self._state_listeners):
            listener(state)

    async def _run(self) -> None:
        outcome = PublisherState.STOPPED
        try:
            await self._delete_orphan()
            await self._loop()
        except _StopRequested:
            pass
        except LuxxonError as exc:
            self._last_error = str(exc)
            outcome = PublisherState.FAILED
            raise
        except asyncio.CancelledError:
            raise
        except BaseException:
            outcome = PublisherState.FAILED
            raise
        finally:
            # whatever ended the loop, the resource is DELETEd and the connection closed
            await self._teardown()
            self._set_state(outcome)

    async def _loop(self) -> None:
        attempt = 0
        refetches = 0
        refusals = 0
        while not self._stop_event.is_set():
            if self._is_live is not None and not await self._still_live():
                logger.info("session is no longer live; publisher stops")
                return
            self._set_state(
                PublisherState.CONNECTING
                if self._reconnects == 0 and attempt == 0
                else PublisherState.RECONNECTING
            )
            try:
                pc = await self._connect()
            except WhipError as exc:
                self._last_error = str(exc)
                if exc.status in GONE_STATUSES:
                    if self._refetch is None or refetches >= 3:
                        raise
                    try:
                        fresh = await self._refetch()
                    except LuxxonError as refetch_error:
                        # the API is unreachable for now: try again after the backoff
                        logger.warning("re-fetching the whipUrl failed: %s", refetch_error)
                    else:
                        if fresh is None:
                            raise
                        refetches += 1
                        logger.warning("whipUrl answered %d; using the re-fetched one", exc.status)
                        await self._replace_url(fresh)
                        await self._delete_orphan()
                        continue
                if exc.status not in RETRY_STATUSES:
                    raise
                if exc.status in REFUSED_STATUSES:
                    refusals += 1
                    if refusals > self._max_refusals:
                        raise WhipError(
                            exc.status,
                            f"still refused after {self._max_refusals} DELETE-and-retry rounds"
                            f" ({' '.join(exc.text.split())[:120] or 'no reason given'})",
                        ) from exc
                    logger.warning("WHIP POST refused (%d): deleting the last resource", exc.status)
                    await self._delete_location()
                else:
                    refusals = 0
                    logger.warning("WHIP POST answered %d; retrying", exc.status)
            except MediaError as exc:
                if self._stop_event.is_set():
                    return
                refusals = 0
                self._last_error = str(exc)
                logger.warning("publish attempt failed: %s", exc)
            else:
                refetches = 0
                refusals = 0
                began = self._clock.monotonic()
                reason = await self._watch(pc)
                await self._teardown()
                if reason is None:
                    return
                logger.warning("connection lost (%s); reconnecting", reason)
                self._last_error = reason
                self._reconnects += 1
                if self._clock.monotonic() - began >= STABLE_AFTER:
                    attempt = 0
                    continue
                # a connection that dies young is retried with backoff, not in a tight loop
            await self._pause(self._backoff.delay(attempt, self._rng))
            attempt += 1

    async def _still_live(self) -> bool:
        assert self._is_live is not None
        try:
            return await self._is_live()
        except LuxxonError as exc:
            # not knowing is not "ended": keep publishing, the API will answer again
            logger.warning("could not check the session state: %s", exc)
            return True

    async def _pause(self, seconds: float) -> None:
        if await sleep_or_event(self._clock, seconds, self._stop_event):
            raise _StopRequested

    async def _replace_url(self, url: Secret) -> None:
        await self._whip.aclose()
        self._whip_url = url
        self._whip = WhipClient(url, token=self._token, transport=self._transport)

    # -- one connection ------------------------------------------------------------------

    def _video_track(self) -> tuple[Any, str]:
        if self._source.kind == "h264":
            if self._options.codec != "h264":
                logger.info(
                    "source is H.264 passthrough: sending H.264, not %s", self._options.codec
                )
            return self._source.video_track(), "h264"
        if self._options.codec == "vp8":
            self._encoder = "aiortc-vp8"
            return self._source.video_track(), "vp8"

        def opened(name: str) -> None:
            self._encoders_opened += 1
            self._encoder = name

        track = make_encoding_track(
            self._source.video_track(), self._source.fps, self._options, on_encoder=opened
        )
        return track, "h264"

    async def _connect(self) -> RTCPeerConnection:
        from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpSender, RTCSessionDescription

        servers = [s.to_rtc() for s in (*self._ice_servers, *self._announced_ice)]
        pc = RTCPeerConnection(RTCConfiguration(iceServers=servers))
        self._pc = pc
        self._bytes_total += self._bytes_connection
        self._bytes_connection = 0
        self._packets_lost = 0
        track, codec = self._video_track()
        if self._source.kind == "h264":
            self._encoder = "passthrough"
        counted = _counting_track(track, self._count_frame)
        transceiver = pc.addTransceiver(counted, direction="sendonly")
        codecs = RTCRtpSender.getCapabilities("video").codecs
        prefs = [c for c in codecs if c.mimeType.lower() == f"video/{codec}"]
        # Constrained Baseline first: what Cloudflare and every browser decode
        prefs.sort(key=lambda c: c.parameters.get("profile-level-id") != "42e01f")
        rtx = [c for c in codecs if c.mimeType.lower() == "video/rtx"]
        transceiver.setCodecPreferences(prefs + rtx)
        if hasattr(track, "request_keyframe"):
            # aiortc answers PLI/FIR by flagging its own encoder; ours is outside it
            transceiver.sender._send_keyframe = track.request_keyframe
        audio = self._source.audio_track()
        if audio is not None:
            pc.addTransceiver(audio, direction="sendonly")
        try:
            await pc.setLocalDescription(await pc.createOffer())
            resource = await self._whip.publish(pc.localDescription.sdp)
            self._location = resource.location
            self._save_state()
            if resource.ice_servers:
                self._announced_ice = resource.ice_servers
            await pc.setRemoteDescription(
                RTCSessionDescription(sdp=resource.answer_sdp, type="answer")
            )
        except BaseException:
            await self._teardown(delete=False)
            raise
        return pc

    def _count_frame(self) -> None:
        self._frames += 1

    async def _watch(self, pc: RTCPeerConnection) -> str | None:
        """Sample stats each second; return why the connection must go, or None to stop."""
        changed = asyncio.Event()
        pc.on("connectionstatechange", changed.set)
        sender = pc.getSenders()[0]
        started = self._clock.monotonic()
        connected_at: float | None = None
        last_report: Any = None
        last_report_at = started
        prev_bytes, prev_frames, prev_t = 0, self._frames, started
        while True:
            state = pc.connectionState
            now = self._clock.monotonic()
            if state in ("failed", "closed"):
                return f"connection {state}"
            if sender.transport.state in ("failed", "closed"):
                return f"DTLS {sender.transport.state}"
            if state == "connected":
                if connected_at is None:
                    connected_at = last_report_at = now
                    self._set_state(PublisherState.PUBLISHING)
            elif now - started > self._connect_timeout:
                return f"not connected after {self._connect_timeout:.0f} s"
            if connected_at is not None:
                report = await _sender_report(sender)
                self._bytes_connection = report["bytes"]
                self._packets_lost = report["lost"]
                if report["remote_ts"] != last_report:
                    last_report, last_report_at = report["remote_ts"], now
                elif now - last_report_at > self._stale_after:
                    return f"no receiver report for {now - last_report_at:.1f} s"
                span = max(1e-3, now - prev_t)
                if span >= 0.5:
                    self._bitrate = (report["bytes"] - prev_bytes) * 8 / span
                    self._fps = (self._frames - prev_frames) / span
                    prev_bytes, prev_frames, prev_t = report["bytes"], self._frames, now
            changed.clear()
            if await sleep_or_event(self._clock, 1.0, self._stop_event, changed):
                return None

    async def _teardown(self, delete: bool = True) -> None:
        pc, self._pc = self._pc, None
        self._bitrate = self._fps = 0.0
        if pc is not None and pc.getSenders():
            # the last second of bytes would otherwise be lost from the totals
            self._bytes_connection = (await _sender_report(pc.getSenders()[0]))["bytes"]
        if delete:
            await self._delete_location()
        if pc is not None:
            await pc.close()

    # -- the resource and its state file -------------------------------------------------

    async def _delete_location(self) -> None:
        location = self._location
        if location is None:
            return
        try:
            await self._whip.delete(location)
        except MediaError as exc:
            # best effort, kept for later: a 403 on the next POST asks for this DELETE again
            logger.info("DELETE of the previous WHIP resource failed: %s", exc)
            return
        self._location = None
        self._save_state()

    async def _delete_orphan(self) -> None:
        """DELETE the resource a previous process left behind for this whipUrl."""
        if self._state_path is None or not self._state_path.exists():
            return
        try:
            saved = json.loads(self._state_path.read_text())
        except (OSError, ValueError):
            return
        ours = saved.get("whip_url_sha256") == whip_url_digest(self._whip_url)
        if ours and saved.get("location"):
            logger.info("deleting the WHIP resource a previous run left behind")
            self._location = saved["location"]
            await self._delete_location()

    def _save_state(self) -> None:
        if self._state_path is None:
            return
        payload = {"whip_url_sha256": whip_url_digest(self._whip_url), "location": self._location}
        # the resource URL is as good as the whipUrl to an attacker: owner-only file
        write_atomic(self._state_path, json.dumps(payload))


def whip_url_digest(url: Secret) -> str:
    """SHA-256 of a whipUrl: names it in state files without storing the secret."""
    return hashlib.sha256(url.reveal().encode()).hexdigest()


async def _sender_report(sender: RTCRtpSender) -> dict[str, Any]:
    report = await sender.getStats()
    out: dict[str, Any] = {"bytes": 0, "lost": 0, "remote_ts": None}
    for stat in report.values():
        if stat.type == "outbound-rtp":
            out["bytes"] = stat.bytesSent
        elif stat.type == "remote-inbound-rtp":
            out["lost"] = stat.packetsLost
            out["remote_ts"] = (stat.timestamp, stat.packetsReceived)
    return out


def _counting_track(inner: Any, on_frame: Callable[[], None]) -> Any:
    from aiortc.mediastreams import MediaStreamTrack

    class CountingTrack(MediaStreamTrack):
        kind = inner.kind

        async def recv(self) -> Any:
            data = await inner.recv()
            on_frame()
            return data

        def stop(self) -> None:
            super().stop()
            inner.stop()

    return CountingTrack()
