"""Shared helpers for the position tests."""

from __future__ import annotations

from pathlib import Path

CORPUS = Path(__file__).resolve().parents[1] / "data" / "gpsd-nmea"
"""gpsd's regression captures (BSD-2-Clause, see README.md there)."""
