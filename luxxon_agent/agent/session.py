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

The run gets a `SessionContext` (API, clock, state file, server facts, policy),
never the link that took the session; its `SessionPhase` changes only through
`_set_phase`. Video retries are the publisher's own (it never gives up under
the agent); the run only follows its `on_state` reports.

Before /end the spool is drained for as long as it makes progress (more samples
delivered within `DRAIN_PROGRESS_WINDOW_S`), at most `DRAIN_MAX_S` (on SIGTERM
`SHUTDOWN_DRAIN_MAX_S`). A late /end costs the operator nothing: the stub's meter
(stub/metering.py `meter_session`) ends at min(now, startedAt + maxDurationSeconds).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from luxxon_agent.agent.config import OnSigterm
from luxxon_agent.agent.context import SessionContext
from luxxon_agent.agent.status import SessionPhase, TelemetryStatus, VideoStatus
from luxxon_agent.clock import sleep_or_event
from luxxon_agent.errors import ApiError, LuxxonError, TransportError
from luxxon_agent.meter import earnings, session_seconds
from luxxon_agent.models import Session, SessionState
from luxxon_agent.secret import Secret

if TYPE_CHECKING:
    from luxxon_agent.agent.operator import OperatorRunner
    from luxxon_agent.clock import Clock
    from luxxon_agent.eip712 import KeySigner
    from luxxon_agent.telemetry import DrainResult, Sampler, Spool, Tick, Uploader
    from luxxon_agent.video import MediaSource, Publisher, PublisherState, PublisherStats

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


class Outcome(StrEnum):
    CONSUMER_ENDED = "consumer-ended"
    MAX_DURATION = "max-duration"
    STOPPING = "agent-stopping"
    DROPPED = "dropped"
    """Never went LIVE under us: not startable any more, or over before a resume."""
    FAILED = "failed"

    @property
    def served(self) -> bool:
        """The session went LIVE and this run saw it through (ended, or left for a restart)."""
        return self in (Outcome.CONSUMER_ENDED, Outcome.MAX_DURATION, Outcome.STOPPING)


@dataclass(frozen=True)
class SessionSnapshot:
    """A run's figures, for the status (built by `SessionRun.snapshot`)."""

    session_id: str
    phase: SessionPhase
    started_at: str | None
    max_duration_seconds: int
    rate_per_second_micro_usdc: int
    live_seconds: int
    earned_micro_usdc: int
    """Estimate: live seconds × rate × (1 − fee); the server's meter decides."""
    last_error: str | None
    video: VideoStatus = field(default_factory=VideoStatus)
    telemetry: TelemetryStatus = field(default_factory=TelemetryStatus)


