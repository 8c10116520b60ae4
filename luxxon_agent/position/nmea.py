"""NMEA 0183 framing, checksum gate and epoch assembly (`NmeaAssembler`).

Rules (documented in docs/position.md, "NMEA rules"):

- A line may hold several sentences (receivers collide); each `$`/`!` starts a
  candidate. A candidate without a valid `*hh` checksum is counted in
  `SourceStats.checksum_failures` and never reaches the parser.
- Sentences that share a UTC time of day form one epoch. Sentences without a
  time (GSA, VTG) join the open epoch, or the next one if none is open. An
  epoch closes when a sentence with a different time arrives, or on `flush()`
  (end of input, or the source went quiet).
- An epoch is a fix only if some sentence gave a valid position and nothing
  in it said "no fix": RMC/GLL status V, RMC/GLL/GNS mode N or E, GGA quality
  0/empty/6/7, GSA mode 1, or a malformed sentence.
- Accuracy: GST sqrt(lat_sigma^2 + lon_sigma^2) when the epoch has a GST,
  else HDOP x UERE_M[quality].
- Date from RMC or ZDA; without a fresh date the last one is carried and
  advanced by a day when the time of day wraps past midnight; GPS week
  rollover is repaired against a reference date.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import reduce
from operator import xor

import pynmea2  # type: ignore[import-untyped]  # ships no type information

from luxxon_agent.clock import SYSTEM_CLOCK, Clock
from luxxon_agent.position.fix import Fix, FixQuality, NoFix, SourceKind, TimeSource
from luxxon_agent.position.source_stats import SourceStats

KNOT_MPS = 1852.0 / 3600.0
KMH_MPS = 1000.0 / 3600.0

UERE_M: dict[FixQuality, float] = {
    FixQuality.GPS: 5.0,
    FixQuality.PPS: 5.0,
    FixQuality.SIMULATED: 5.0,
    FixQuality.DGPS: 1.5,
    FixQuality.RTK_FLOAT: 0.5,
    FixQuality.RTK_FIXED: 0.05,
}
"""User-equivalent range error per solution type, metres (accuracy = HDOP x UERE)."""


def hdop_accuracy_m(hdop: float | None, quality: FixQuality) -> float | None:
    """HDOP x UERE for the solution type, to the millimetre; None without an HDOP."""
    return round(hdop * UERE_M[quality], 3) if hdop is not None else None


GPS_WEEK_ROLLOVER = timedelta(weeks=1024)
ROLLOVER_MATCH_DAYS = 183
"""A receiver date is repaired only if k x 1024 weeks later lands this close to the reference."""

_CANDIDATE = re.compile(r"[$!][^$!]*")
_FRAMED = re.compile(r"[$!]([^*]+)\*([0-9A-Fa-f]{2})\s*$")
_GGA_QUALITY = {
    "1": FixQuality.GPS,
    "2": FixQuality.DGPS,
    "3": FixQuality.PPS,
    "4": FixQuality.RTK_FIXED,
    "5": FixQuality.RTK_FLOAT,
    "8": FixQuality.SIMULATED,
}
_MODE_QUALITY = {
    "A": FixQuality.GPS,
    "D": FixQuality.DGPS,
    "P": FixQuality.PPS,
    "R": FixQuality.RTK_FIXED,
    "F": FixQuality.RTK_FLOAT,
    "S": FixQuality.SIMULATED,
}
# GGA quality 6 / mode E is dead reckoning: a guess, not a measured position.
_NO_FIX_MODES = frozenset("NE")


@dataclass
class _Epoch:
    tod_us: int
    date: date | None = None
    lat: float | None = None
    lng: float | None = None
    veto: str | None = None
    quality: FixQuality | None = None
    altitude_m: float | None = None
    speed_mps: float | None = None
    course_deg: float | None = None
    satellites: int | None = None
    hdop: float | None = None
    gst_sigma_m: float | None = None


class NmeaAssembler:
    """Turns NMEA lines into one `Fix` or `NoFix` per receiver epoch.

    `reference` is "roughly today" for GPS week-rollover repair (a capture's
    dated header for a file); live sources (`host_date=True`) use the host's
    date at each epoch instead. Otherwise the receiver's date is trusted as is.
    `host_date` allows stamping epochs
    that have a time of day but no receiver date yet with the host's date
    (live sources); without it such epochs report `NoFix`.
    """

    def __init__(
        self,
        source: SourceKind,
        *,
        reference: date | None = None,
        host_date: bool = False,
        stats: SourceStats | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.source = source
        self.stats = stats if stats is not None else SourceStats()
        self._reference = reference
        self._clock = clock
        self._host_date = host_date
        self._epoch: _Epoch | None = None
        self._closed_tod: int | None = None
        self._date: date | None = None
        self._last_tod: int | None = None
        self._pending = _Epoch(tod_us=-1)

    # -- input -------------------------------------------------------------

    def feed_line(self, line: str | bytes, now: datetime | None = None) -> list[Fix | NoFix]:
        """Feed one line (may hold several or broken sentences); return closed epochs."""
        if isinstance(line, bytes):
            line = line.decode("ascii", errors="replace")
        self.stats.lines += 1
        out: list[Fix | NoFix] = []
        for candidate in _CANDIDATE.findall(line):
            if len(candidate.strip()) <= 1:
                continue  # the doubled "$$" prefix some receivers write, or a stray "$"
            framed = _FRAMED.match(candidate)
            if framed is None or _checksum(framed.group(1)) != int(framed.group(2), 16):
                self.stats.checksum_failures += 1
                continue
            try:
                msg = pynmea2.parse(candidate.strip(), check=False)
            except (pynmea2.ParseError, ValueError, AttributeError, TypeError):
                self.stats.parse_failures += 1
                continue
            out.extend(self._sentence(msg, now))
        return out

    def flush(self, now: datetime | None = None) -> list[Fix | NoFix]:
        """Close the open epoch (end of input, or the receiver went quiet)."""
        if self._epoch is None:
            return []
        return [self._close(now)]

    # -- per sentence --------------------------------------------------------

    def _sentence(self, msg: pynmea2.NMEASentence, now: datetime | None) -> list[Fix | NoFix]:
        kind = getattr(msg, "sentence_type", "")
        if not isinstance(msg, pynmea2.TalkerSentence) or not kind:
            return []  # proprietary ($P...) sentences carry nothing we use
        data = list(msg.data)
        try:
            tod = _parse_tod(data[_TIME_FIELD[kind]]) if kind in _TIME_FIELD else None
        except (IndexError, ValueError):
            self.stats.parse_failures += 1
            return []
        self.stats.sentences[kind] += 1
        handler = _HANDLERS.get(kind)
        if handler is None:
            return []  # GSV, TXT, DPT, ...: counted, not needed for a fix
        out: list[Fix | NoFix] = []
        if kind not in _TIME_FIELD:
            # GSA and VTG have no time: they belong to the open epoch, or to the
            # next one when they open a cycle
            epoch = self._epoch if self._epoch is not None else self._pending
        elif tod is None:
            return out  # a timed sentence with an empty time: nothing to anchor it
        else:
            if self._epoch is not None and self._epoch.tod_us != tod:
                out.append(self._close(now))
            if tod == self._closed_tod and self._epoch is None:
                return out  # late sentence of an epoch already reported
            if self._epoch is None:
                self._epoch, self._pending = self._pending, _Epoch(tod_us=-1)
                self._epoch.tod_us = tod
            epoch = self._epoch
        try:
            handler(epoch, data)
        except (IndexError, ValueError):
            self.stats.parse_failures += 1
            epoch.veto = epoch.veto or f"malformed {kind}"
        return out

    # -- closing an epoch ------------------------------------------------------

    def _close(self, now: datetime | None) -> Fix | NoFix:
        epoch = self._epoch
        assert epoch is not None
        self._epoch = None
        self._closed_tod = epoch.tod_us
        when, time_source, corrected = self._epoch_time(epoch, now)
        reason = self._no_fix_reason(epoch)
        if reason is None and when is None:
            reason = "no receiver date yet"
        if reason is not None or when is None or epoch.lat is None or epoch.lng is None:
            stamp = when or now or self._clock.now()
            return NoFix(time=stamp, source=self.source, reason=reason or "no position")
        quality = epoch.quality or FixQuality.GPS
        hdop = epoch.hdop
        accuracy = (
            epoch.gst_sigma_m if epoch.gst_sigma_m is not None else hdop_accuracy_m(hdop, quality)
        )
        return Fix(
            time=when,
            lat=epoch.lat,
            lng=epoch.lng,
            accuracy_m=accuracy,
            source=self.source,
            quality=quality,
            altitude_m=epoch.altitude_m,
            speed_mps=epoch.speed_mps,
            course_deg=epoch.course_deg,
            satellites=epoch.satellites,
            hdop=hdop,
            time_source=time_source,
            rollover_corrected=corrected,
            received_at=now,
        )

    def _no_fix_reason(self, epoch: _Epoch) -> str | None:
        if epoch.veto is not None:
            return epoch.veto
        if epoch.lat is None:
            return "no position in epoch"
        return None

    def _epoch_time(
        self, epoch: _Epoch, now: datetime | None
    ) -> tuple[datetime | None, TimeSource, bool]:
        day = epoch.date
        if day is None and self._date is not None and self._last_tod is not None:
            day = self._date
            if epoch.tod_us < self._last_tod - 12 * 3600 * 1_000_000:
                day = day + timedelta(days=1)  # midnight passed between dated sentences
        if day is not None:
            self._date = day
            self._last_tod = epoch.tod_us
        source = TimeSource.RECEIVER
        if day is None:
            if not self._host_date or now is None:
                return None, source, False
            day, source = now.date(), TimeSource.RECEIVER_TIME_HOST_DATE
            if epoch.tod_us > _tod_of(now) + 12 * 3600 * 1_000_000:
                day -= timedelta(days=1)  # host just passed midnight, the epoch did not
        when = datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(
            microseconds=epoch.tod_us
        )
        corrected = False
        reference = self._reference
        if reference is None and self._host_date and now is not None:
            reference = now.date()
        if reference is not None and source is TimeSource.RECEIVER:
            # a rollover victim is a whole number of 1024-week cycles behind the truth
            for cycles in range(1, 4):
                shifted = when + cycles * GPS_WEEK_ROLLOVER
                if abs((reference - shifted.date()).days) <= ROLLOVER_MATCH_DAYS:
                    when, corrected = shifted, True
                    break
        return when, source, corrected


# -- sentence handlers -------------------------------------------------------------


def _checksum(body: str) -> int:
    return reduce(xor, body.encode("latin-1", errors="replace"), 0)


def _parse_tod(text: str) -> int | None:
    """`hhmmss[.frac]` -> microseconds of the day; '' -> None."""
    text = text.strip()
    if not text:
        return None
    whole, _, frac = text.partition(".")
    if len(whole) != 6 or not whole.isdigit() or (frac and not frac.isdigit()):
        raise ValueError(f"bad time {text!r}")
    hours, minutes, seconds = int(whole[:2]), int(whole[2:4]), int(whole[4:])
    if hours > 23 or minutes > 59 or seconds > 60:
        raise ValueError(f"bad time {text!r}")
    micros = int((frac + "000000")[:6]) if frac else 0
    return ((hours * 60 + minutes) * 60 + seconds) * 1_000_000 + micros


def _tod_of(when: datetime) -> int:
    return ((when.hour * 60 + when.minute) * 60 + when.second) * 1_000_000 + when.microsecond


def _float(text: str) -> float | None:
    text = text.strip()
    if not text:
        return None
    value = float(text)
    if not math.isfinite(value):
        raise ValueError("not finite")
    return value


def _latlng(data: list[str], at: int) -> tuple[float, float] | None:
    """Decimal degrees from `ddmm.mmmm,N,dddmm.mmmm,E` at `at`; None if empty."""
    lat_t, ns, lng_t, ew = (data[at + i].strip() for i in range(4))
    if not lat_t or not lng_t:
        return None
    lat = _degrees(lat_t, 2)
    lng = _degrees(lng_t, 3)
    if ns not in ("N", "S") or ew not in ("E", "W"):
        raise ValueError("bad hemisphere")
    if lat > 90.0 or lng > 180.0:
        raise ValueError("impossible position")
    return (-lat if ns == "S" else lat), (-lng if ew == "W" else lng)


def _degrees(text: str, width: int) -> float:
    head, dot, _ = text.partition(".")
    if len(head) != width + 2 or not head.isdigit():
        raise ValueError(f"bad coordinate {text!r}")
    minutes = float(text[width:])
    if minutes >= 60.0:
        raise ValueError(f"bad minutes {text!r}")
    return int(text[:width]) + minutes / 60.0


def _set_position(epoch: _Epoch, pos: tuple[float, float] | None, kind: str) -> None:
    if pos is None:
        epoch.veto = epoch.veto or f"{kind} without position"
        return
    epoch.lat, epoch.lng = pos


def _rmc(epoch: _Epoch, data: list[str]) -> None:
    stamp = data[8].strip() if len(data) > 8 else ""
    if stamp:
        epoch.date = _parse_date(stamp)
    mode = data[11].strip() if len(data) > 11 else ""
    if data[1].strip() != "A":
        epoch.veto = "RMC status V"
        return
    if mode in _NO_FIX_MODES:
        epoch.veto = f"RMC mode {mode}"
        return
    _set_position(epoch, _latlng(data, 2), "RMC")
    speed = _float(data[6])
    epoch.speed_mps = None if speed is None else round(speed * KNOT_MPS, 3)
    epoch.course_deg = _float(data[7])
    if mode in _MODE_QUALITY and epoch.quality is None:
        epoch.quality = _MODE_QUALITY[mode]


def _gga(epoch: _Epoch, data: list[str]) -> None:
    quality = data[5].strip()
    if quality not in _GGA_QUALITY:
        epoch.veto = f"GGA quality {quality or 'empty'}"
        return
    _set_position(epoch, _latlng(data, 1), "GGA")
    epoch.quality = _GGA_QUALITY[quality]
    sats = data[6].strip()
    epoch.satellites = int(sats) if sats.isdigit() else epoch.satellites
    epoch.hdop = _float(data[7]) or epoch.hdop
    epoch.altitude_m = _float(data[8])


def _gns(epoch: _Epoch, data: list[str]) -> None:
    modes = data[5].strip()
    solved = [m for m in modes if m not in _NO_FIX_MODES]
    if not solved:
        epoch.veto = f"GNS mode {modes or 'empty'}"
        return
    _set_position(epoch, _latlng(data, 1), "GNS")
    if epoch.quality is None and solved[0] in _MODE_QUALITY:
        epoch.quality = _MODE_QUALITY[solved[0]]
    sats = data[6].strip()
    epoch.satellites = int(sats) if sats.isdigit() else epoch.satellites
    epoch.hdop = _float(data[7]) or epoch.hdop
    epoch.altitude_m = _float(data[8])


def _gll(epoch: _Epoch, data: list[str]) -> None:
    status = data[5].strip()
    mode = data[6].strip() if len(data) > 6 else ""
    if status != "A" or mode in _NO_FIX_MODES:
        epoch.veto = f"GLL status {status or 'empty'}"
        return
    _set_position(epoch, _latlng(data, 0), "GLL")


def _gsa(epoch: _Epoch, data: list[str]) -> None:
    # multi-constellation receivers send one GSA per system; any mode 1 vetoes
    if data[1].strip() == "1":
        epoch.veto = epoch.veto or "GSA mode 1 (no fix)"
    hdop = _float(data[15]) if len(data) > 15 else None
    if hdop is not None and epoch.hdop is None:
        epoch.hdop = hdop


def _gst(epoch: _Epoch, data: list[str]) -> None:
    lat_sigma, lon_sigma = _float(data[5]), _float(data[6])
    if lat_sigma is not None and lon_sigma is not None:
        epoch.gst_sigma_m = round(math.hypot(lat_sigma, lon_sigma), 3)


def _vtg(epoch: _Epoch, data: list[str]) -> None:
    course = _float(data[0])
    if course is not None:
        epoch.course_deg = course
    kmh = _float(data[6]) if len(data) > 6 else None
    if kmh is not None:
        epoch.speed_mps = round(kmh * KMH_MPS, 3)


def _zda(epoch: _Epoch, data: list[str]) -> None:
    day, month, year = data[1].strip(), data[2].strip(), data[3].strip()
    if day and month and year:
        epoch.date = date(int(year), int(month), int(day))


def _parse_date(text: str) -> date:
    if len(text) != 6 or not text.isdigit():
        raise ValueError(f"bad date {text!r}")
    year = int(text[4:])
    # NMEA's two-digit year: 80-99 are the 1900s (GPS began in 1980)
    return date(1900 + year if year >= 80 else 2000 + year, int(text[2:4]), int(text[:2]))


_HANDLERS: dict[str, Callable[[_Epoch, list[str]], None]] = {
    "RMC": _rmc,
    "GGA": _gga,
    "GNS": _gns,
    "GLL": _gll,
    "GST": _gst,
    "GSA": _gsa,
    "VTG": _vtg,
    "ZDA": _zda,
}
_TIME_FIELD = {"RMC": 0, "GGA": 0, "GNS": 0, "GLL": 4, "GST": 0, "ZDA": 0}
