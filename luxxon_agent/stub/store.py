"""Store: the stub's SQLite database (WAL), one connection used from the event loop.

Handlers never await inside `transaction()`, so each request's reads and
writes are atomic with respect to every other request on the loop.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, overload

from luxxon_agent.models import format_timestamp

SCHEMA = """
CREATE TABLE IF NOT EXISTS workspaces (
    id TEXT PRIMARY KEY,
    slug TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    wallet_address TEXT NOT NULL,
    roles TEXT NOT NULL,
    availability_state TEXT NOT NULL DEFAULT 'OFFLINE',
    coverage_lat REAL, coverage_lng REAL, coverage_radius_meters REAL,
    device_kind TEXT,
    last_seen_at TEXT,
    last_lat REAL, last_lng REAL,
    last_sequence INTEGER,
    idle_since TEXT,
    last_offered_at TEXT,
    created_at TEXT NOT NULL,
    created_by_wallet TEXT NOT NULL,
    deleted_at TEXT
);
CREATE TABLE IF NOT EXISTS workspace_members (
    workspace_id TEXT NOT NULL REFERENCES workspaces(id),
    wallet_address TEXT NOT NULL,
    PRIMARY KEY (workspace_id, wallet_address)
);
CREATE TABLE IF NOT EXISTS nonces (
    nonce TEXT PRIMARY KEY,
    purpose TEXT NOT NULL,
    wallet_address TEXT NOT NULL,
    message TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    used_at TEXT
);
CREATE TABLE IF NOT EXISTS wallet_sessions (
    token_hash TEXT PRIMARY KEY,
    wallet_address TEXT NOT NULL,
    selected_workspace_id TEXT,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    revoked_at TEXT
);
CREATE TABLE IF NOT EXISTS api_keys (
    id TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces(id),
    prefix TEXT NOT NULL,
    key_hash TEXT NOT NULL UNIQUE,
    label TEXT NOT NULL,
    environment TEXT NOT NULL,
    scopes TEXT NOT NULL,
    last_used_at TEXT,
    revoked_at TEXT,
    grace_period_end TEXT,
    created_at TEXT NOT NULL,
    created_by_wallet TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY,
    consumer_workspace_id TEXT NOT NULL REFERENCES workspaces(id),
    operator_workspace_id TEXT REFERENCES workspaces(id),
    state TEXT NOT NULL,
    max_duration_seconds INTEGER NOT NULL,
    wait_timeout_seconds INTEGER,
    rate_per_second_micro_usdc INTEGER NOT NULL,
    hold_micro_usdc INTEGER NOT NULL,
    requested_lat REAL NOT NULL,
    requested_lng REAL NOT NULL,
    geofence_radius_meters REAL NOT NULL,
    created_at TEXT NOT NULL,
    dispatched_at TEXT,
    assigned_at TEXT,
    started_at TEXT,
    ended_at TEXT,
    clean_seconds INTEGER,
    failed_seconds INTEGER,
    charged_micro_usdc INTEGER,
    settlement_tx_hash TEXT,
    video_backend_ref TEXT,
    whip_url TEXT,
    whep_url TEXT
);
CREATE INDEX IF NOT EXISTS sessions_operator ON sessions(operator_workspace_id, state);
CREATE INDEX IF NOT EXISTS sessions_state_created ON sessions(state, created_at);
CREATE TABLE IF NOT EXISTS settlements (
    session_id TEXT PRIMARY KEY REFERENCES sessions(id),
    state TEXT NOT NULL,
    charged_micro_usdc INTEGER NOT NULL,
    fee_micro_usdc INTEGER NOT NULL,
    operator_earned_micro_usdc INTEGER NOT NULL,
    fee_bps INTEGER NOT NULL,
    tx_hash TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS wallet_events (
    id TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces(id),
    kind TEXT NOT NULL,
    session_id TEXT,
    amount_micro_usdc INTEGER NOT NULL,
    tx_hash TEXT,
    created_at TEXT NOT NULL
);
"""


def ts(value: datetime) -> str:
    """How the store writes a time: the API's own format, which also sorts correctly."""
    return format_timestamp(value)


@overload
def parse_ts(value: str) -> datetime: ...
@overload
def parse_ts(value: None) -> None: ...
def parse_ts(value: str | None) -> datetime | None:
    """A stored time (None stays None: a column that may be empty)."""
    return None if value is None else datetime.fromisoformat(value)


class Store:
    """The database. Open with `Store.open(path, extra_schemas)`; close with `close()`."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    @classmethod
    def open(cls, path: str | Path, extra_schemas: list[str] | None = None) -> Store:
        path_text = str(path)
        if path_text != ":memory:":
            Path(path_text).parent.mkdir(parents=True, exist_ok=True)
        # the connection is only used from the event loop's thread, but that thread
        # need not be the one that built the app (a test may serve it from a thread)
        conn = sqlite3.connect(path_text, isolation_level=None, check_same_thread=False)
        conn.row_factory = sqlite3.Row
        if path_text != ":memory:":
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.executescript(SCHEMA)
        for schema in extra_schemas or []:
            conn.executescript(schema)
        return cls(conn)

    def close(self) -> None:
        self._conn.close()

    @property
    def journal_mode(self) -> str:
        return str(self._conn.execute("PRAGMA journal_mode").fetchone()[0])

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE … COMMIT, or ROLLBACK when the block raises."""
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield self._conn
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    def apply_schema(self, sql: str) -> None:
        """Run `CREATE … IF NOT EXISTS` statements after opening (a video backend's own tables)."""
        self._conn.executescript(sql)

    def one(self, sql: str, params: tuple[Any, ...] = ()) -> sqlite3.Row | None:
        row: sqlite3.Row | None = self._conn.execute(sql, params).fetchone()
        return row

    def all(self, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        return self._conn.execute(sql, params).fetchall()

    def snapshot(self) -> dict[str, list[tuple[Any, ...]]]:
        """Every row of every table, sorted: tests compare two of them to prove nothing changed."""
        tables = [
            row[0]
            for row in self._conn.execute(
                "SELECT name FROM sqlite_master WHERE type='table' ORDER BY name"
            )
        ]
        return {
            table: sorted(
                (tuple(row) for row in self._conn.execute(f'SELECT * FROM "{table}"')),
                key=json.dumps,
            )
            for table in tables
        }
