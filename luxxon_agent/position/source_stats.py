"""`SourceStats`: counters an installer reads off `gps check`."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass
class SourceStats:
    """What came in on the wire, per source (mutated in place as data arrives)."""

    lines: int = 0
    """Lines (NMEA), JSON objects (gpsd) or messages (MAVLink) read."""
    sentences: Counter[str] = field(default_factory=Counter)
    """Accepted items by type: GGA, RMC, ... (any talker), TPV, GLOBAL_POSITION_INT, ..."""
    checksum_failures: int = 0
    """NMEA candidates with a wrong or missing checksum: dropped, never used."""
    parse_failures: int = 0
    """Items that passed the checksum but could not be parsed or had invalid fields."""
    fixes: int = 0
    """Fix reports yielded."""
    no_fixes: int = 0
    """NoFix reports yielded."""
    reconnects: int = 0
    """Times the device or connection was lost and reopened."""
