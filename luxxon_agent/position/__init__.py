"""Position: honest GPS fixes from serial NMEA, TCP, gpsd, MAVLink, a replayed file or a sim.

    source = open_source("serial:///dev/ttyUSB0")      # or tcp://, gpsd://, mavlink://, ...
    latest = LatestFix()                              # freshness: 2 s by default
    async for report in source:                       # Fix | NoFix, forever (files end)
        latest.update(report)
    latest.current()                                  # Fix, or None if stale / no fix

See docs/position.md for the NMEA rules (epochs, validity, accuracy, dates).
"""

from luxxon_agent.position.fix import Fix, FixQuality, NoFix, SourceKind, TimeSource, iso_utc
from luxxon_agent.position.latest_fix import DEFAULT_MAX_AGE_S, LatestFix
from luxxon_agent.position.nmea import UERE_M, NmeaAssembler
from luxxon_agent.position.open_source import open_source
from luxxon_agent.position.position_source import PositionSource
from luxxon_agent.position.source_stats import SourceStats

__all__ = [
    "DEFAULT_MAX_AGE_S",
    "Fix",
    "FixQuality",
    "LatestFix",
    "NmeaAssembler",
    "NoFix",
    "PositionSource",
    "SourceKind",
    "SourceStats",
    "TimeSource",
    "UERE_M",
    "iso_utc",
    "open_source",
]
