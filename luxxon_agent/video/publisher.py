"""The publisher: keeps one source flowing to one whipUrl, through crashes and network flips.

It owns the one retry policy for video. One connection at a time: build a
peer connection (connection.py), POST the offer (WHIP), watch it. When
ICE/DTLS fails, or the receiver's RTCP reports stop for `stale_after`
seconds (aiortc has no "disconnected" state and notices a dead peer only
after ~30 s of failed consent checks), it DELETEs the resource it last got
in `Location` and POSTs a fresh offer to the same whipUrl, with backoff and
jitter. That Location is also kept in the leftover-resource file
(resource_file.py), so a restarted process DELETEs the orphan of the one
that died.

A server that cannot be reached at all (no route, no answer within
`whip.CONNECT_TIMEOUT`) is tried again about once a second, whatever
happened before: such an attempt costs the server nothing, and the path
may come back at any moment (netlink's link-up, address-added or
default-route change wakes the wait at once). The resource of a lost
connection is DELETEd first (it is the next POST's first obstacle on
servers that keep one publisher per endpoint), then the fresh offer is
POSTed.

POST answers: 403/409 mean an old publisher may still hold the endpoint:
DELETE what we hold and retry, at most `max_refusals` rounds in a row (then
the endpoint belongs to someone else). A 403 when we hold nothing to DELETE
is a refusal of our credentials. 404/410: the URL is gone, `refetch()` asks
the API for the current one. 429 and 5xx: retry. Other 4xx: retrying an
unchanged request cannot help.

Those last conditions, and a source that cannot be opened, are terminal: by
default (`luxxon-agent publish`) the publisher ends with the error; with
`persistent` (the agent) it reports `BLOCKED` and tries again slowly.
Every state change is reported through `on_state(state, stats)`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import NamedTuple

import httpx

from luxxon_agent.backoff import Backoff
from luxxon_agent.clock import SYSTEM_CLOCK, Clock, sleep_or_event
from luxxon_agent.errors import LuxxonError, MediaError, WhipError
from luxxon_agent.secret import Secret, redact_url
from luxxon_agent.video.bandwidth import (
    ENCODER_SHARE,
    BandwidthEstimator,
    BandwidthSnapshot,
    RateState,
)
from luxxon_agent.video.connection import (
    Connection,
    ConnectTimings,
    VideoTrack,
    open_connection,
    video_track,
)
from luxxon_agent.video.encoder import H264Encoder, VideoOptions
from luxxon_agent.video.mediasource import MediaSource
from luxxon_agent.video.netwatch import NetWatch, NetworkChange
from luxxon_agent.video.passthrough import UP_MARGIN as PASSTHROUGH_UP_MARGIN
from luxxon_agent.video.passthrough import PassthroughMode, PassthroughSwitch
from luxxon_agent.video.resource_file import ResourceFile
from luxxon_agent.video.stats import PublisherState, PublisherStats, SenderReport, StatsBook
from luxxon_agent.video.whip import IceServer, WhipClient, WhipResource, WhipUnreachable

logger = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({403, 409, 429, 500, 502, 503, 504})
GONE_STATUSES = frozenset({404, 410})
REFUSED_STATUSES = frozenset({403, 409})
MAX_REFUSALS = 5
"""Consecutive 403/409 DELETE-and-retry rounds before the endpoint counts as someone else's."""
MAX_REFETCHES = 3
"""Consecutive 404/410 answers, each followed by a re-fetched whipUrl, before giving up."""
STABLE_AFTER = 10.0
"""Seconds a connection must have lasted for its loss to reset the backoff."""
PASSTHROUGH_CEILING_BPS = 20_000_000.0
"""The estimate's ceiling for a camera's stream, whatever `--bitrate` (our encoder's cap) says."""
PROBE_OVER_WANTED = 1.1
"""Padding may prove this much more than the camera's switch-back rate (its RTP overhead)."""
PATH_LOST = frozenset({"address-removed", "link-down"})
"""Network changes after which the media's path is gone: re-offer at once."""
PATH_BACK = frozenset({"link-up", "address-added", "default-route-changed"})
"""Network changes after which a path may be there again: a waiting retry goes at once."""

SourceOpener = Callable[[], Awaitable[MediaSource]]
"""Opens the source; a publisher given one opens, re-opens and closes the source itself."""
StateListener = Callable[[PublisherState, PublisherStats], None]