class SessionRun:
    def __init__(
        self,
        runner: OperatorRunner,
        context: SessionContext,
        session: Session,
        stop: asyncio.Event,
        spool: Spool,
        signer: KeySigner,
    ) -> None:
        self.runner = runner
        self.context = context
        self.session = session
        self.stop = stop
        self.spool = spool
        self.signer = signer
        self.client = context.client
        self.clock = context.clock
        self.phase = SessionPhase.ASSIGNED
        self._last_error: str | None = None
        self.video_state: PublisherState | None = None
        """The publisher's state as it last reported it (`on_state`); None before video."""
        self._video_sent = VideoStatus()
        """What the publisher had sent when it was stopped (kept for the status)."""
        self.publisher: Publisher | None = None
        self.sampler: Sampler | None = None
        self.uploader: Uploader | None = None
        self.last_sampler_tick: float | None = None
        self.last_spool_write: float | None = None
        """When a tick last wrote (or had nothing to write) without a spool error."""
        self._telemetry = TelemetryStatus()
        """The spool's counts for this session at the last refresh (`_refresh_telemetry`):
        the status reads these, never SQLite, which blocks (fsync) on the sampler's writes."""
        self._workspace_id = context.workspace_id or context.state.record(runner.label).workspace_id
        self._log = f"{runner.label}/{session.id}"

    def __repr__(self) -> str:
        return f"SessionRun({self._log})"

    @property
    def label(self) -> str:
        return self.runner.label

    def _set_phase(self, phase: SessionPhase) -> None:
        if phase is not self.phase:
            logger.info("%s: %s -> %s", self._log, self.phase.value, phase.value)
            self.phase = phase

    def _remember(self, state: SessionState | None) -> None:
        sid = self.session.id if state else None
        snapshot: dict[str, Any] | None = None
        if state is SessionState.LIVE:
            snapshot = self.session.to_wire()
            snapshot.pop("whipUrl", None)  # a credential: re-fetched with producer-token
            snapshot.pop("whepUrl", None)
        self.context.state.set_session(
            self.label,
            sid,
            state,
            self._workspace_id,
            session=snapshot,
            chain_id=self.context.server.known_chain_id,
        )

    async def run(self) -> Outcome:
        try:
            if self.session.state is SessionState.LIVE and self.session.started_at is not None:
                # a resumed LIVE session: sampling first, whatever the API says (or doesn't)
                await self._start_telemetry()
            live, whip = await self._go_live()
            if not live:
                return Outcome.DROPPED
            await self._start_pipeline(whip)
            outcome = await self._watch()
            self._set_phase(SessionPhase.ENDING)
            await self._finish(outcome)
            return outcome
        finally:
            await self._teardown()
            self._set_phase(SessionPhase.DONE)

    # ---- steps -------------------------------------------------------------------------

    async def _go_live(self) -> tuple[bool, Secret | None]:
        """Start an ASSIGNED session, or resume a LIVE one: (still live, its whipUrl).

        The whipUrl is None when a LIVE session is resumed while the API is
        unreachable: telemetry goes on into the spool and the publisher fetches
        the whipUrl once the API answers again.
        """
        session = self.session
        if session.state is SessionState.ASSIGNED:
            self._remember(SessionState.ASSIGNED)
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
                self.context.api_health.failed(exc)
                logger.warning(
                    "%s: API unreachable (%s); resuming offline: sampling into the spool, "
                    "video and upload when the API is back",
                    self._log,
                    exc,
                )
                whip = None
            else:
                self.context.api_health.ok()
                logger.info("%s: resuming LIVE session on its whipUrl", self._log)
        self._remember(SessionState.LIVE)
        self._set_phase(SessionPhase.LIVE)
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
        # whip is None on an offline resume: the publisher asks producer-token for it
        await self._start_video(whip)

    async def _mind_sampling(self) -> None:
        """Start the sampler once the server's chain id is known: samples are signed for it."""
        if self.sampler is not None or self.uploader is None:
            return
        deadline = self._deadline_in()
        if deadline is not None and deadline <= 0:
            return  # a sample dated past maxDuration would only be refused
        chain_id = await self.context.server.chain_id()
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
            max_clock_offset_s=self.context.server.max_clock_offset_s or DEFAULT_MAX_CLOCK_OFFSET_S,
        )
        await self.sampler.start()

    async def _start_video(self, whip: Secret | None) -> None:
        from luxxon_agent.video import Publisher, PublisherOptions, open_media_source

        url, clock = self.runner.op.video, self.clock

        async def open_camera() -> MediaSource:
            return await open_media_source(url, clock=clock)

        # persistent: the publisher retries a refused endpoint or a lost camera by itself
        options = PublisherOptions(
            refetch=self._refetch,
            state_path=self.runner.state_dir / "whip-location.json",
            persistent=True,
            clock=clock,
        )
        self.publisher = Publisher(whip, open_camera, options, on_state=self._on_video_state)
        await self.publisher.start()

    def _on_video_state(self, state: PublisherState, stats: PublisherStats) -> None:
        """The publisher's every state change: what the status and the watchdog go by."""
        from luxxon_agent.video import PublisherState

        previous, self.video_state = self.video_state, state
        if state in (PublisherState.BLOCKED, PublisherState.FAILED):
            self._last_error = stats.last_error
            logger.warning("%s: video %s: %s", self._log, state.value, stats.last_error)
        elif state is PublisherState.PUBLISHING and previous in (
            PublisherState.BLOCKED,
            PublisherState.RECONNECTING,
        ):
            logger.info("%s: video publishing again (%d reconnects)", self._log, stats.reconnects)

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

    async def _refresh_telemetry(self) -> None:
        """Re-read this session's spool counts, in a thread (the spool's calls block)."""
        try:
            stats = await asyncio.to_thread(self.spool.stats, self.session.id)
        except LuxxonError as exc:
            logger.warning("%s: spool stats: %s", self._log, exc)
            return
        self._telemetry = TelemetryStatus(stats.spooled, stats.delivered, stats.pending)

    async def _watch(self) -> Outcome:
        """Poll the session until the consumer ends it, maxDuration, or the agent stops."""
        poll = self.context.policy.poll_seconds
        while True:
            await self._mind_sampling()
            await self._refresh_telemetry()
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
                self.context.api_health.failed(exc)
                logger.warning("%s: session poll: %s", self._log, exc)
                continue
            self.context.api_health.ok()
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
        policy = self.context.policy.on_sigterm
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
        self._telemetry = TelemetryStatus(
            result.delivered + result.pending + result.rejected, result.delivered, result.pending
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
            self._video_sent = self._video_figures()
            self.publisher = None

    async def _teardown(self) -> None:
        """Whatever happened, nothing of this session keeps running."""
        await self._stop_sampling()
        await self._stop_video()
        if self.uploader is not None:
            await self.uploader.stop()
            self.uploader = None
            await self._refresh_telemetry()  # the final counts, kept in the status

    # ---- status ------------------------------------------------------------------------

    def frames_sent(self) -> int | None:
        """Frames the current publisher has sent, None without one (for the watchdog)."""
        return self.publisher.stats().frames_sent if self.publisher is not None else None

    def _video_figures(self) -> VideoStatus:
        """The publisher's figures now; once it is stopped, its counters (rates are 0).

        The one mapping from `PublisherStats` to the status (bit/s shown as kbit/s)."""
        if self.publisher is None:
            sent = self._video_sent
            return VideoStatus(
                frames=sent.frames,
                bytes_sent=sent.bytes_sent,
                reconnects=sent.reconnects,
                freezes=sent.freezes,
                retransmitted_bytes=sent.retransmitted_bytes,
                padding_bytes=sent.padding_bytes,
                ladder_steps=sent.ladder_steps,
                mode_switches=sent.mode_switches,
                keyframe_requests=sent.keyframe_requests,
                keyframe_requests_refused=sent.keyframe_requests_refused,
                repairs_refused=sent.repairs_refused,
                repairs_unavailable=sent.repairs_unavailable,
            )
        stats = self.publisher.stats()
        return VideoStatus(
            state=stats.state.value,
            bitrate_kbps=_kbps(stats.bitrate_bps),
            fps=round(stats.fps, 1),
            frames=stats.frames_sent,
            bytes_sent=stats.bytes_sent,
            reconnects=stats.reconnects,
            freezes=stats.freezes,
            adaptive=stats.adaptive,
            estimate_kbps=_kbps(stats.estimate_bps) if stats.estimate_bps is not None else None,
            target_kbps=_kbps(stats.target_bps) if stats.target_bps is not None else None,
            sent_kbps=_kbps(stats.sent_bps),
            loss=round(stats.loss, 4),
            rtt_ms=round(stats.rtt_ms, 1) if stats.rtt_ms is not None else None,
            retransmitted_bytes=stats.retransmitted_bytes,
            padding_bytes=stats.padding_bytes,
            rung=stats.rung,
            ladder_steps=stats.ladder_steps,
            mode=stats.mode,
            mode_switches=stats.mode_switches,
            mode_reason=stats.mode_reason,
            transport_cc=stats.transport_cc,
            keyframe_requests=stats.keyframe_requests,
            keyframe_requests_refused=stats.keyframe_requests_refused,
            repairs_refused=stats.repairs_refused,
            repairs_unavailable=stats.repairs_unavailable,
        )

    def snapshot(self) -> SessionSnapshot:
        """This run's figures now: phase, video, telemetry, live seconds, earnings estimate."""
        session = self.session
        live = 0
        started = session.started_at
        if started is not None:
            live = min(session_seconds(started, self.clock.now()), session.max_duration_seconds)
        fee = self.context.server.fee_bps or 0
        earned = earnings(live, session.rate_per_second_micro_usdc, fee)
        return SessionSnapshot(
            session_id=session.id,
            phase=self.phase,
            started_at=started.isoformat() if started is not None else None,
            max_duration_seconds=session.max_duration_seconds,
            rate_per_second_micro_usdc=session.rate_per_second_micro_usdc,
            live_seconds=live,
            earned_micro_usdc=earned.operator_earned_micro_usdc,
            last_error=self._last_error,
            video=self._video_figures(),
            telemetry=self._telemetry,
        )


def _kbps(bps: float) -> float:
    return round(bps / 1000, 1)


async def still_ours(context: SessionContext, label: str, session: Session) -> Session | None:
    """The session again if it is still ASSIGNED or LIVE, else None (and forgotten).

    Asked before a crashed run is retried; while the API cannot say, the
    session is kept and the retry goes ahead.
    """
    try:
        fresh: Session | None = await context.client.get_session(session.id)
    except ApiError as exc:
        if exc.status != 404:
            logger.warning("session %s: %s; will retry", session.id, exc)
            return session
        fresh = None
    except LuxxonError as exc:
        logger.warning("session %s: %s; will retry", session.id, exc)
        return session
    if fresh is not None and (fresh.state is SessionState.ASSIGNED or fresh.state.is_running):
        return fresh
    state = fresh.state if fresh is not None else "unknown to the server"
    logger.info("session %s is %s; giving it up", session.id, state)
    if context.state.record(label).session_id == session.id:
        context.state.set_session(label, None, None, None)
    return None


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
