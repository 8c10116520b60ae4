"""`Uploader`: drains the spool to `POST /sessions/:id/telemetry`, oldest capture first.

- One client (its keep-alive connection pool) for every request; at most
  `concurrency` requests in flight, issued in capture order.
- Idempotent: the server deduplicates on (session, capturedAt) and answers
  `duplicate: true`, so a sample re-sent after a crash (sent, not yet marked
  delivered) is harmless and is marked delivered.
- Outages (connection errors, timeouts, 429, 5xx, an auth failure that an
  operator can fix) keep the samples pending and back off, honouring the
  server's Retry-After. The first such failure in a batch stops dispatching
  the rest of it.
- A refusal that depends on *when* the sample arrives is held: the row stays
  pending and is retried with backoff. CAPTURED_IN_FUTURE (the device clock
  was ahead, or NTP stepped it back: the same sample is accepted seconds
  later) is held for at most `HOLD_LIMITS_S` (10 minutes); UNKNOWN_SIGNER
  (sampled before `luxxon operators register` finished) until the session
  ends, which the server reports by refusing the retry as INVALID_STATE,
  CAPTURED_OUT_OF_SESSION or SESSION_NOT_FOUND (or 24 h, the longest
  session, have passed). Then the row is rejected with the hold's code. The
  limit counts from the first refusal seen by this Uploader.
- Any other refusal of the sample itself (bad signature, session no longer
  LIVE, capturedAt outside the session, ...) is final: the row is marked
  rejected with the server's code and never retried.
- `drain(timeout)` waits until the backlog is delivered, e.g. before `/end`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from pydantic import ValidationError

from luxxon_agent.backoff import Backoff
from luxxon_agent.clock import SYSTEM_CLOCK, Clock, sleep_or_event
from luxxon_agent.errors import ApiError, TelemetryError, TransportError
from luxxon_agent.models import ErrorCode, TelemetryReceipt, TelemetrySample
from luxxon_agent.telemetry.spool import Spool, SpooledSample

logger = logging.getLogger(__name__)

DEFAULT_BACKOFF = Backoff(initial=0.5, maximum=10.0)
"""Short enough that a backlog resumes within ~10 s of the network returning."""
MAX_RETRY_AFTER = 600.0
"""A longer Retry-After is capped here, so a wrong header cannot park telemetry for hours."""

_RETRY_STATUSES = frozenset({401, 408, 425, 429})
# Credentials problems are the operator's to fix, not the sample's fault: keep it pending.
_HOLD_CODES = frozenset(
    {
        "NOT_AUTHENTICATED",
        "NOT_AUTHORIZED",
        "INVALID_API_KEY",
        "REVOKED_API_KEY",
        "MISSING_TOKEN",
        "INVALID_TOKEN",
    }
)

HOLD_LIMITS_S: Mapping[str, float] = {
    ErrorCode.CAPTURED_IN_FUTURE: 600.0,
    # the session's end normally ends the hold first; 24 h is the longest maxDurationSeconds
    ErrorCode.UNKNOWN_SIGNER: 24 * 3600.0,
}
"""Refusals that a later retry of the same sample can overcome, and how long to keep trying."""
_SESSION_OVER_CODES = frozenset(
    {ErrorCode.INVALID_STATE, ErrorCode.CAPTURED_OUT_OF_SESSION, ErrorCode.SESSION_NOT_FOUND}
)


class TelemetrySink(Protocol):
    """Where samples go (luxxon_agent.api.AsyncLuxxonClient fits)."""

    async def post_telemetry(
        self, session_id: str, sample: TelemetrySample
    ) -> TelemetryReceipt: ...


@dataclass(frozen=True, slots=True)
class DrainResult:
    """Where the backlog stood when `drain()` returned."""

    complete: bool
    """Nothing pending any more (for the session asked about)."""
    pending: int
    delivered: int
    rejected: int


@dataclass(slots=True)
class UploaderCounters:
    """Requests since start, by outcome."""

    delivered: int = 0
    duplicates: int = 0
    """Delivered samples the server already had (re-sent after a crash or a lost answer)."""
    rejected: int = 0
    failures: int = 0
    """Attempts that failed transiently and will be retried."""
    held: int = 0
    """Refusals in `HOLD_LIMITS_S` that kept the sample pending for a retry."""


@dataclass(frozen=True, slots=True)
class _Verdict:
    row: SpooledSample
    delivered: bool = False
    reject_code: str | None = None
    retry: bool = False
    retry_after: float | None = None
    error: str | None = None


class Uploader:
    """Delivers every spooled sample, oldest first, through `sink`."""

    def __init__(
        self,
        spool: Spool,
        sink: TelemetrySink,
        *,
        concurrency: int = 4,
        batch_size: int = 64,
        backoff: Backoff = DEFAULT_BACKOFF,
        clock: Clock = SYSTEM_CLOCK,
        rng: random.Random | None = None,
        idle_seconds: float = 5.0,
        hold_limits_s: Mapping[str, float] = HOLD_LIMITS_S,
    ) -> None:
        if concurrency < 1 or batch_size < 1:
            raise ValueError("concurrency and batch_size must be positive")
        self._spool = spool
        self._sink = sink
        self._concurrency = concurrency
        self._batch_size = batch_size
        self._backoff = backoff
        self._clock = clock
        self._rng = rng or random.Random()
        self._idle_seconds = idle_seconds
        self._hold_limits = dict(hold_limits_s)
        self._held: dict[int, tuple[str, float]] = {}
        """Spool row id -> (hold code, clock.monotonic() of its first refusal)."""
        self._new = asyncio.Event()
        self._kick = asyncio.Event()
        self._progress = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._failing = False
        self.counters = UploaderCounters()

    # ---- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="telemetry-uploader")

    async def stop(self) -> None:
        """Stop sending; undelivered samples stay in the spool. Safe to call twice."""
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def __aenter__(self) -> Uploader:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    def notify(self) -> None:
        """New samples are in the spool (the sampler calls this)."""
        self._new.set()

    # ---- draining ------------------------------------------------------------------------

    async def drain(self, timeout: float, session_id: str | None = None) -> DrainResult:
        """Wait up to `timeout` seconds until nothing (of `session_id`) is pending.

        Cuts a running backoff short once, so a backlog goes out now.
        """
        if self._task is None:
            raise TelemetryError("the uploader is not running: start() it before drain()")
        self._kick.set()
        self._new.set()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                while True:
                    self._progress.clear()
                    stats = await asyncio.to_thread(self._spool.stats, session_id)
                    if stats.pending == 0:
                        break
                    if self._task.done():
                        break
                    await self._progress.wait()
        stats = await asyncio.to_thread(self._spool.stats, session_id)
        if self._task is not None and self._task.done() and not self._task.cancelled():
            self._task.result()  # the loop died: surface why
        return DrainResult(
            complete=stats.pending == 0,
            pending=stats.pending,
            delivered=stats.delivered,
            rejected=stats.rejected,
        )

    # ---- the loop ------------------------------------------------------------------------------

    async def _run(self) -> None:
        attempt = 0
        while True:
            self._new.clear()
            rows = await asyncio.to_thread(self._spool.pending, self._batch_size)
            if not rows:
                self._progress.set()
                await sleep_or_event(self._clock, self._idle_seconds, self._new)
                continue
            retry, retry_after, error = await self._send_batch(rows)
            self._progress.set()
            if not retry:
                if self._failing:
                    logger.info("telemetry upload recovered")
                    self._failing = False
                attempt = 0
                continue
            delay = self._backoff.delay(attempt, self._rng)
            if retry_after is not None:
                delay = max(delay, min(retry_after, MAX_RETRY_AFTER))
            attempt += 1
            if not self._failing:
                logger.warning("telemetry upload failing (%s); samples stay spooled", error)
                self._failing = True
            logger.debug("telemetry upload: retry in %.2fs", delay)
            self._kick.clear()
            await sleep_or_event(self._clock, delay, self._kick)

    async def _send_batch(self, rows: list[SpooledSample]) -> tuple[bool, float | None, str | None]:
        """Send `rows` in order, `concurrency` at a time; stop dispatching at the first outage."""
        gate = asyncio.Semaphore(self._concurrency)
        verdicts: list[_Verdict] = []
        halted = False

        async def send(row: SpooledSample) -> None:
            nonlocal halted
            async with gate:
                if halted:
                    return
                verdict = await self._post(row)
                verdicts.append(verdict)
                if verdict.retry:
                    halted = True

        async with asyncio.TaskGroup() as group:
            for row in rows:
                group.create_task(send(row))

        for verdict in verdicts:
            if not verdict.retry:
                self._held.pop(verdict.row.id, None)
        delivered = [v.row.id for v in verdicts if v.delivered]
        if delivered:
            await asyncio.to_thread(self._spool.mark_delivered, delivered)
        rejections = [(v.row.id, v.reject_code) for v in verdicts if v.reject_code is not None]
        if rejections:
            await asyncio.to_thread(self._spool.mark_rejected, rejections)
        for verdict in verdicts:
            if verdict.reject_code is not None:
                logger.warning(
                    "telemetry sample %s@%d rejected: %s",
                    verdict.row.session_id,
                    verdict.row.captured_at_ms,
                    verdict.error,
                )
        failed = [v for v in verdicts if v.retry]
        if not failed:
            return False, None, None
        hints = [v.retry_after for v in failed if v.retry_after is not None]
        return True, (max(hints) if hints else None), failed[0].error

    async def _post(self, row: SpooledSample) -> _Verdict:
        try:
            sample = row.sample()
        except ValidationError:
            self.counters.rejected += 1
            return _Verdict(row, reject_code="CORRUPT_SPOOL_ROW", error="unreadable spool row")
        try:
            receipt = await self._sink.post_telemetry(row.session_id, sample)
        except TransportError as exc:
            self.counters.failures += 1
            return _Verdict(row, retry=True, error=str(exc))
        except ApiError as exc:
            if exc.status in _RETRY_STATUSES or exc.status >= 500 or exc.code in _HOLD_CODES:
                self.counters.failures += 1
                return _Verdict(row, retry=True, retry_after=exc.retry_after, error=str(exc))
            return self._refused(row, exc)
        self.counters.delivered += 1
        if receipt.duplicate:
            self.counters.duplicates += 1
        return _Verdict(row, delivered=True)

    def _refused(self, row: SpooledSample, exc: ApiError) -> _Verdict:
        """Hold a refusal that a later retry can overcome; reject the rest for good."""
        now = self._clock.monotonic()
        held = self._held.get(row.id)
        if exc.code in self._hold_limits:
            if held is None or held[0] != exc.code:
                held = self._held[row.id] = (exc.code, now)
            if now - held[1] < self._hold_limits[exc.code]:
                self.counters.failures += 1
                self.counters.held += 1
                return _Verdict(row, retry=True, retry_after=exc.retry_after, error=str(exc))
            code, why = exc.code, f"still refused after {now - held[1]:.0f} s: {exc}"
        elif held is not None and exc.code in _SESSION_OVER_CODES:
            # the session ended while the sample waited: the hold's reason is why it is lost
            code, why = held[0], f"{held[0]} until the session ended ({exc})"
        else:
            code, why = exc.code, str(exc)
        self.counters.rejected += 1
        return _Verdict(row, reject_code=code, error=why)