@dataclass(frozen=True)
class PublisherOptions:
    """How a publisher sends and how it retries."""

    video: VideoOptions = field(default_factory=VideoOptions)
    token: Secret | None = None
    """Bearer token for the WHIP server, if it wants one."""
    refetch: Callable[[], Awaitable[Secret | None]] | None = None
    """Asks the API for the session's current whipUrl (None: the API could not say)."""
    is_live: Callable[[], Awaitable[bool]] | None = None
    """Asked before each (re)connection: False ends the publisher (the session is over)."""
    state_path: Path | None = None
    """The leftover-resource file; None keeps nothing across processes."""
    ice_servers: tuple[IceServer, ...] = ()
    persistent: bool = False
    """Never give up (the agent): terminal conditions become BLOCKED, retried slowly."""
    adaptive: bool = True
    """Follow the link's estimated bandwidth; False sends at the configured cap."""
    backoff: Backoff = Backoff(initial=0.5, maximum=10.0)
    """Between reconnection attempts the server answered (or that failed on our side)."""
    unreachable_backoff: Backoff = Backoff(initial=0.5, maximum=1.0)
    """From the start of one attempt that could not reach the WHIP server to the next: it
    does not grow, so the path coming back is found within about a second."""
    blocked_backoff: Backoff = Backoff(initial=2.0, maximum=30.0)
    """Between attempts after a terminal condition, with `persistent`."""
    stale_after: float = 5.0
    """Seconds without a receiver report before the connection counts as dead."""
    connect_timeout: float = 15.0
    max_refusals: int = MAX_REFUSALS
    clock: Clock = SYSTEM_CLOCK
    rng: random.Random | None = None
    transport: httpx.AsyncBaseTransport | None = None
    """For tests: the HTTP transport WHIP requests go through."""


class _StopRequested(Exception):
    """The publisher was told to stop while waiting."""


