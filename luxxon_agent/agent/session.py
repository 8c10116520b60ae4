"""SessionRun: one session of one operator, from ASSIGNED (or a resumed LIVE) to the end.

    ASSIGNED --start--> LIVE: publisher + sampler + uploader
        ...poll GET /sessions/:id every poll_seconds...
    consumer ended  -> stop video and sampling (the server meters without us)
    maxDuration     -> stop sampling, drain the spool, DELETE the WHIP resource, POST /end
    agent stopping  -> on_sigterm = "end": as maxDuration; "leave": DELETE the WHIP
                       resource, stop sampling, keep the state file for the restart

The state file is written before each step that a crash could interrupt, so
a restart knows the session and resumes it (same whipUrl via producer-token).
A LIVE session's record carries startedAt, maxDurationSeconds and the chain id,
so a restart while the API is unreachable samples into the spool at once and
reconciles (session state, producer token, video, upload) when the API is back.

Before /end the spool is drained for as long as it makes progress (more samples
delivered within `DRAIN_PROGRESS_WINDOW_S`), at most `DRAIN_MAX_S` (on SIGTERM
`SHUTDOWN_DRAIN_MAX_S`). A late /end costs the operator nothing: the stub's meter
(stub/metering.py `meter_session`) ends at min(now, startedAt + maxDurationSeconds).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from luxxon_agent.agent.config import OnSigterm
from luxxon_agent.backoff import Backoff
from luxxon_agent.clock import sleep_or_event
from luxxon_agent.errors import ApiError, LuxxonError, MediaError, TransportError
from luxxon_agent.meter import earnings, session_seconds
from luxxon_agent.models import Session, SessionState
from luxxon_agent.secret import Secret

if TYPE_CHECKING:
    from luxxon_agent.agent.operator import OperatorRunner
    from luxxon_agent.agent.workspace import WorkspaceLink
    from luxxon_agent.clock import Clock
    from luxxon_agent.telemetry import DrainResult, Sampler, Spool, Tick, Uploader
    from luxxon_agent.video import MediaSource, Publisher

logger = logging.getLogger(__name__)

DRAIN_PROGRESS_WINDOW_S = 20.0
"""The drain before /end goes on while each such window delivers at least one sample."""
DRAIN_MAX_S = 600.0
"""Overall bound on the drain before /end at maxDuration (a 10-minute backlog at 1 Hz
uploads in well under that; an API that takes nothing stops it after one window)."""
SHUTDOWN_DRAIN_MAX_S = 60.0
"""Bound on the drain before /end when the agent stops with on_sigterm = "end"."""
END_BUDGET_S = 20.0
"""Stopping the video and POST /end after the drain (the client's own timeout and retries)."""
SAMPLING_STOP_S = 0.2
"""Sampling stops this long before maxDuration: a sample dated after it is refused."""
END_AFTER_S = 0.1
"""/end goes no earlier than this after maxDuration: the meter stops at startedAt +
maxDurationSeconds anyway, so a late /end costs nothing, an early one the last second."""
VIDEO_BACKOFF = Backoff(initial=2.0, maximum=30.0)
"""Between rebuilds of a publisher that gave up (camera gone, WHIP refused)."""


class Outcome(StrEnum):
    CONSUMER_ENDED = "consumer-ended"
    MAX_DURATION = "max-duration"
    STOPPING = "agent-stopping"
    FAILED = "failed"


class SessionRun:
    def __init__(
        self,
        runner: OperatorRunner,
        link: WorkspaceLink,
        session: Session,
        stop: asyncio.Event,
        spool: Spool,
        signer: object,
    ) -> None:
        self.runner = runner
        self.link = link
        self.session = session
        self.stop = stop
        self.spool = spool
        self.signer = signer
        self.client = link.client
        self.clock = link.clock
        self.publisher: Publisher | None = None
        self.sampler: Sampler | None = None
        self.uploader: Uploader | None = None
        self.media: MediaSource | None = None
        self.last_sampler_tick: float | None = None
        self.last_spool_write: float | None = None
        """When a tick last wrote (or had nothing to write) without a spool error."""
        self._video_retry_at: float | None = None
        self._video_attempt = 0
        self._workspace_id = link.workspace_id or link.state.record(runner.label).workspace_id
        self._log = f"{runner.label}/{session.id}"

    def __repr__(self) -> str:
        return f"SessionRun({self._log})"

    @property
    def label(self) -> str:
        return self.runner.label

    def _remember(self, state: str | None) -> None:
        sid = self.session.id if state else None
        snapshot: dict[str, Any] | None = None
        if state == "LIVE":
            snapshot = self.session.to_wire()
            snapshot.pop("whipUrl", None)  # a credential: re-fetched with producer-token
            snapshot.pop("whepUrl", None)
        workspace = self.link.workspace_id or self._workspace_id
        self.link.state.set_session(
            self.label, sid, state, workspace, session=snapshot, chain_id=self.link.known_chain_id
        )

    async def run(self) -> Outcome:
        status = self.runner.status
        status.session_id = self.session.id
        status.availability = "BUSY"
        status.max_duration_seconds = self.session.max_duration_seconds
        status.rate_per_second_micro_usdc = self.session.rate_per_second_micro_usdc
        try:
            if self.session.state is SessionState.LIVE and self.session.started_at is not None:
                # a resumed LIVE session: sampling first, whatever the API says (or doesn't)
                await self._start_telemetry()
            live, whip = await self._go_live()
            if not live:
                return Outcome.CONSUMER_ENDED
            await self._start_pipeline(whip)
            outcome = await self._watch()
            await self._finish(outcome)
            return outcome
        finally:
            await self._teardown()

    # ---- steps -------------------------------------------------------------------------

    async def _go_live(self) -> tuple[bool, Secret | None]:
        """Start an ASSIGNED session, or resume a LIVE one: (still live, its whipUrl).

        The whipUrl is None when a LIVE session is resumed while the API is
        unreachable: telemetry goes on into the spool and `_mind_video` fetches
        the whipUrl once the API answers again.
        """
        session = self.session
        if session.state is SessionState.ASSIGNED:
            self._remember("ASSIGNED")
            try:
                started = await self.client.start(session.id)
            except ApiError as exc:
                if exc.code == "INVALID_STATE":
                    fresh = await self.client.get_session(session.id)
                    if fresh.state.is_running:
                        self.session = fresh  # a start that landed before a crash
                        return await self._go_live()
                    logger.info("%s: not startable (%s); dropping it", self._log, fresh.state)
                    self._remember(None)
                    return False, None
                raise
            self.session = started.session
            whip: Secret | None = Secret(started.whip_url)
            logger.info("%s: started, LIVE", self._log)
        else:
            try:
                whip = await self._resume_whip()
            except _SessionGone as gone:
                logger.info("%s: session is %s; dropping it", self._log, gone)
                self._remember(None)
                return False, None
            except TransportError as exc:
                if session.started_at is None:
                    raise
                self.link.api_failed(exc)
                logger.warning(
                    "%s: API unreachable (%s); resuming offline: sampling into the spool, "
                    "video and upload when the API is back",
                    self._log,
                    exc,
                )
                whip = None
            else:
                self.link.api_ok()
                logger.info("%s: resuming LIVE session on its whipUrl", self._log)
        self._remember("LIVE")
        status = self.runner.status
        status.session_state = SessionState.LIVE.value
        started_at = self.session.started_at
        status.session_started_at = started_at.isoformat() if started_at else None
        return True, whip

    async def _resume_whip(self) -> Secret:
        """The whipUrl of a session to resume; `_SessionGone` if it is over or unknown."""
        try:
            fresh = await self.client.get_session(self.session.id)
        except ApiError as exc:
            if exc.status == 404:
                raise _SessionGone("gone (404)") from None
            raise
        if not fresh.state.is_running:
            raise _SessionGone(fresh.state.value)
        self.session = fresh
        return Secret((await self.client.producer_token(fresh.id)).whip_url)

    async def _start_telemetry(self) -> None:
        from luxxon_agent.telemetry import Uploader

        if self.uploader is None:
            self.uploader = Uploader(self.spool, self.client, clock=self.clock)
            await self.uploader.start()
        await self._mind_sampling()

    async def _start_pipeline(self, whip: Secret | None) -> None:
        await self._start_telemetry()
        if whip is None:
            return  # offline resume: _mind_video opens it once producer-token answers
        try:
            await self._start_video(whip)
        except MediaError as exc:
            # telemetry goes on; _mind_video retries the camera with backoff
            logger.warning("%s: cannot open video: %s", self._log, exc)

    async def _mind_sampling(self) -> None:
        """Start the sampler once the server's chain id is known: samples are signed for it."""
        if self.sampler is not None or self.uploader is None:
            return
        deadline = self._deadline_in()
        if deadline is not None and deadline <= 0:
            return  # a sample dated past maxDuration would only be refused
        chain_id = await self.link.chain_id()
        if chain_id is None:
            return  # the API could not say; asked again at the next poll
        from luxxon_agent.telemetry import Sampler
        from luxxon_agent.telemetry.sampler import DEFAULT_MAX_CLOCK_OFFSET_S

        self.sampler = Sampler(
            spool=self.spool,
            provider=self.runner.latest,
            signer=self.signer,
            session_id=self.session.id,
            chain_id=chain_id,
            clock=self.clock,
            on_tick=self._on_tick,
            on_sample=self.uploader.notify,
            # no sample before the server's startedAt: it would only be refused
            started_at=self.session.started_at,
            max_clock_offset_s=self.link.max_clock_offset_s or DEFAULT_MAX_CLOCK_OFFSET_S,
        )
        await self.sampler.start()

    async def _start_video(self, whip: Secret) -> None:
        from luxxon_agent.video import Publisher, open_media_source

        self.media = await open_media_source(self.runner.op.video, clock=self.clock)
        self.publisher = Publisher(
            whip,
            self.media,
            refetch=self._refetch,
            state_path=self.runner.state_dir / "whip-location.json",
            clock=self.clock,
        )
        await self.publisher.start()

    async def _mind_video(self) -> None:
        """A publisher that gave up (camera gone, WHIP refused) is rebuilt, with backoff."""
        from luxxon_agent.video import PublisherState

        failed = self.media is None or (
            self.publisher is not None and self.publisher.state is PublisherState.FAILED
        )
        if not failed:
            self._video_attempt = 0
            return
        now = self.clock.monotonic()
        if self._video_retry_at is None:
            error = self.publisher.stats().last_error if self.publisher else "no media source"
            delay = VIDEO_BACKOFF.delay(self._video_attempt)
            logger.warning("%s: video failed (%s); retrying in %.0f s", self._log, error, delay)
            self.runner.status.last_error = error
            self._video_retry_at = now + delay
            return
        if now < self._video_retry_at:
            return
        self._video_retry_at = None
        self._video_attempt += 1
        await self._stop_video()
        whip = await self._refetch()
        if whip is None:
            # the API is away (or refuses): ask again soon rather than after a long backoff
            self._video_attempt = min(self._video_attempt, 1)
            return
        try:
            await self._start_video(whip)
        except LuxxonError as exc:
            logger.warning("%s: cannot reopen video: %s", self._log, exc)

    def _on_tick(self, tick: Tick) -> None:
        from luxxon_agent.telemetry import TickOutcome

        now = self.clock.monotonic()
        self.last_sampler_tick = now
        if tick.outcome is not TickOutcome.SPOOL_ERROR:
            self.last_spool_write = now

    async def _refetch(self) -> Secret | None:
        try:
            token = await self.client.producer_token(self.session.id)
        except (ApiError, TransportError) as exc:
            logger.warning("%s: producer-token: %s", self._log, exc)
            return None
        return Secret(token.whip_url)

    async def _watch(self) -> Outcome:
        """Poll the session until the consumer ends it, maxDuration, or the agent stops."""
        poll = self.link.config.agent.poll_seconds
        while True:
            await self._mind_sampling()
            await self._mind_video()
            deadline = self._deadline_in()
            if deadline is not None and deadline <= 0:
                logger.info("%s: maxDuration reached", self._log)
                return Outcome.MAX_DURATION
            wait = poll if deadline is None else min(poll, deadline)
            if await sleep_or_event(self.clock, wait, self.stop):
                return Outcome.STOPPING
            try:
                fresh = await self.client.get_session(self.session.id)
            except (ApiError, TransportError) as exc:
                # the API away (a restart, a network flip): keep publishing, ask again
                self.link.api_failed(exc)
                logger.warning("%s: session poll: %s", self._log, exc)
                continue
            self.link.api_ok()
            self.session = fresh
            if not fresh.state.is_running:
                logger.info("%s: session is %s (ended by the consumer)", self._log, fresh.state)
                return Outcome.CONSUMER_ENDED

    def _deadline_in(self) -> float | None:
        started = self.session.started_at
        if started is None:
            return None
        end = started + timedelta(seconds=self.session.max_duration_seconds - SAMPLING_STOP_S)
        return (end - self.clock.now()).total_seconds()

    async def _finish(self, outcome: Outcome) -> None:
        policy = self.link.config.on_sigterm_for(self.runner.op)
        if outcome is Outcome.STOPPING and policy is OnSigterm.LEAVE:
            await self._stop_video()
            await self._stop_sampling()
            logger.info("%s: left LIVE for the restart to resume", self._log)
            return
        if outcome is Outcome.CONSUMER_ENDED:
            await self._stop_video()
            await self._stop_sampling()
            self._remember(None)
            return
        await self._stop_sampling()
        await self._drain(SHUTDOWN_DRAIN_MAX_S if outcome is Outcome.STOPPING else DRAIN_MAX_S)
        if outcome is Outcome.MAX_DURATION:
            until_end = (self._deadline_in() or 0.0) + SAMPLING_STOP_S + END_AFTER_S
            await self.clock.sleep(until_end)  # the video runs to the last paid moment
        await self._stop_video()
        try:
            ended = await self.client.end(self.session.id)
        except ApiError as exc:
            if exc.code != "INVALID_STATE":
                raise
            ended = await self.client.get_session(self.session.id)
        self.session = ended
        self._remember(None)
        logger.info(
            "%s: ENDED, %s clean second(s), charged %s µUSDC",
            self._log,
            ended.clean_seconds,
            ended.charged_micro_usdc,
        )

    async def _drain(self, bound: float) -> None:
        if self.uploader is None:
            return
        result = await drain_while_progressing(
            self.uploader, self.session.id, self.clock, DRAIN_PROGRESS_WINDOW_S, bound
        )
        if not result.complete:
            logger.warning("%s: %d sample(s) still pending at /end", self._log, result.pending)

    async def _stop_sampling(self) -> None:
        if self.sampler is not None:
            await self.sampler.stop()
            self.sampler = None

    async def _stop_video(self) -> None:
        if self.publisher is not None:
            await self.publisher.stop()
            self.publisher = None
        if self.media is not None:
            await self.media.close()
            self.media = None

    async def _teardown(self) -> None:
        """Whatever happened, nothing of this session keeps running."""
        await self._stop_sampling()
        await self._stop_video()
        if self.uploader is not None:
            await self.uploader.stop()
            self.uploader = None

    # ---- status ------------------------------------------------------------------------

    def refresh_status(self) -> None:
        status = self.runner.status
        if self.publisher is not None:
            stats = self.publisher.stats()
            video = status.video
            video.state = stats.state.value
            video.bitrate_kbps = round(stats.bitrate_bps / 1000, 1)
            video.fps = round(stats.fps, 1)
            video.frames = stats.frames_sent
            video.bytes_sent = stats.bytes_sent
            video.reconnects = stats.reconnects
        try:
            spooled = self.spool.stats(self.session.id)
        except LuxxonError as exc:
            logger.warning("%s: spool stats: %s", self._log, exc)
        else:
            status.telemetry.spooled = spooled.spooled
            status.telemetry.delivered = spooled.delivered
            status.telemetry.pending = spooled.pending
        started = self.session.started_at
        if started is not None:
            live = session_seconds(started, self.clock.now())
            status.live_seconds = min(live, self.session.max_duration_seconds)
            fee = self.link.fee_bps or 0
            status.earned_micro_usdc = earnings(
                status.live_seconds, self.session.rate_per_second_micro_usdc, fee
            ).operator_earned_micro_usdc


class _SessionGone(LuxxonError):
    """A session to resume is over (its state) or unknown to the server."""


async def drain_while_progressing(
    uploader: Uploader, session_id: str, clock: Clock, window: float, bound: float
) -> DrainResult:
    """Drain `session_id`'s backlog while each `window` delivers more, for at most `bound` s."""
    deadline = clock.monotonic() + bound
    delivered = (await uploader.drain(0.0, session_id)).delivered
    while True:
        left = deadline - clock.monotonic()
        result = await uploader.drain(max(0.0, min(window, left)), session_id)
        if result.complete or left <= window or result.delivered <= delivered:
            return result
        delivered = result.delivered
