"""Great-circle distance, shared by dispatch coverage, the geofence meter and the agent."""

from __future__ import annotations

import math

EARTH_RADIUS_M = 6_371_008.8
"""Mean Earth radius (IUGG)."""


def haversine_meters(lat1: float, lng1: float, lat2: float, lng2: float) -> float:
    """Distance in metres between two WGS-84 points on a spherical Earth (haversine)."""
    phi1, phi2 = math.radians(lat1), math.radians(lat2)
    dphi = phi2 - phi1
    dlmb = math.radians(lng2 - lng1)
    h = math.sin(dphi / 2) ** 2 + math.cos(phi1) * math.cos(phi2) * math.sin(dlmb / 2) ** 2
    # min(): rounding can push h a hair above 1 for antipodal points
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(h)))
