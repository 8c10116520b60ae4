"""What a position source yields: a `Fix`, or an explicit `NoFix`."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import UTC, datetime


class SourceKind(enum.StrEnum):
    """Which kind of source produced a report."""

    SERIAL = "serial"
    TCP = "tcp"
    GPSD = "gpsd"
    MAVLINK = "mavlink"
    FILE = "nmea-file"
    SIM = "sim"
    FIXED = "fixed"
    """A surveyed position of a camera that never moves (the agent's `fixed://`)."""


class FixQuality(enum.StrEnum):
    """How the receiver says it solved the position (GGA quality, GNS/RMC mode)."""

    GPS = "gps"
    """Autonomous GNSS (GGA quality 1, mode A)."""
    DGPS = "dgps"
    """Differential or SBAS corrected (GGA quality 2, mode D)."""
    RTK_FIXED = "rtk-fixed"
    """Carrier-phase RTK with fixed ambiguities (GGA quality 4, mode R)."""
    RTK_FLOAT = "rtk-float"
    """Carrier-phase RTK, float solution (GGA quality 5, mode F)."""
    PPS = "pps"
    """Precise positioning service (GGA quality 3, mode P)."""
    SIMULATED = "simulated"
    """Made up by `sim://` or a receiver in simulator mode (GGA quality 8, mode S)."""


class TimeSource(enum.StrEnum):
    """Where a report's `time` came from."""

    RECEIVER = "receiver"
    """Date and time of day both from the receiver (RMC/ZDA date, epoch time)."""
    RECEIVER_TIME_HOST_DATE = "receiver-time-host-date"
    """Time of day from the receiver; the date had to come from the host clock."""
    HOST = "host"
    """The host clock at reception: the source carries no usable UTC time."""


@dataclass(frozen=True, slots=True)
class Fix:
    """One position solution of one receiver epoch."""

    time: datetime
    """Capture time, timezone-aware UTC (see `time_source`)."""
    lat: float
    """Latitude, decimal degrees, south negative."""
    lng: float
    """Longitude, decimal degrees, west negative."""
    accuracy_m: float | None
    """Horizontal accuracy in metres (GST sigma, else HDOP x UERE); None when unknown."""
    source: SourceKind
    """Kind of source that produced the fix."""
    quality: FixQuality = FixQuality.GPS
    """How the position was solved."""
    altitude_m: float | None = None
    """Altitude above mean sea level in metres."""
    speed_mps: float | None = None
    """Speed over ground in metres per second."""
    course_deg: float | None = None
    """Course over ground, degrees from true north."""
    satellites: int | None = None
    """Satellites used in the solution."""
    hdop: float | None = None
    """Horizontal dilution of precision, when reported."""
    time_source: TimeSource = TimeSource.RECEIVER
    """Where `time` came from."""
    rollover_corrected: bool = False
    """True when the receiver's date was 1024 GPS weeks off and was corrected."""
    received_at: datetime | None = None
    """Host UTC time when the epoch was completed (None when the caller gave none)."""

    def to_json(self) -> dict[str, object]:
        """The `gps dump` line: stable keys, ISO time with milliseconds and Z."""
        return {
            "time": iso_utc(self.time),
            "lat": self.lat,
            "lng": self.lng,
            "accuracy_m": self.accuracy_m,
            "quality": self.quality.value,
            "source": self.source.value,
            "altitude_m": self.altitude_m,
            "speed_mps": self.speed_mps,
            "course_deg": self.course_deg,
            "satellites": self.satellites,
            "time_source": self.time_source.value,
        }


@dataclass(frozen=True, slots=True)
class NoFix:
    """The source is alive but has no usable position (or is reconnecting)."""

    time: datetime
    """When this was decided, UTC (receiver time when known, else host time)."""
    source: SourceKind
    """Kind of source that reported it."""
    reason: str
    """One line: why there is no fix (e.g. "RMC status V", "device unplugged")."""


def iso_utc(when: datetime) -> str:
    """`2026-05-13T08:42:00.123Z`: milliseconds, always UTC, as gpsd and the API write it."""
    return when.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
