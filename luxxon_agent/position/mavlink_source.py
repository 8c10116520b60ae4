"""`MavlinkSource`: position from a flight controller (`mavlink://udpin:0.0.0.0:14550`).

Needs the `[mavlink]` extra (pymavlink). Rules:

- GPS_RAW_INT says whether there is a fix (fix_type >= 2) and how good it is:
  accuracy is `h_acc` (mm -> m) when the autopilot fills it, else
  `eph` (HDOP x 100) / 100 x UERE[quality].
- GLOBAL_POSITION_INT (the autopilot's fused position) is reported while the
  last GPS_RAW_INT, at most `GPS_STALE_S` old, has a fix. A GPS_RAW_INT is
  itself reported as the fix when no GLOBAL_POSITION_INT arrives.
- Time: SYSTEM_TIME pairs the autopilot's boot clock with UTC; then
  GLOBAL_POSITION_INT's time_boot_ms gives a receiver time. Otherwise
  GPS_RAW_INT's time_usec when it is a plausible UNIX time, else host time.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator
from datetime import UTC, datetime, timedelta
from typing import Any

from luxxon_agent.backoff import Backoff
from luxxon_agent.clock import SYSTEM_CLOCK, Clock
from luxxon_agent.errors import PositionSourceError
from luxxon_agent.position.fix import Fix, FixQuality, NoFix, SourceKind, TimeSource
from luxxon_agent.position.nmea import hdop_accuracy_m
from luxxon_agent.position.position_source import QUIET_FLUSH_S, SILENT_NO_FIX_S
from luxxon_agent.position.reconnecting_source import (
    RECONNECT_BACKOFF,
    LinkLost,
    ReconnectingSource,
    close_blocking,
)

logger = logging.getLogger(__name__)

GPS_STALE_S = 2.0
_UNIX_2010_US = 1_262_304_000 * 1_000_000
_MESSAGES = ["GPS_RAW_INT", "GLOBAL_POSITION_INT", "SYSTEM_TIME"]
# GPS_RAW_INT fix_type: 0/1 none, 2 2D, 3 3D, 4 DGPS, 5 RTK float, 6 RTK fixed, 7 static, 8 PPP
_FIX_QUALITY = {
    2: FixQuality.GPS,
    3: FixQuality.GPS,
    4: FixQuality.DGPS,
    5: FixQuality.RTK_FLOAT,
    6: FixQuality.RTK_FIXED,
    7: FixQuality.GPS,
    8: FixQuality.PPS,
}


class MavlinkSource(ReconnectingSource):
    """Reads MAVLink with pymavlink (blocking, so in the executor)."""

    kind = SourceKind.MAVLINK

    def __init__(
        self,
        description: str,
        device: str,
        *,
        baud: int = 57600,
        backoff: Backoff = RECONNECT_BACKOFF,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        super().__init__(description, backoff, clock)
        try:
            from pymavlink import mavutil  # type: ignore[import-untyped]  # noqa: F401  (checked here: open_source fails early)
        except ImportError as exc:
            raise PositionSourceError(
                "mavlink:// needs pymavlink: pip install 'luxxon-agent[mavlink]'"
            ) from exc
        self.device, self.baud = device, baud
        self._conn: Any = None
        self._gps: Any = None
        self._gps_at = -1e9
        self._booted_at: datetime | None = None
        self._last_position_at = 0.0
        self._global_at = -1e9
        self._pending: asyncio.Future[Any] | None = None

    async def _open(self) -> str | None:
        try:
            self._conn = await asyncio.get_running_loop().run_in_executor(None, self._connect)
        except (OSError, ValueError) as exc:
            return f"cannot open MAVLink {self.description}: {exc}"
        return None

    async def _session(self) -> AsyncGenerator[Fix | NoFix, None]:
        loop = asyncio.get_running_loop()
        self._last_position_at = self._clock.monotonic()
        while not self._closed:
            # the link is passed in: _disconnect may clear self._conn before this thread runs
            self._pending = loop.run_in_executor(None, _receive, self._conn)
            try:
                msg = await self._pending
            except OSError as exc:
                raise LinkLost(f"MAVLink link lost: {exc.__class__.__name__}") from exc
            if self._closed:
                return
            report = self._handle_safely(msg) if msg is not None else None
            if report is not None:
                self._last_position_at = self._clock.monotonic()
                yield report
            elif self._clock.monotonic() - self._last_position_at > SILENT_NO_FIX_S:
                self._last_position_at = self._clock.monotonic()
                yield self._no_fix("no MAVLink position message")

    def _connect(self) -> Any:
        from pymavlink import mavutil

        return mavutil.mavlink_connection(
            self.device, baud=self.baud, source_system=255, autoreconnect=False
        )

    def _handle_safely(self, msg: Any) -> Fix | NoFix | None:
        try:
            return self._handle(msg)
        except (ValueError, OverflowError, OSError):  # absurd times/values from a bad autopilot
            self.stats.parse_failures += 1
            return None

    def _handle(self, msg: Any) -> Fix | NoFix | None:
        kind = msg.get_type()
        self.stats.lines += 1
        self.stats.sentences[kind] += 1
        now_mono = self._clock.monotonic()
        if kind == "SYSTEM_TIME":
            if msg.time_unix_usec > _UNIX_2010_US:
                unix = datetime.fromtimestamp(msg.time_unix_usec / 1e6, UTC)
                self._booted_at = unix - timedelta(milliseconds=msg.time_boot_ms)
            return None
        if kind == "GPS_RAW_INT":
            self._gps, self._gps_at = msg, now_mono
            if msg.fix_type < 2:
                return self._no_fix(f"GPS_RAW_INT fix_type {msg.fix_type} (no fix)")
            if self._global_seen_recently(now_mono):
                return None
            return self._fix(msg.lat, msg.lon, msg.alt, msg, self._gps_time(msg))
        # GLOBAL_POSITION_INT
        self._global_at = now_mono
        gps = self._gps
        if gps is None or now_mono - self._gps_at > GPS_STALE_S:
            return self._no_fix("GLOBAL_POSITION_INT without a recent GPS_RAW_INT")
        if gps.fix_type < 2:
            return None  # already reported as NoFix by GPS_RAW_INT
        when = None
        if self._booted_at is not None:
            when = self._booted_at + timedelta(milliseconds=msg.time_boot_ms)
        return self._fix(msg.lat, msg.lon, msg.alt, gps, when)

    def _global_seen_recently(self, now_mono: float) -> bool:
        return now_mono - self._global_at <= GPS_STALE_S

    def _gps_time(self, gps: Any) -> datetime | None:
        if gps.time_usec > _UNIX_2010_US:
            return datetime.fromtimestamp(gps.time_usec / 1e6, UTC)
        return None

    def _fix(self, lat_e7: int, lon_e7: int, alt_mm: int, gps: Any, when: datetime | None) -> Fix:
        quality = _FIX_QUALITY.get(gps.fix_type, FixQuality.GPS)
        h_acc = getattr(gps, "h_acc", 0) or 0
        hdop = gps.eph / 100.0 if gps.eph not in (0, 0xFFFF) else None
        accuracy = h_acc / 1000.0 if h_acc else hdop_accuracy_m(hdop, quality)
        now = self._clock.now()
        speed = gps.vel / 100.0 if gps.vel != 0xFFFF else None
        course = gps.cog / 100.0 if gps.cog != 0xFFFF else None
        return Fix(
            time=when or now,
            lat=lat_e7 / 1e7,
            lng=lon_e7 / 1e7,
            accuracy_m=accuracy,
            source=self.kind,
            quality=quality,
            altitude_m=alt_mm / 1000.0,
            speed_mps=speed,
            course_deg=course,
            satellites=gps.satellites_visible if gps.satellites_visible != 255 else None,
            hdop=hdop,
            time_source=TimeSource.RECEIVER if when else TimeSource.HOST,
            received_at=now,
        )

    async def _disconnect(self) -> None:
        conn, self._conn = self._conn, None
        await close_blocking(conn, self._pending)


def _receive(conn: Any) -> Any:
    return conn.recv_match(type=_MESSAGES, blocking=True, timeout=QUIET_FLUSH_S)
