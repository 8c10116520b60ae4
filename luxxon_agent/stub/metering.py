"""compute_clean_seconds: the meter `/end` runs, by MeterMode.

Wall-clock (production today): cleanSeconds = whole LIVE seconds minus the
publisher's disconnect windows (luxxon_agent.meter). Telemetry-anchored (the
roadmap) counts signed in-geofence samples; both are registered in `METERS`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from luxxon_agent.meter import (
    DEFAULT_TELEMETRY_FRESHNESS_S,
    session_seconds,
    telemetry_clean_seconds,
    wallclock_clean_seconds,
)
from luxxon_agent.models import MeterMode
from luxxon_agent.stub.store import Store, parse_ts

if TYPE_CHECKING:
    from luxxon_agent.stub.runtime import StubRuntime


@dataclass(frozen=True)
class MeterInput:
    """Everything a meter may look at for one session."""

    session_id: str
    operator_workspace_id: str
    started_at: datetime
    ended_at: datetime
    """Already capped at startedAt + maxDurationSeconds."""
    requested_lat: float
    requested_lng: float
    geofence_radius_meters: float
    disconnect_windows: list[tuple[datetime, datetime]] = field(default_factory=list)
    telemetry_freshness_seconds: float = DEFAULT_TELEMETRY_FRESHNESS_S
    """How old a sample may be at the end of a second and still cover it (telemetry meter)."""


@dataclass(frozen=True)
class MeterResult:
    clean_seconds: int
    failed_seconds: int


Meter = Callable[[MeterInput, Store], MeterResult]


def wallclock_meter(inputs: MeterInput, store: Store) -> MeterResult:
    total = session_seconds(inputs.started_at, inputs.ended_at)
    clean = wallclock_clean_seconds(inputs.started_at, inputs.ended_at, inputs.disconnect_windows)
    return MeterResult(clean_seconds=clean, failed_seconds=total - clean)


@dataclass(frozen=True, slots=True)
class _StoredSample:
    captured_at: datetime
    lat: float
    lng: float
    accuracy_m: float


def telemetry_meter(inputs: MeterInput, store: Store) -> MeterResult:
    """Telemetry-anchored meter over the samples `routes/telemetry.py` stored (all of them
    verified on arrival): luxxon_agent.meter.telemetry_clean_seconds, see docs/telemetry.md."""
    rows = store.all(
        "SELECT captured_at, lat, lng, accuracy_meters FROM telemetry WHERE session_id = ?",
        (inputs.session_id,),
    )
    samples = [_StoredSample(datetime.fromisoformat(r[0]), r[1], r[2], r[3]) for r in rows]
    clean, failed = telemetry_clean_seconds(
        inputs.started_at,
        inputs.ended_at,
        samples,
        (inputs.requested_lat, inputs.requested_lng),
        inputs.geofence_radius_meters,
        inputs.telemetry_freshness_seconds,
    )
    return MeterResult(clean_seconds=clean, failed_seconds=failed)


METERS: dict[MeterMode, Meter] = {
    MeterMode.WALLCLOCK: wallclock_meter,
    MeterMode.TELEMETRY: telemetry_meter,
}
"""Meters by mode; create_app refuses a mode that has none."""


def supported_modes() -> set[MeterMode]:
    return set(METERS)


def compute_clean_seconds(mode: MeterMode, inputs: MeterInput, store: Store) -> MeterResult:
    """Run the meter for `mode`; create_app refuses a mode without one, so this cannot miss."""
    return METERS[mode](inputs, store)


@dataclass(frozen=True)
class MeterReading:
    """The meter over a LIVE (or PAUSED) session up to a moment."""

    started_at: datetime
    ended_at: datetime
    """min(now, startedAt + maxDurationSeconds)."""
    result: MeterResult


def meter_session(stub: StubRuntime, row: sqlite3.Row, now: datetime) -> MeterReading:
    """Meter a started session's row up to `now`: what `/end` bills and the page shows live.

    The meter never bills past the duration the consumer asked for, so the end is
    capped at startedAt + maxDurationSeconds.
    """
    started = parse_ts(row["started_at"])
    if started is None:
        raise ValueError(f"session {row['id']} has not started; there is nothing to meter")
    ended = min(now, started + timedelta(seconds=row["max_duration_seconds"]))
    result = compute_clean_seconds(
        stub.config.meter,
        MeterInput(
            session_id=row["id"],
            operator_workspace_id=row["operator_workspace_id"],
            started_at=started,
            ended_at=ended,
            requested_lat=row["requested_lat"],
            requested_lng=row["requested_lng"],
            geofence_radius_meters=row["geofence_radius_meters"],
            disconnect_windows=stub.video.disconnect_windows(row["video_backend_ref"]),
            telemetry_freshness_seconds=stub.config.telemetry_freshness_seconds,
        ),
        stub.store,
    )
    return MeterReading(started_at=started, ended_at=ended, result=result)
