"""Per-operator dispatch (the spec's roadmap; docs/api.md): the rules routes share.

An operator's stored `availability_state` is ONLINE, OFFLINE or BUSY (ONLINE and
holding `session_id`); OFFLINE while holding a session keeps the session. A
workspace becomes operator-level the first time one of its operators goes
ONLINE (`first_online_at`); from then on its availability is derived from its
operators and written to the workspace row, so every reader of the workspace
sees the derived state. Writers take the open transaction's connection, readers
the Store (the same connection, so they see the transaction's writes).
"""

from __future__ import annotations

import sqlite3
from datetime import datetime
from typing import Literal

from luxxon_agent.geo import haversine_meters
from luxxon_agent.models import AvailabilityState, ErrorCode
from luxxon_agent.stub.http_error import HttpError
from luxxon_agent.stub.store import Store, ts

OPERATOR_COLUMNS = {
    "availability_state": "TEXT NOT NULL DEFAULT 'OFFLINE'",
    "coverage_lat": "REAL",
    "coverage_lng": "REAL",
    "coverage_radius_meters": "REAL",
    "last_seen_at": "TEXT",
    "last_lat": "REAL",
    "last_lng": "REAL",
    "last_sequence": "INTEGER",
    "first_online_at": "TEXT",
    "idle_since": "TEXT",
    "last_offered_at": "TEXT",
    "session_id": "TEXT",
    "retired_at": "TEXT",
}
"""Columns the operators table gained with per-operator dispatch (added to older databases)."""

ONLINE = AvailabilityState.ONLINE.value
OFFLINE = AvailabilityState.OFFLINE.value
BUSY = AvailabilityState.BUSY.value


def is_operator_level(store: Store, workspace_id: str) -> bool:
    """True once any operator of the workspace has been set ONLINE."""
    row = store.one(
        "SELECT 1 FROM operators WHERE workspace_id = ? AND first_online_at IS NOT NULL LIMIT 1",
        (workspace_id,),
    )
    return row is not None


def derive_workspace_availability(
    conn: sqlite3.Connection, workspace_id: str, now: datetime
) -> None:
    """ONLINE while any operator is ONLINE (and so free), BUSY when every operator that is
    not OFFLINE holds a session, OFFLINE when none is ONLINE or BUSY. An operator whose
    device key is revoked or whose delegation has expired counts as OFFLINE: it can never
    be dispatched, so it must not keep the workspace ONLINE."""
    states = {
        row[0]
        for row in conn.execute(
            "SELECT DISTINCT availability_state FROM operators WHERE workspace_id = ?"
            " AND revoked_at IS NULL AND retired_at IS NULL AND expires_at > ?",
            (workspace_id, ts(now)),
        )
    }
    state = ONLINE if ONLINE in states else BUSY if BUSY in states else OFFLINE
    conn.execute("UPDATE workspaces SET availability_state = ? WHERE id = ?", (state, workspace_id))


def free_operator(
    conn: sqlite3.Connection, operator_id: str, session_id: str, now: datetime
) -> None:
    """The session is over (or was never started): the operator holding it is free again,
    ONLINE and idle from now if it was BUSY, still OFFLINE if it was set OFFLINE."""
    conn.execute(
        "UPDATE operators SET session_id = NULL,"
        " idle_since = CASE WHEN availability_state = ? THEN ? ELSE idle_since END,"
        " availability_state = CASE WHEN availability_state = ? THEN ? ELSE availability_state END"
        " WHERE id = ? AND session_id = ?",
        (BUSY, ts(now), BUSY, ONLINE, operator_id, session_id),
    )


def hold_session(conn: sqlite3.Connection, operator_id: str, session_id: str) -> None:
    """Accept: the operator holds the session and is BUSY."""
    conn.execute(
        "UPDATE operators SET session_id = ?, availability_state = ? WHERE id = ?",
        (session_id, BUSY, operator_id),
    )


