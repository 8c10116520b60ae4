"""The ingest's own tables in the stub's SQLite: what a restarted stub must not forget.

Each input's creation, the start of its current stretch without media
(`quiet_since`) and every closed disconnect window. A failed write costs
accuracy after a restart, never the stream: it is logged, and the next save
writes the newest state again.
"""

from __future__ import annotations

import logging
import sqlite3
from dataclasses import dataclass
from datetime import datetime

from luxxon_agent.stub.store import Store, ts

logger = logging.getLogger(__name__)

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

Window = tuple[datetime, datetime]


@dataclass(frozen=True)
class StoredInput:
    """An input as the store last saw it."""

    created_at: datetime
    quiet_since: datetime
    windows: list[Window]


class IngestStore:
    """Reads and writes the ingest's rows in the stub's database."""

    def __init__(self, store: Store) -> None:
        self._store = store
        store.apply_schema(SCHEMA)

    def load(self, ref: str) -> StoredInput | None:
        row = self._store.one(
            "SELECT created_at, quiet_since FROM ingest_inputs WHERE ref = ?", (ref,)
        )
        if row is None:
            return None
        windows = [
            (datetime.fromisoformat(w["started_at"]), datetime.fromisoformat(w["ended_at"]))
            for w in self._store.all(
                "SELECT started_at, ended_at FROM ingest_windows WHERE ref = ? ORDER BY started_at",
                (ref,),
            )
        ]
        return StoredInput(
            created_at=datetime.fromisoformat(row["created_at"]),
            quiet_since=datetime.fromisoformat(row["quiet_since"]),
            windows=windows,
        )

    def save(
        self,
        ref: str,
        session_id: str,
        created_at: datetime,
        quiet_since: datetime,
        window: Window | None = None,
    ) -> None:
        """Insert or update the input's row, and add `window` if one just closed."""
        try:
            with self._store.transaction() as conn:
                conn.execute(
                    "INSERT INTO ingest_inputs (ref, session_id, created_at, quiet_since)"
                    " VALUES (?, ?, ?, ?)"
                    " ON CONFLICT (ref) DO UPDATE SET quiet_since = excluded.quiet_since",
                    (ref, session_id, ts(created_at), ts(quiet_since)),
                )
                if window is not None:
                    conn.execute(
                        "INSERT OR REPLACE INTO ingest_windows (ref, started_at, ended_at)"
                        " VALUES (?, ?, ?)",
                        (ref, ts(window[0]), ts(window[1])),
                    )
        except sqlite3.Error as exc:
            logger.warning("video input %s: could not save its disconnect state: %s", ref, exc)
