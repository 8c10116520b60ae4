"""`Sampler`: once per second, on the second, sign the freshest fix and spool it.

Honest gaps: when the fix provider has no fresh fix at a tick, or its fix is
the one already sampled, no sample is taken. A position is never invented,
interpolated or repeated; the meter turns the gap into a failed second.

`capturedAt` is the tick: the whole second of the injected clock at which
the fix was current (its age bounded by the provider's freshness, e.g.
`LatestFix(max_age_s=2)`). Whole seconds make samples one per second and
make a restarted agent unable to sample the same second twice.

The one exception is `start()`: it samples at once, at the current
millisecond, so a session whose startedAt falls just before a whole second
is covered from its first second. It skips that when the session has not
started yet (`started_at`), when there is no fresh fix, or when the spool
already holds a sample of this session in the current second (a restart).

The host clock dates samples; the fix carries the receiver's (GPS) time.
Each tick compares the two for a fix that arrived since the previous tick
(`clock_offset_s`, host minus receiver, ±0.5 s) and logs one warning when
the offset exceeds `max_clock_offset_s` (pass GET /config's
`telemetry_max_future_skew_ms`): beyond it the server refuses samples as
CAPTURED_IN_FUTURE, or `LatestFix` finds no fix fresh at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import statistics
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from luxxon_agent.clock import SYSTEM_CLOCK, Clock
from luxxon_agent.eip712 import KeySigner
from luxxon_agent.errors import TelemetryError
from luxxon_agent.telemetry.signing import TelemetryPayload, datetime_to_ms, sign_sample
from luxxon_agent.telemetry.spool import Spool

logger = logging.getLogger(__name__)

DEFAULT_MAX_CLOCK_OFFSET_S = 2.0
"""The stub's `telemetry_max_future_skew_ms` (2000); the agent passes GET /config's value."""
_OFFSET_WINDOW = 5
"""Observations the clock offset is the median of (one per new fix)."""


class FixLike(Protocol):
    """What the sampler reads from a fix (luxxon_agent.position.Fix fits)."""

    @property
    def time(self) -> datetime: ...
    @property
    def lat(self) -> float: ...
    @property
    def lng(self) -> float: ...
    @property
    def accuracy_m(self) -> float | None: ...
    @property
    def source(self) -> object: ...


class FixProvider(Protocol):
    """Answers "where are we now?" (luxxon_agent.position.LatestFix fits)."""

    def current(self, now: datetime | None = None) -> FixLike | None: ...


class TickOutcome(enum.StrEnum):
    SAMPLED = "sampled"
    NO_FIX = "no-fix"
    """No fresh fix at this tick."""
    REPEATED = "repeated"
    """The freshest fix was already sampled at an earlier tick."""
    NO_ACCURACY = "no-accuracy"
    """The fix carries no accuracy estimate, so the geofence cannot be checked."""
    ALREADY_SPOOLED = "already-spooled"
    """The spool already holds a sample for this second (a restart within it)."""
    LATE = "late"
    """The loop woke a second or more after the tick (suspended, overloaded): skipped."""
    SPOOL_ERROR = "spool-error"
    """The spool could not store the sample (disk full, I/O error): logged, then lost."""


@dataclass(frozen=True, slots=True)
class Tick:
    """What happened at one tick (passed to the listener)."""

    at: datetime
    outcome: TickOutcome


def source_label(fix: FixLike) -> str:
    """The sample's `source` string: the position source kind ("gpsd", "serial", "sim", ...)."""
    value = getattr(fix.source, "value", fix.source)
    return str(value)[:32] or "gps"