def require_valid_key(operator: sqlite3.Row, now: datetime, prefix: str = "") -> None:
    """Raise 409 INVALID_STATE when the operator's device key is revoked or its delegation
    has expired (`prefix` names the field that asked, if any)."""
    operator_id = operator["id"]
    if operator["revoked_at"] is not None:
        raise HttpError(
            409,
            ErrorCode.INVALID_STATE,
            f"{prefix}the operator's device key is revoked; register a new one",
            operator_id,
        )
    if datetime.fromisoformat(operator["expires_at"]) <= now:
        raise HttpError(
            409,
            ErrorCode.INVALID_STATE,
            f"{prefix}the operator's delegation expired at {operator['expires_at']};"
            " register a new one",
            operator_id,
        )


def usable_operator(operator: sqlite3.Row, now: datetime) -> None:
    """Raise unless the operator can take new work: not retired, not revoked, delegation
    valid, ONLINE and free."""
    operator_id = operator["id"]
    if operator["retired_at"] is not None:
        raise retired(operator_id)
    require_valid_key(operator, now)
    if operator["availability_state"] != ONLINE or operator["session_id"] is not None:
        state = operator["availability_state"]
        raise HttpError(
            409, ErrorCode.OPERATOR_BUSY, f"operator is {state}, not ONLINE and free", operator_id
        )


def retired(operator_id: str) -> HttpError:
    return HttpError(409, ErrorCode.OPERATOR_RETIRED, "the operator is retired", operator_id)


_FREE_OPERATORS = (
    "SELECT o.* FROM operators o JOIN workspaces w ON w.id = o.workspace_id"
    " WHERE o.availability_state = ? AND o.session_id IS NULL AND o.retired_at IS NULL"
    " AND o.revoked_at IS NULL AND o.expires_at > ? AND w.deleted_at IS NULL"
)
# longest idle first; an operator never offered work before one that was, then oldest
_LONGEST_IDLE = (
    " ORDER BY o.idle_since, o.last_offered_at IS NOT NULL, o.last_offered_at, o.created_at, o.id"
)


def longest_idle_in_workspace(store: Store, workspace_id: str, now: datetime) -> sqlite3.Row | None:
    """The workspace's free ONLINE operator that has been idle longest."""
    return store.one(
        _FREE_OPERATORS + " AND o.workspace_id = ?" + _LONGEST_IDLE, (ONLINE, ts(now), workspace_id)
    )


def longest_idle_covering(
    store: Store, lat: float, lng: float, now: datetime
) -> sqlite3.Row | None:
    """The longest-idle free ONLINE operator of any SUPPLIER workspace whose coverage
    contains the point (operators exist only in SUPPLIER workspaces)."""
    candidates = store.all(
        _FREE_OPERATORS + " AND o.coverage_radius_meters IS NOT NULL" + _LONGEST_IDLE,
        (ONLINE, ts(now)),
    )
    return next(
        (
            operator
            for operator in candidates
            if haversine_meters(lat, lng, operator["coverage_lat"], operator["coverage_lng"])
            <= operator["coverage_radius_meters"]
        ),
        None,
    )


def offered(
    conn: sqlite3.Connection,
    table: Literal["operators", "workspaces"],
    offered_id: str,
    now: datetime,
) -> None:
    """An offer counts as work: the next dispatch prefers another idle operator (or, at
    workspace level, another idle supplier workspace)."""
    conn.execute(
        f"UPDATE {table} SET idle_since = ?, last_offered_at = ? WHERE id = ?",
        (ts(now), ts(now), offered_id),
    )


def label_taken(store: Store, workspace_id: str, label: str) -> bool:
    """True when an un-revoked operator of the workspace already has this label."""
    row = store.one(
        "SELECT 1 FROM operators WHERE workspace_id = ? AND label = ? AND revoked_at IS NULL",
        (workspace_id, label),
    )
    return row is not None


def address_taken(store: Store, workspace_id: str, device_address: str) -> str | None:
    """The id of an un-revoked operator of the workspace registered with this device key."""
    row = store.one(
        "SELECT id FROM operators WHERE workspace_id = ? AND lower(device_address) = lower(?)"
        " AND revoked_at IS NULL ORDER BY created_at, id LIMIT 1",
        (workspace_id, device_address),
    )
    return None if row is None else str(row["id"])