class Publisher:
    """Publishes `source` to `whip_url` until `stop()` or the session is no longer live.

    `whip_url` may be None when `options.refetch` can provide it (an agent that
    resumed a session while the API was away). `source` is an opened source
    (the caller closes it) or an opener (the publisher opens and closes it).
    """

    def __init__(
        self,
        whip_url: Secret | None,
        source: MediaSource | SourceOpener,
        options: PublisherOptions | None = None,
        *,
        on_state: StateListener | None = None,
    ) -> None:
        self._options = options or PublisherOptions()
        if whip_url is None and self._options.refetch is None:
            raise ValueError("a publisher without a whipUrl needs options.refetch")
        self._whip = None if whip_url is None else self._whip_client(whip_url)
        if isinstance(source, MediaSource):
            self._source: MediaSource | None = source
            self._open_source: SourceOpener | None = None
        else:
            self._source, self._open_source = None, source
        self._on_state = on_state
        self._resource_file = ResourceFile(self._options.state_path)
        self._rng = self._options.rng or random.Random()
        self._announced_ice: tuple[IceServer, ...] = ()
        self._state = PublisherState.IDLE
        self._stats = StatsBook(self._options.clock.monotonic)
        self._stop_event = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._connection: Connection | None = None
        self._location: str | None = None
        self._estimator: BandwidthEstimator | None = None
        self._switch: PassthroughSwitch | None = None
        self._video: VideoTrack | None = None
        self._netwatch: NetWatch | None = None
        self._moves: list[NetworkChange] = []
        self._moved = asyncio.Event()
        self._path_back = asyncio.Event()
        self._deleted_in: float | None = None
        """How long the DELETE before the coming connection's POST took (None: there was none)."""

    def __repr__(self) -> str:
        url = "no whipUrl yet" if self._whip is None else redact_url(self._whip.whip_url.reveal())
        return f"Publisher({url}, {self._state})"

    # -- public face ---------------------------------------------------------------------

    @property
    def state(self) -> PublisherState:
        return self._state

    @property
    def encoders_opened(self) -> int:
        """How many encoder contexts this publisher opened (0 in passthrough)."""
        return self._stats.encoders_opened

    def link_snapshot(self) -> BandwidthSnapshot | None:
        """Everything the estimator knows about the link (None before a connection)."""
        return self._estimator.snapshot() if self._estimator is not None else None

    def stats(self) -> PublisherStats:
        repairs = self._connection.tap.repair_counts() if self._connection is not None else None
        stats = replace(self._stats.snapshot(self._state, repairs), adaptive=self._options.adaptive)
        if self._estimator is not None:
            link = self._estimator.snapshot()
            stats = replace(
                stats,
                estimate_bps=link.estimate_bps,
                sent_bps=link.sent_bps,
                loss=link.loss,
                rtt_ms=None if link.rtt_s is None else link.rtt_s * 1000,
                retransmitted_bytes=link.retransmitted_bytes,
                padding_bytes=link.padding_bytes,
                receive_bps=link.receive_bps,
                remb_bps=link.remb_bps,
                link_reason=link.reason,
                transport_cc=link.transport_cc,
            )
        h264 = self._video.h264 if self._video is not None else None
        if h264 is not None:
            stats = replace(
                stats,
                target_bps=h264.target_bps if self._options.adaptive else None,
                rung=h264.rung_label,
            )
        # a camera being re-encoded: the rung of the encoder re-encoding it
        camera_encoder = getattr(self._video.track, "encoder", None) if self._video else None
        if isinstance(camera_encoder, H264Encoder):
            stats = replace(stats, rung=camera_encoder.rung_label)
        if self._switch is not None:
            stats = replace(
                stats,
                target_bps=self._switch.target_bps,
                mode=self._switch.mode.value,
                mode_switches=self._switch.switches,
                mode_reason=self._switch.reason,
            )
        return stats

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
        if self._whip is not None:
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
        if self._on_state is not None:
            self._on_state(state, self.stats())

    async def _run(self) -> None:
        outcome = PublisherState.STOPPED
        try:
            await self._start_netwatch()
            await self._delete_orphan()
            await self._retry_when_blocked()
        except _StopRequested:
            pass
        except LuxxonError as exc:
            self._stats.last_error = str(exc)
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
            if self._open_source is not None:
                await self._close_source()
            if self._netwatch is not None:
                await self._netwatch.close()
            self._set_state(outcome)

    async def _start_netwatch(self) -> None:
        """Hear of address and link changes at once (Linux netlink); without, the
        staleness timer still notices a dead path."""
        if not sys.platform.startswith("linux"):
            return
        watch = NetWatch()
        try:
            await watch.start()
        except OSError as exc:
            logger.info("not watching network changes: %s", exc)
            return
        watch.on_change(self._network_changed)
        self._netwatch = watch

    def _network_changed(self, change: NetworkChange) -> None:
        self._moves.append(change)
        self._moved.set()
        if change.reason in PATH_BACK:
            self._path_back.set()

    async def _retry_when_blocked(self) -> None:
        """`_loop`, and with `persistent` its terminal errors as BLOCKED, retried slowly."""
        rounds = 0
        frames_then = -1
        previous: str | None = None
        while True:
            try:
                await self._loop()
                return
            except LuxxonError as exc:
                if not self._options.persistent:
                    raise
                if self._stats.frames != frames_then:
                    rounds = 0  # it published in between: slow retries start afresh
                frames_then = self._stats.frames
                delay = self._options.blocked_backoff.delay(rounds, self._rng)
                rounds += 1
                # the same refusal again is no news: one warning, then quieter lines
                level = logging.INFO if str(exc) == previous else logging.WARNING
                previous = self._stats.last_error = str(exc)
                logger.log(level, "video blocked: %s; trying again in %.0f s", exc, delay)
                self._set_state(PublisherState.BLOCKED)
                await self._pause(delay)

    async def _loop(self) -> None:
        """Connect, watch, reconnect; returns on stop or a session no longer live,
        raises what retrying cannot fix."""
        attempt = 0
        refetches = 0
        refusals = 0
        outage = _Outage()
        clock = self._options.clock
        while not self._stop_event.is_set():
            if self._options.is_live is not None and not await self._still_live():
                logger.info("session is no longer live; publisher stops")
                return
            first = self._stats.reconnects == 0 and attempt == 0 and outage.attempts == 0
            self._set_state(PublisherState.CONNECTING if first else PublisherState.RECONNECTING)
            # a change from now on may be what the next attempt needs: it must not be missed
            self._path_back.clear()
            began = clock.monotonic()
            freeing: asyncio.Task[None] | None = None
            try:
                whip = await self._current_whip()
                if self._location is not None and outage.attempts:
                    # out of reach so far: this DELETE probes the path before anything else
                    await self._free_stale(began)
                if self._location is not None:
                    # the resource goes while the offer gathers; the POST waits for it
                    freeing = asyncio.ensure_future(self._free_stale(began))
                source = await self._current_source()
                connection = await self._connect(whip, source, before_post=freeing)
            except WhipUnreachable as exc:
                self._stats.last_error = str(exc)
                outage.failed(exc, clock.monotonic())
                delay = self._options.unreachable_backoff.delay(outage.attempts - 1, self._rng)
                await self._pause(delay - (clock.monotonic() - began), wake_on_network=True)
                continue
            except WhipError as exc:
                outage.ended(clock.monotonic())
                self._stats.last_error = str(exc)
                if exc.status in GONE_STATUSES:
                    if refetches >= MAX_REFETCHES or not await self._refetch_after(exc):
                        raise
                    refetches += 1
                    continue
                if exc.status not in RETRY_STATUSES:
                    raise
                if exc.status in REFUSED_STATUSES:
                    refusals += 1
                    if await self._after_refusal(exc, refusals):
                        attempt = 0  # the stale resource is gone: nothing left to wait for
                        continue
                else:
                    refusals = 0
                    logger.warning("WHIP POST answered %d; retrying", exc.status)
            except _NoWhipUrl as exc:
                self._stats.last_error = str(exc)
            except MediaError as exc:
                if self._stop_event.is_set():
                    return
                outage.ended(clock.monotonic())
                refusals = 0
                self._stats.last_error = str(exc)
                logger.warning("publish attempt failed: %s", exc)
            else:
                outage.ended(clock.monotonic())
                refetches = 0
                refusals = 0
                began = clock.monotonic()
                loss = await self._watch(connection)
                if loss is None:
                    # a DELETE refused now is tried once more by `_run`'s final teardown
                    await self._teardown()
                    return
                logger.warning("connection lost (%s); reconnecting", loss.reason)
                # the path is gone or broken: its kept-alive connections lead nowhere, and
                # the DELETE waits for the next attempt, under the unreachable pace
                await whip.drop_connections()
                await self._teardown(delete=False)
                self._stats.last_error = loss.reason
                self._stats.reconnects += 1
                if loss.at_once or clock.monotonic() - began >= STABLE_AFTER:
                    attempt = 0
                    continue
                # a connection that dies young is retried with backoff, not in a tight loop
            finally:
                _settle(freeing)
            await self._pause(self._options.backoff.delay(attempt, self._rng), wake_on_network=True)
            attempt += 1

    async def _after_refusal(self, exc: WhipError, refusals: int) -> bool:
        """403/409: DELETE what we hold so the next POST can succeed (True when a DELETE
        succeeded), or raise."""
        reason = " ".join(exc.text.split())[:120] or "no reason given"
        if exc.status == 403 and self._location is None:
            raise WhipError(
                403,
                f"refused: the WHIP server rejects our credentials, and we hold no resource"
                f" there to free ({reason})",
            ) from exc
        if refusals > self._options.max_refusals:
            raise WhipError(
                exc.status,
                f"still refused after {self._options.max_refusals} DELETE-and-retry rounds"
                f" ({reason})",
            ) from exc
        logger.warning("WHIP POST refused (%d): deleting the last resource", exc.status)
        return await self._delete_location()

    async def _refetch_after(self, exc: WhipError) -> bool:
        """After a 404/410: True when a fresh whipUrl is in place (or worth waiting for)."""
        if self._options.refetch is None:
            return False
        try:
            fresh = await self._options.refetch()
        except LuxxonError as refetch_error:
            # the API is unreachable for now: try again after the backoff
            logger.warning("re-fetching the whipUrl failed: %s", refetch_error)
            await self._pause(self._options.backoff.delay(0, self._rng))
            return True
        if fresh is None:
            return False
        logger.warning("whipUrl answered %d; using the re-fetched one", exc.status)
        await self._replace_url(fresh)
        await self._delete_orphan()
        return True

    async def _still_live(self) -> bool:
        assert self._options.is_live is not None
        try:
            return await self._options.is_live()
        except LuxxonError as exc:
            # not knowing is not "ended": keep publishing, the API will answer again
            logger.warning("could not check the session state: %s", exc)
            return True

    async def _pause(self, seconds: float, *, wake_on_network: bool = False) -> None:
        """Wait `seconds` (raise `_StopRequested` on stop); `wake_on_network`: also end the
        wait when a path may be back (PATH_BACK since the last attempt began)."""
        wake = (self._path_back,) if wake_on_network and self._netwatch is not None else ()
        if await sleep_or_event(self._options.clock, seconds, self._stop_event, *wake):
            raise _StopRequested

    def _whip_client(self, url: Secret) -> WhipClient:
        return WhipClient(url, token=self._options.token, transport=self._options.transport)

    async def _replace_url(self, url: Secret) -> None:
        if self._whip is not None:
            await self._whip.aclose()
        self._whip = self._whip_client(url)

    async def _current_whip(self) -> WhipClient:
        if self._whip is None:
            assert self._options.refetch is not None
            try:
                fresh = await self._options.refetch()
            except LuxxonError as exc:
                raise _NoWhipUrl(f"no whipUrl yet: {exc}") from exc
            if fresh is None:
                raise _NoWhipUrl("no whipUrl yet: the API did not give one")
            await self._replace_url(fresh)
            await self._delete_orphan()
        assert self._whip is not None
        return self._whip

    async def _current_source(self) -> MediaSource:
        if self._source is None:
            assert self._open_source is not None
            self._source = await self._open_source()
        return self._source

    async def _close_source(self) -> None:
        source, self._source = self._source, None
        if source is not None:
            await source.close()

    # -- one connection ------------------------------------------------------------------

    async def _connect(
        self, whip: WhipClient, source: MediaSource, *, before_post: Awaitable[None] | None = None
    ) -> Connection:
        self._stats.new_connection()
        estimator = self._estimator_for(source)
        estimator.restart_stream()
        adaptive = self._options.adaptive
        if adaptive and source.kind == "h264" and self._switch is None:
            self._switch = PassthroughSwitch(transcode=self._options.video.transcode)
            # the receiver may hold holes of the old mode it will never get repaired
            self._switch.on_switch(lambda _: self._flush_receiver())
        video = video_track(
            source,
            self._options.video,
            adaptive=adaptive,
            switch=self._switch,
            now=self._options.clock.monotonic,
            on_encoder=self._stats.encoder_opened,
            on_ladder_step=self._stats.ladder_stepped,
        )
        if video.encoder is not None:
            self._stats.encoder = video.encoder
        self._video = video
        self._retarget()
        connection = await open_connection(
            whip,
            source,
            video.track,
            video.codec,
            ice_servers=(*self._options.ice_servers, *self._announced_ice),
            estimator=estimator,
            enforce=adaptive,
            clock=self._options.clock,
            on_frame=self._stats.count_frame,
            on_resource=self._hold,
            before_post=before_post,
        )
        connection.tap.on_change(lambda _: self._retarget())
        connection.tap.on_collapse(lambda _: self._request_keyframe())
        connection.tap.wanted_bps = self._wanted_bps
        self._connection = connection
        return connection

    def _estimator_for(self, source: MediaSource) -> BandwidthEstimator:
        """The publisher's one estimator, kept across connections (the link is the same)."""
        if self._estimator is None:
            cap = float(self._options.video.bitrate)
            # a camera's stream is not ours to cap: the estimate may go as high as the link
            ceiling = cap if source.kind == "raw" else max(cap, PASSTHROUGH_CEILING_BPS)
            # start where a fixed-rate publisher would: the link says soon enough if not
            self._estimator = BandwidthEstimator(
                max_bps=ceiling, start_bps=ceiling, clock=self._options.clock
            )
        return self._estimator

    def _flush_receiver(self) -> None:
        """Have the next keyframe start past a sequence jump (rtcp_tap.SEQUENCE_JUMP)."""
        if self._connection is not None:
            self._connection.tap.request_jump()

    def _repair_holes(self) -> None:
        """Retransmissions refused by the budget, or no longer possible, left holes, which
        the tap flushes at the next keyframe: ask our encoder for one when the tap says
        so (within the PLI rate limit, again later if it refused)."""
        if self._connection is not None and self._connection.tap.keyframe_for_holes():
            self._request_keyframe()

    def _request_keyframe(self) -> None:
        """Ask our encoder (or the transcoder) for a keyframe; a camera's own cannot be."""
        track = self._video.track if self._video is not None else None
        request_keyframe = getattr(track, "request_keyframe", None)
        if request_keyframe is not None:
            request_keyframe()

    def _wanted_bps(self) -> float:
        """What the sender would send (wire bit/s) if the link allowed, when that is more
        than it is allowed now (else 0): a camera being transcoded wants enough to go back
        to passthrough, our encoder on a lower ladder rung wants its cap."""
        if self._switch is not None:
            if self._switch.mode is PassthroughMode.PASSTHROUGH:
                return 0.0
            camera = self._switch.camera_bps(self._options.clock.monotonic()) or 0.0
            return camera * PASSTHROUGH_UP_MARGIN * PROBE_OVER_WANTED
        h264 = self._video.h264 if self._video is not None else None
        ladder = h264.ladder if h264 is not None else None
        if ladder is None or ladder.index == 0:
            return 0.0
        return float(self._options.video.bitrate)

    def _retarget(self) -> None:
        """Hand the estimate to what follows it (and let its hysteresis timers run)."""
        control = self._video.control if self._video is not None else None
        if control is None or self._estimator is None or not self._options.adaptive:
            return
        target = self._estimator.estimate_bps * ENCODER_SHARE
        snapshot = self._estimator.snapshot()
        if self._switch is not None:
            self._switch.congested = snapshot.state is RateState.DECREASE
            self._switch.queue_or_loss = snapshot.loss > 0 or not snapshot.delay_flat
            self._switch.passed_bps = snapshot.passed_bps
            self._switch.padding = self._estimator.padding_heard
        # what the link passed: the ladder's step up waits for it, and 5 % random loss
        # under what arrived held 360p15 at its ceiling while the estimate passed 900 kbit/s
        control.set_target(
            target,
            self._options.clock.monotonic(),
            snapshot.passed_bps,
            keep_headroom=snapshot.keep_headroom,
        )

    def _hold(self, resource: WhipResource) -> None:
        assert self._whip is not None
        self._location = resource.location
        self._resource_file.save(self._whip.whip_url, self._location)
        if resource.ice_servers:
            # only the next offer can use them: this one has gathered already
            self._announced_ice = resource.ice_servers

    async def _watch(self, connection: Connection) -> _Loss | None:
        """Sample stats each second; return why the connection must go, or None to stop."""
        clock = self._options.clock
        changed = asyncio.Event()
        connection.on_change(changed.set)
        if self._netwatch is not None:
            self._netwatch.watch(())
        self._moves.clear()
        started = clock.monotonic()
        timed = False
        connected_at: float | None = None
        last_mark: tuple[float, int] | None = None
        last_report_at = started
        while True:
            now = clock.monotonic()
            failure = connection.failure()
            if failure is not None:
                return _Loss(failure)
            lost_path = next((c for c in self._moves if c.reason in PATH_LOST), None)
            if lost_path is not None:
                return _Loss(f"network changed: {lost_path}", at_once=True)
            self._moves.clear()
            self._moved.clear()
            if connection.connected:
                if connected_at is None:
                    connected_at = last_report_at = now
                    self._watch_address(connection)
                    self._set_state(PublisherState.PUBLISHING)
            elif now - started > self._options.connect_timeout:
                return _Loss(f"not connected after {self._options.connect_timeout:.0f} s")
            if not timed and connection.timings.first_frame is not None:
                timed = True
                self._log_timings(connection.timings)
            if connected_at is not None:
                report = await connection.report()
                self._stats.add(now, report)
                self._retarget()
                self._repair_holes()
                if report.remote_mark != last_mark:
                    last_mark, last_report_at = report.remote_mark, now
                elif now - last_report_at > self._options.stale_after:
                    return _Loss(f"no receiver report for {now - last_report_at:.1f} s")
            changed.clear()
            if await sleep_or_event(clock, 1.0, self._stop_event, changed, self._moved):
                return None

    def _log_timings(self, timings: ConnectTimings) -> None:
        """One line on where a connection's set-up spent its time (no URL, nothing secret)."""
        deleted, self._deleted_in = self._deleted_in, None
        # the DELETE of a stale resource runs alongside the gathering, the POST after both
        before = "" if deleted is None else f"DELETE {deleted:.3f} s; "
        age = process_age()
        since_start = ""
        if age is not None and timings.first_frame is not None:
            first_frame_age = age - (self._options.clock.monotonic() - timings.first_frame)
            since_start = f"; first frame {first_frame_age:.3f} s after the process started"
        logger.info(
            "connection %d set-up (s): %s%s%s",
            self._stats.reconnects + 1,
            before,
            timings.describe(),
            since_start,
        )

    def _watch_address(self, connection: Connection) -> None:
        address = connection.local_address()
        if self._netwatch is not None and address is not None:
            self._netwatch.watch([address])

    async def _teardown(self, *, delete: bool = True) -> None:
        connection, self._connection = self._connection, None
        last: SenderReport | None = None
        if connection is not None:
            # before the await: `stats()` no longer sees this connection, and its counters
            # must not dip meanwhile (Prometheus reads a dip as a reset)
            self._stats.add_repairs(connection.tap.repair_counts())
            last = await connection.report()
        self._stats.connection_closed(last)
        if delete:
            await self._delete_location()
        if connection is not None:
            await connection.close()

    # -- the resource and its file -------------------------------------------------------

    async def _free_stale(self, began: float) -> None:
        """DELETE the resource of a lost connection (or a dead process) before the POST it
        would block; an unreachable server raises `WhipUnreachable`."""
        if self._location is not None:
            await self._delete_location(unreachable_raises=True)
            self._deleted_in = self._options.clock.monotonic() - began

    async def _delete_location(self, *, unreachable_raises: bool = False) -> bool:
        """DELETE the resource we hold; True when one was deleted. `unreachable_raises`:
        a server out of reach raises `WhipUnreachable` (a POST would not get there either)."""
        location = self._location
        if location is None or self._whip is None:
            return False
        try:
            await self._whip.delete(location)
        except WhipUnreachable:
            if unreachable_raises:
                raise
            logger.info("DELETE of the previous WHIP resource failed: the server is unreachable")
            return False
        except MediaError as exc:
            # best effort, kept for later: a 403 on the next POST asks for this DELETE again
            logger.info("DELETE of the previous WHIP resource failed: %s", exc)
            return False
        self._location = None
        self._resource_file.save(self._whip.whip_url, None)
        return True

    async def _delete_orphan(self) -> None:
        """Take up the resource a previous process left behind for this whipUrl: the next
        attempt DELETEs it before its POST."""
        if self._whip is None:
            return
        location = self._resource_file.load(self._whip.whip_url)
        if location is not None:
            logger.info("deleting the WHIP resource a previous run left behind")
            self._location = location