class Sampler:
    """Samples `provider` at 1 Hz for one session, signing with `signer`, into `spool`.

    `async with Sampler(...)` or `start()`/`stop()`; `on_tick` (optional) is
    called with a `Tick` after every tick, and `on_sample` (optional, e.g.
    `uploader.notify`) after each sample is spooled.
    """

    def __init__(
        self,
        *,
        spool: Spool,
        provider: FixProvider,
        signer: KeySigner,
        session_id: str,
        chain_id: int,
        clock: Clock = SYSTEM_CLOCK,
        on_tick: Callable[[Tick], None] | None = None,
        on_sample: Callable[[], None] | None = None,
        started_at: datetime | None = None,
        max_clock_offset_s: float = DEFAULT_MAX_CLOCK_OFFSET_S,
    ) -> None:
        self._spool = spool
        self._provider = provider
        self._signer = signer
        self._session_id = session_id
        self._chain_id = chain_id
        self._clock = clock
        self._on_tick = on_tick
        self._on_sample = on_sample
        self._started_at = started_at
        self._max_clock_offset_s = max_clock_offset_s
        self._last_fix_time: datetime | None = None
        self._seen_report_time: datetime | None = None
        self._offsets: deque[float] = deque(maxlen=_OFFSET_WINDOW)
        self._clock_offset_s: float | None = None
        self._offset_warned = False
        self._last_outcome: TickOutcome | None = None
        self._task: asyncio.Task[None] | None = None
        self.counts: dict[TickOutcome, int] = dict.fromkeys(TickOutcome, 0)
        """Ticks by outcome since start."""

    @property
    def session_id(self) -> str:
        return self._session_id

    @property
    def clock_offset_s(self) -> float | None:
        """Host clock minus the receiver's (GPS) time, ±0.5 s; None until measured."""
        return self._clock_offset_s

    async def start(self) -> None:
        """Take the first sample now (see the module doc), then tick on whole seconds."""
        if self._task is not None:
            return
        await self._sample_on_start()
        self._task = asyncio.create_task(self._run(), name=f"sampler:{self._session_id}")

    async def _sample_on_start(self) -> None:
        now = self._clock.now()
        at = now.replace(microsecond=now.microsecond - now.microsecond % 1000)
        self._seen_report_time = self._report_time(at)
        if at.microsecond == 0:
            return  # on a whole second: the first tick is now
        if self._started_at is not None and at < self._started_at:
            return  # the server would refuse it as captured before the session
        if self._provider.current(at) is None:
            return
        newest = await asyncio.to_thread(self._spool.newest_capture_ms, self._session_id)
        if newest is not None and newest >= datetime_to_ms(at.replace(microsecond=0)):
            return  # a restart within a second this session already has a sample for
        await self.sample_at(at)

    async def stop(self) -> None:
        """Stop ticking; a sample being written finishes first. Safe to call twice."""
        task, self._task = self._task, None
        self._on_tick = self._on_sample = None
        if task is None:
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def __aenter__(self) -> Sampler:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def _run(self) -> None:
        tick = _next_whole_second(self._clock.now(), inclusive=True)
        previous: datetime | None = None
        while True:
            await self._clock.sleep((tick - self._clock.now()).total_seconds())
            on_time = self._clock.now() - tick < _SECOND
            self._observe_clock(tick, on_time and previous == tick - _SECOND)
            previous = tick
            if not on_time:
                # a stalled loop (suspend, overload) skips the second instead of back-filling it
                self._record(tick, TickOutcome.LATE)
            else:
                # a stop() mid-write lets the sample reach the spool before the task ends
                write = asyncio.ensure_future(self.sample_at(tick))
                try:
                    await asyncio.shield(write)
                except asyncio.CancelledError:
                    await write
                    raise
            tick = max(tick + _SECOND, _next_whole_second(self._clock.now(), inclusive=False))

    async def sample_at(self, tick: datetime) -> TickOutcome:
        """Take (or decline) the sample for the second `tick`."""
        fix = self._provider.current(tick)
        if fix is None:
            outcome = TickOutcome.NO_FIX
        elif fix.time == self._last_fix_time:
            outcome = TickOutcome.REPEATED
        elif fix.accuracy_m is None:
            outcome = TickOutcome.NO_ACCURACY
        else:
            payload = TelemetryPayload.from_reading(
                self._session_id, tick, fix.lat, fix.lng, fix.accuracy_m, source_label(fix)
            )
            sample = sign_sample(self._signer, payload, self._chain_id)
            try:
                added = await asyncio.to_thread(self._spool.append, self._session_id, sample)
            except TelemetryError as exc:
                logger.error("Sampler(%s): %s", self._session_id, exc)
                outcome = TickOutcome.SPOOL_ERROR
            else:
                self._last_fix_time = fix.time
                outcome = TickOutcome.SAMPLED if added else TickOutcome.ALREADY_SPOOLED
        self._record(tick, outcome)
        if outcome is TickOutcome.SAMPLED and self._on_sample is not None:
            self._on_sample()
        return outcome

    def _report_time(self, tick: datetime) -> datetime | None:
        """Receiver time of the provider's newest fix, fresh or not (LatestFix.last)."""
        report = getattr(self._provider, "last", None)
        if not hasattr(self._provider, "last"):
            report = self._provider.current(tick)
        if report is None or not hasattr(report, "lat"):
            return None  # no report yet, or a NoFix
        if str(getattr(report, "time_source", "receiver")) == "host":
            return None  # dated by this host: says nothing about its clock
        time = getattr(report, "time", None)
        return time if isinstance(time, datetime) else None

    def _observe_clock(self, tick: datetime, contiguous: bool) -> None:
        """Measure host minus receiver time from a fix that arrived since the previous tick."""
        seen = self._report_time(tick)
        if seen is None or seen == self._seen_report_time:
            return
        self._seen_report_time = seen
        if not contiguous:
            return  # when it arrived is unknown
        # it arrived within (tick - 1 s, tick]: the middle is within 0.5 s of its arrival
        self._offsets.append((tick - _HALF_SECOND - seen).total_seconds())
        offset = round(statistics.median(self._offsets), 3)
        self._clock_offset_s = offset
        limit = self._max_clock_offset_s
        if abs(offset) > limit and not self._offset_warned:
            self._offset_warned = True
            logger.warning(
                "Sampler(%s): the host clock is %+.1f s off the GPS receiver's time, more than"
                " the server's allowed skew of %.1f s: samples may be refused"
                " (CAPTURED_IN_FUTURE) or find no fresh fix; check NTP (chrony, timedatectl)",
                self._session_id,
                offset,
                limit,
            )
        elif abs(offset) <= limit / 2 and self._offset_warned:
            # half the limit, so an offset hovering at the limit does not log every second
            self._offset_warned = False
            logger.info(
                "Sampler(%s): host clock within %+.1f s of the receiver again",
                self._session_id,
                offset,
            )

    def _record(self, tick: datetime, outcome: TickOutcome) -> None:
        self.counts[outcome] += 1
        if outcome != self._last_outcome:
            level = logging.INFO if outcome is TickOutcome.SAMPLED else logging.WARNING
            logger.log(
                level,
                "Sampler(%s): %s -> %s at %s",
                self._session_id,
                self._last_outcome.value if self._last_outcome else "start",
                outcome.value,
                tick.isoformat(),
            )
            self._last_outcome = outcome
        if self._on_tick is not None:
            self._on_tick(Tick(tick, outcome))


_SECOND = timedelta(seconds=1)
_HALF_SECOND = timedelta(milliseconds=500)


def _next_whole_second(now: datetime, *, inclusive: bool) -> datetime:
    floor = now.replace(microsecond=0)
    if inclusive and floor == now:
        return floor
    return floor + _SECOND
