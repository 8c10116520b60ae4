"""`GpsdSource`: fixes from a gpsd daemon over its JSON protocol (`gpsd://HOST:2947`).

Sends `?WATCH={"enable":true,"json":true}` and reads TPV and GST reports.
gpsd sends a TPV after most sentences of a cycle, so reports are assembled
per `time` like NMEA epochs: a TPV with a new time (or a quiet line) closes
the previous one. Accuracy: the cycle's GST (sqrt(lat^2 + lon^2) of its
standard deviations) when gpsd sent one, else TPV `eph`, else hypot(epx, epy).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from datetime import datetime
from typing import Any

from luxxon_agent.backoff import Backoff
from luxxon_agent.clock import SYSTEM_CLOCK, Clock
from luxxon_agent.position.fix import Fix, FixQuality, NoFix, SourceKind, TimeSource
from luxxon_agent.position.reconnecting_source import RECONNECT_BACKOFF
from luxxon_agent.position.tcp_source import TcpSource

logger = logging.getLogger(__name__)

DEFAULT_PORT = 2947
WATCH = b'?WATCH={"enable":true,"json":true};\n'
# gpsd TPV "status": 2 DGPS, 3 RTK fixed, 4 RTK float, 6 dead reckoning, 7 surveyed, 8 simulated
_STATUS_QUALITY = {
    2: FixQuality.DGPS,
    3: FixQuality.RTK_FIXED,
    4: FixQuality.RTK_FLOAT,
    8: FixQuality.SIMULATED,
}


class GpsdSource(TcpSource):
    """A gpsd client that reconnects with backoff and reports NoFix while gpsd has none."""

    kind = SourceKind.GPSD
    greeting = WATCH
    unreachable = "cannot reach gpsd at"
    lost_reason = "gpsd connection lost"
    eof_reason = "gpsd closed the connection"

    def __init__(
        self,
        description: str,
        host: str,
        port: int = DEFAULT_PORT,
        *,
        backoff: Backoff = RECONNECT_BACKOFF,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        super().__init__(description, host, port, backoff=backoff, clock=clock)
        self._tpv: dict[str, Any] | None = None
        self._gst: dict[str, Any] | None = None

    async def _receive(self, reader: asyncio.StreamReader) -> bytes:
        # one JSON object a line; a line over STREAM_LIMIT raises ValueError: link lost
        return await reader.readline()

    def _feed(self, line: bytes) -> list[Fix | NoFix]:
        self.stats.lines += 1
        try:
            obj = json.loads(line)
        except ValueError:
            self.stats.parse_failures += 1
            return []
        if not isinstance(obj, dict):
            self.stats.parse_failures += 1
            return []
        cls = str(obj.get("class", ""))
        self.stats.sentences[cls] += 1
        if cls == "GST":
            self._gst = obj
            return []
        if cls != "TPV":
            return []
        out: list[Fix | NoFix] = []
        held = self._tpv
        # a timeless TPV (before gpsd has a date) is superseded by the cycle's timed one
        if (
            held is not None
            and held.get("time") is not None
            and held.get("time") != obj.get("time")
        ):
            out.extend(self._flush())
        self._tpv = obj
        return out

    def _flush(self) -> list[Fix | NoFix]:
        tpv, self._tpv = self._tpv, None
        if tpv is None:
            return []
        gst, self._gst = self._gst, None
        try:
            return [self._report(tpv, gst)]
        except (TypeError, ValueError, OverflowError):
            self.stats.parse_failures += 1
            return [self._no_fix("malformed TPV from gpsd")]

    def _report(self, tpv: dict[str, Any], gst: dict[str, Any] | None) -> Fix | NoFix:
        now = self._clock.now()
        mode = int(tpv.get("mode", 0))
        lat, lon = _opt_float(tpv.get("lat")), _opt_float(tpv.get("lon"))
        if lat is not None and lon is not None and (abs(lat) > 90 or abs(lon) > 180):
            raise ValueError("position off the globe")
        if mode < 2 or lat is None or lon is None:
            return NoFix(time=now, source=self.kind, reason=f"gpsd mode {mode} (no fix)")
        status = int(tpv.get("status", 1))
        if status == 6:
            return NoFix(time=now, source=self.kind, reason="gpsd dead reckoning only")
        stamp = tpv.get("time")
        when = _parse_time(stamp) if isinstance(stamp, str) else None
        accuracy = _accuracy(tpv, gst)
        return Fix(
            time=when or now,
            lat=lat,
            lng=lon,
            accuracy_m=accuracy,
            source=self.kind,
            quality=_STATUS_QUALITY.get(status, FixQuality.GPS),
            altitude_m=_opt_float(tpv.get("altMSL", tpv.get("alt"))),
            speed_mps=_opt_float(tpv.get("speed")),
            course_deg=_opt_float(tpv.get("track")),
            time_source=TimeSource.RECEIVER if when else TimeSource.HOST,
            received_at=now,
        )


def _accuracy(tpv: dict[str, Any], gst: dict[str, Any] | None) -> float | None:
    if gst is not None and gst.get("time") == tpv.get("time"):
        lat_sd, lon_sd = _opt_float(gst.get("lat")), _opt_float(gst.get("lon"))
        if lat_sd is not None and lon_sd is not None:
            return round(math.hypot(lat_sd, lon_sd), 3)
    eph = _opt_float(tpv.get("eph"))
    if eph is not None:
        return eph
    epx, epy = _opt_float(tpv.get("epx")), _opt_float(tpv.get("epy"))
    if epx is not None and epy is not None:
        return round(math.hypot(epx, epy), 3)
    return None


def _opt_float(value: object) -> float | None:
    """A JSON number as float; None when absent; ValueError for anything else."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"not a number: {value!r}")
    number = float(value)
    return number if math.isfinite(number) else None


def _parse_time(text: str) -> datetime | None:
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo is not None else None