def _settle(task: asyncio.Task[None] | None) -> None:
    """A DELETE the attempt no longer waits for: cancelled if running, its outcome taken
    (already raised through the attempt, or moot) so asyncio does not report it."""
    if task is None:
        return
    if not task.done():
        task.cancel()
    elif not task.cancelled():
        task.exception()


def process_age() -> float | None:
    """Seconds since this process started (Linux /proc, 10 ms steps), None where unknown."""
    try:
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        started = int(fields[19]) / os.sysconf("SC_CLK_TCK")
        return time.clock_gettime(time.CLOCK_BOOTTIME) - started
    except (OSError, ValueError, IndexError, AttributeError):
        return None


class _Outage:
    """Attempts in a row that could not reach the WHIP server: one warning when it starts,
    one line when it ends, quiet in between (a drone out of coverage tries for hours)."""

    def __init__(self) -> None:
        self.attempts = 0
        self._since = 0.0

    def failed(self, exc: WhipUnreachable, now: float) -> None:
        if self.attempts == 0:
            self._since = now
            logger.warning(
                "WHIP server unreachable (%s); trying again about every second, and at once"
                " when the network changes",
                exc,
            )
        else:
            logger.debug("WHIP server still unreachable (%s)", exc)
        self.attempts += 1

    def ended(self, now: float) -> None:
        if self.attempts:
            logger.info(
                "WHIP server reachable again after %.1f s (%d attempts)",
                now - self._since,
                self.attempts,
            )
        self.attempts = 0


class _Loss(NamedTuple):
    """Why a connection had to go, and whether to re-offer without a backoff."""

    reason: str
    at_once: bool = False


class _NoWhipUrl(LuxxonError):
    """The API has not given a whipUrl yet (it is asked again after the backoff)."""
