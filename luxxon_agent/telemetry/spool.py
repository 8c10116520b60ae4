"""`Spool`: the durable on-disk queue of signed samples (SQLite, WAL).

Durability: the database runs in WAL mode with `synchronous=FULL`, so every
committed append is fsynced to the WAL before `append()` returns. With
`NORMAL`, WAL mode survives a process kill but a power cut may roll back the
last commits; a drone's battery is pulled more often than a server's plug,
and one fsync per second is nothing, so FULL it is. Each append is its own
transaction: a SIGKILL or power cut mid-write loses at most that sample, and
SQLite's journal keeps the file consistent.

Bounds: at most `max_pending` undelivered samples (the oldest is dropped,
and counted, when a new one would exceed it) and at most `keep_done`
delivered or rejected ones, kept for `luxxon sessions earnings` and pruned
oldest first. A row is about 300 bytes, so the defaults bound the file to
roughly 60 MB + 26 MB.

The methods block (fsync); async callers run them with `asyncio.to_thread`.
A lock serialises the one connection between those threads.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from types import TracebackType

from luxxon_agent.errors import TelemetryError
from luxxon_agent.models import TelemetrySample
from luxxon_agent.telemetry.signing import datetime_to_ms

logger = logging.getLogger(__name__)

DEFAULT_MAX_PENDING = 200_000
"""About 55 hours of backlog at 1 Hz."""
DEFAULT_KEEP_DONE = 86_400
"""One day of delivered samples at 1 Hz, for the local earnings cross-check."""
_PRUNE_EVERY = 1_000
_SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS samples (
    id INTEGER PRIMARY KEY,
    session_id TEXT NOT NULL,
    captured_at_ms INTEGER NOT NULL,
    body TEXT NOT NULL,
    state INTEGER NOT NULL DEFAULT 0,
    reason TEXT,
    UNIQUE (session_id, captured_at_ms)
);
CREATE INDEX IF NOT EXISTS samples_by_state ON samples (state, captured_at_ms, id);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


class SampleState(IntEnum):
    PENDING = 0
    DELIVERED = 1
    REJECTED = 2
    """The server refused the sample itself (bad signature, session over); never retried."""


@dataclass(frozen=True, slots=True)
class SpooledSample:
    """One row of the spool."""

    id: int
    session_id: str
    captured_at_ms: int
    body: str
    """The wire JSON, exactly what is POSTed."""
    state: SampleState
    reason: str | None = None

    def sample(self) -> TelemetrySample:
        return TelemetrySample.model_validate_json(self.body)


@dataclass(frozen=True, slots=True)
class SpoolStats:
    """Counts of the spool's samples by state (of all sessions, or of one)."""

    spooled: int
    """Samples held, whatever their state."""
    delivered: int
    pending: int
    rejected: int
    dropped: int = 0
    """Pending samples discarded because the spool was full (whole spool only)."""


