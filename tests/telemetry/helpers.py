"""Small builders shared by the telemetry tests."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from luxxon_agent.models import TelemetrySample
from luxxon_agent.secret import Secret
from luxxon_agent.telemetry import KeySigner, TelemetryPayload, sign_sample

CHAIN = 8453
T0 = datetime(2026, 5, 13, 8, 0, tzinfo=UTC)
DEVICE = KeySigner(Secret("0x" + "42" * 32))


def signed(
    session_id: str,
    at: datetime,
    *,
    lat: float = 4.711,
    lng: float = -74.072,
    accuracy_m: float = 3.0,
    signer: KeySigner = DEVICE,
    chain_id: int = CHAIN,
) -> TelemetrySample:
    payload = TelemetryPayload.from_reading(session_id, at, lat, lng, accuracy_m, "gps")
    return sign_sample(signer, payload, chain_id)


def seconds(start: datetime, count: int) -> list[datetime]:
    return [start + timedelta(seconds=i) for i in range(count)]


@dataclass(frozen=True)
class FakeFix:
    """What LatestFix.current() hands out."""

    time: datetime
    lat: float
    lng: float
    accuracy_m: float | None = 3.0
    source: str = "sim"
