"""Build NMEA sentences with correct checksums for tests."""

from __future__ import annotations


def sentence(body: str) -> str:
    """`GPGGA,...` -> `$GPGGA,...*hh`."""
    checksum = 0
    for char in body:
        checksum ^= ord(char)
    return f"${body}*{checksum:02X}"


def cycle(
    hhmmss: str,
    *,
    date: str = "130526",
    lat: str = "0442.6600",
    ns: str = "N",
    lng: str = "07404.3200",
    ew: str = "W",
    quality: str = "1",
    status: str = "A",
    hdop: str = "0.9",
    talker: str = "GP",
) -> list[str]:
    """One receiver cycle: GGA + RMC for the same epoch."""
    return [
        sentence(
            f"{talker}GGA,{hhmmss},{lat},{ns},{lng},{ew},{quality},08,{hdop},2600.0,M,4.0,M,,"
        ),
        sentence(f"{talker}RMC,{hhmmss},{status},{lat},{ns},{lng},{ew},0.5,90.0,{date},,,A"),
    ]