class Spool:
    """A bounded, crash-safe FIFO of signed samples, ordered by capture time."""

    def __init__(
        self,
        path: str | Path,
        *,
        max_pending: int = DEFAULT_MAX_PENDING,
        keep_done: int = DEFAULT_KEEP_DONE,
    ) -> None:
        if max_pending < 1 or keep_done < 0:
            raise ValueError("max_pending must be positive and keep_done not negative")
        self.path = Path(path)
        self._max_pending = max_pending
        self._keep_done = keep_done
        self._lock = threading.Lock()
        self._since_prune = 0
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=10.0
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
            self._db.execute(f"PRAGMA user_version={_SCHEMA_VERSION}")
        except (OSError, sqlite3.Error) as exc:
            raise TelemetryError(f"cannot open the telemetry spool {self.path}: {exc}") from exc

    def __enter__(self) -> Spool:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __repr__(self) -> str:
        return f"Spool({str(self.path)!r})"

    # ---- writes ---------------------------------------------------------------------

    def append(self, session_id: str, sample: TelemetrySample) -> bool:
        """Store one signed sample durably; False if this session already has that capturedAt."""
        captured_ms = datetime_to_ms(sample.captured_at)
        body = sample.model_dump_json(by_alias=True, exclude_none=True)
        with self._lock, self._write("append"):
            self._db.execute("BEGIN IMMEDIATE")
            try:
                cursor = self._db.execute(
                    "INSERT OR IGNORE INTO samples (session_id, captured_at_ms, body)"
                    " VALUES (?, ?, ?)",
                    (session_id, captured_ms, body),
                )
                added = cursor.rowcount == 1
                if added:
                    self._enforce_pending_bound()
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return added

    def mark_delivered(self, ids: Iterable[int]) -> None:
        self._mark([(int(SampleState.DELIVERED), None, i) for i in ids])

    def mark_rejected(self, rejections: Iterable[tuple[int, str]]) -> None:
        """Mark each `(id, reason)` rejected, all in one transaction."""
        self._mark([(int(SampleState.REJECTED), reason, i) for i, reason in rejections])

    def _mark(self, rows: list[tuple[int, str | None, int]]) -> None:
        if not rows:
            return
        with self._lock, self._write("update"):
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany(
                    "UPDATE samples SET state = ?, reason = ? WHERE id = ? AND state = 0", rows
                )
                self._since_prune += len(rows)
                if self._since_prune >= _PRUNE_EVERY:
                    self._prune_done()
                    self._since_prune = 0
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def prune(self) -> int:
        """Drop delivered/rejected rows beyond `keep_done`, oldest first; returns how many."""
        with self._lock, self._write("prune"):
            return self._prune_done()

    def _prune_done(self) -> int:
        cursor = self._db.execute(
            "DELETE FROM samples WHERE id IN (SELECT id FROM samples WHERE state != 0"
            " ORDER BY id DESC LIMIT -1 OFFSET ?)",
            (self._keep_done,),
        )
        return cursor.rowcount

    def _enforce_pending_bound(self) -> None:
        (pending,) = self._db.execute("SELECT COUNT(*) FROM samples WHERE state = 0").fetchone()
        excess = pending - self._max_pending
        if excess <= 0:
            return
        self._db.execute(
            "DELETE FROM samples WHERE id IN (SELECT id FROM samples WHERE state = 0"
            " ORDER BY captured_at_ms, id LIMIT ?)",
            (excess,),
        )
        self._db.execute(
            "INSERT INTO counters (name, value) VALUES ('dropped', ?)"
            " ON CONFLICT (name) DO UPDATE SET value = value + excluded.value",
            (excess,),
        )
        logger.warning("telemetry spool full: dropped the %d oldest undelivered sample(s)", excess)

    # ---- reads -------------------------------------------------------------------------

    def pending(self, limit: int) -> list[SpooledSample]:
        """Up to `limit` undelivered samples, oldest capture first."""
        with self._lock, self._read():
            rows = self._db.execute(
                "SELECT id, session_id, captured_at_ms, body, state, reason FROM samples"
                " WHERE state = 0 ORDER BY captured_at_ms, id LIMIT ?",
                (limit,),
            ).fetchall()
        return [_row(r) for r in rows]

    def samples(self, session_id: str) -> list[SpooledSample]:
        """Every sample held for a session, in capture order."""
        with self._lock, self._read():
            rows = self._db.execute(
                "SELECT id, session_id, captured_at_ms, body, state, reason FROM samples"
                " WHERE session_id = ? ORDER BY captured_at_ms, id",
                (session_id,),
            ).fetchall()
        return [_row(r) for r in rows]

    def newest_capture_ms(self, session_id: str) -> int | None:
        """The latest capturedAt (ms) held for a session, whatever its state; None if none."""
        with self._lock, self._read():
            (newest,) = self._db.execute(
                "SELECT MAX(captured_at_ms) FROM samples WHERE session_id = ?", (session_id,)
            ).fetchone()
        return None if newest is None else int(newest)

    def stats(self, session_id: str | None = None) -> SpoolStats:
        where, args = ("WHERE session_id = ?", (session_id,)) if session_id else ("", ())
        with self._lock, self._read():
            counts = dict(
                self._db.execute(
                    f"SELECT state, COUNT(*) FROM samples {where} GROUP BY state", args
                ).fetchall()
            )
            dropped = 0
            if session_id is None:
                row = self._db.execute(
                    "SELECT value FROM counters WHERE name = 'dropped'"
                ).fetchone()
                dropped = row[0] if row else 0
        delivered = counts.get(SampleState.DELIVERED, 0)
        pending = counts.get(SampleState.PENDING, 0)
        rejected = counts.get(SampleState.REJECTED, 0)
        return SpoolStats(
            spooled=delivered + pending + rejected,
            delivered=delivered,
            pending=pending,
            rejected=rejected,
            dropped=dropped,
        )

    # ---- error mapping ---------------------------------------------------------------------

    def _write(self, what: str) -> _SqliteErrors:
        return _SqliteErrors(f"telemetry spool {what} failed ({self.path})")

    def _read(self) -> _SqliteErrors:
        return _SqliteErrors(f"telemetry spool read failed ({self.path})")


class _SqliteErrors:
    """Turns sqlite3 errors (disk full, I/O, corrupt) into one-line TelemetryErrors."""

    def __init__(self, message: str) -> None:
        self._message = message

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if isinstance(exc, sqlite3.Error):
            raise TelemetryError(f"{self._message}: {exc}") from exc


def _row(row: tuple[int, str, int, str, int, str | None]) -> SpooledSample:
    return SpooledSample(
        id=row[0],
        session_id=row[1],
        captured_at_ms=row[2],
        body=row[3],
        state=SampleState(row[4]),
        reason=row[5],
    )
