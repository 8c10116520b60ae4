"""EIP-712 signatures over telemetry samples (spec: docs/telemetry-signing.md).

The signed struct carries integers the server can recompute from the wire
JSON exactly: latitude and longitude in 1e-7 degrees, accuracy in
centimetres, capture time in milliseconds since the Unix epoch, plus the
session id (from the URL path, so a sample cannot be replayed into another
session) and the source label. The agent rounds the reading to those units
*before* signing and sends the rounded values, so signer and verifier hash
the same integers.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal

from luxxon_agent.eip712 import (
    KeySigner,
    StructType,
    recover_address,
    signature_bytes,
)
from luxxon_agent.models import Point, TelemetrySample

TELEMETRY_DOMAIN_NAME = "Luxxon Telemetry"
TELEMETRY_DOMAIN_VERSION = "1"
TELEMETRY_TYPE = StructType(
    "Telemetry",
    (
        ("string", "sessionId"),
        ("uint64", "capturedAtMs"),
        ("int32", "latE7"),
        ("int32", "lngE7"),
        ("uint32", "accuracyCm"),
        ("string", "source"),
    ),
)
MAX_ACCURACY_CM = (1 << 32) - 1

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
_E7 = Decimal(10) ** 7


def degrees_to_e7(value: float) -> int:
    """Degrees to integer 1e-7 degrees, rounding the decimal form half to even.

    `repr(float)` is the shortest decimal that reads back as the same float,
    i.e. the digits JSON carries, so this is exact for any value that has at
    most 7 decimals on the wire.
    """
    return int((Decimal(repr(float(value))) * _E7).to_integral_value(ROUND_HALF_EVEN))


def metres_to_cm(value: float) -> int:
    """Metres to integer centimetres, rounding the decimal form half to even."""
    return int((Decimal(repr(float(value))) * 100).to_integral_value(ROUND_HALF_EVEN))


def datetime_to_ms(value: datetime) -> int:
    """Milliseconds since the Unix epoch, truncated as the wire's `.123Z` form is."""
    if value.tzinfo is None:
        raise ValueError("naive datetime: timestamps must be timezone-aware")
    return (value - _EPOCH) // _MS


def ms_to_datetime(value: int) -> datetime:
    return _EPOCH + value * _MS


@dataclass(frozen=True, slots=True)
class TelemetryPayload:
    """The signed fields of one sample, in the units of the EIP-712 struct."""

    session_id: str
    captured_at_ms: int
    lat_e7: int
    lng_e7: int
    accuracy_cm: int
    source: str

    @classmethod
    def from_reading(
        cls,
        session_id: str,
        captured_at: datetime,
        lat: float,
        lng: float,
        accuracy_m: float,
        source: str,
    ) -> TelemetryPayload:
        """Round a position reading to the signed units (what the agent does)."""
        payload = cls(
            session_id=session_id,
            captured_at_ms=datetime_to_ms(captured_at),
            lat_e7=degrees_to_e7(lat),
            lng_e7=degrees_to_e7(lng),
            accuracy_cm=metres_to_cm(accuracy_m),
            source=source,
        )
        payload.check()
        return payload

    @classmethod
    def from_sample(cls, session_id: str, sample: TelemetrySample) -> TelemetryPayload:
        """Recompute the signed integers from a received sample (what a verifier does)."""
        return cls.from_reading(
            session_id,
            sample.captured_at,
            sample.point.lat,
            sample.point.lng,
            sample.accuracy_meters,
            sample.source,
        )

    def check(self) -> None:
        """Raise ValueError when a field does not fit its EIP-712 type or the wire limits."""
        if not self.session_id:
            raise ValueError("sessionId must not be empty")
        if not 0 <= self.captured_at_ms < 1 << 64:
            raise ValueError("capturedAt out of range")
        if not -900_000_000 <= self.lat_e7 <= 900_000_000:
            raise ValueError("latitude out of range")
        if not -1_800_000_000 <= self.lng_e7 <= 1_800_000_000:
            raise ValueError("longitude out of range")
        if not 0 <= self.accuracy_cm <= MAX_ACCURACY_CM:
            raise ValueError("accuracy out of range")
        if not 1 <= len(self.source) <= 32:
            raise ValueError("source must be 1..32 characters")

    @property
    def captured_at(self) -> datetime:
        return ms_to_datetime(self.captured_at_ms)

    @property
    def lat(self) -> float:
        # int / int is correctly rounded: the float nearest the 7-decimal value
        return self.lat_e7 / 10**7

    @property
    def lng(self) -> float:
        return self.lng_e7 / 10**7

    @property
    def accuracy_m(self) -> float:
        return self.accuracy_cm / 100

    def message(self) -> dict[str, object]:
        """The EIP-712 `message` object (camelCase field names)."""
        return {
            "sessionId": self.session_id,
            "capturedAtMs": self.captured_at_ms,
            "latE7": self.lat_e7,
            "lngE7": self.lng_e7,
            "accuracyCm": self.accuracy_cm,
            "source": self.source,
        }

    def to_sample(self, signature: bytes) -> TelemetrySample:
        """The wire body: rounded values, so the server recomputes the same integers."""
        return TelemetrySample(
            captured_at=self.captured_at,
            point=Point(lat=self.lat, lng=self.lng),
            accuracy_meters=self.accuracy_m,
            source=self.source,
            signature="0x" + signature.hex(),
        )


def telemetry_typed_data(payload: TelemetryPayload, chain_id: int) -> dict[str, object]:
    """The full eth_signTypedData_v4 JSON, for wallets and other verifiers."""
    return TELEMETRY_TYPE.typed_data(
        TELEMETRY_DOMAIN_NAME, TELEMETRY_DOMAIN_VERSION, chain_id, payload.message()
    )


def telemetry_digest(payload: TelemetryPayload, chain_id: int) -> bytes:
    """The 32-byte EIP-712 digest of a sample."""
    return TELEMETRY_TYPE.digest(
        TELEMETRY_DOMAIN_NAME, TELEMETRY_DOMAIN_VERSION, chain_id, payload.message()
    )


def sign_sample(signer: KeySigner, payload: TelemetryPayload, chain_id: int) -> TelemetrySample:
    """Sign `payload` and return the wire sample carrying it."""
    payload.check()
    return payload.to_sample(signer.sign_digest(telemetry_digest(payload, chain_id)))


def recover_signer(session_id: str, sample: TelemetrySample, chain_id: int) -> str:
    """The checksummed address that signed `sample` for `session_id`.

    Raises `SignatureError` for a malformed or non-canonical signature and
    ValueError when the sample's values do not fit the signed types. A
    signature over different values recovers to some unrelated address, so
    the caller compares the result with the keys it trusts.
    """
    payload = TelemetryPayload.from_sample(session_id, sample)
    return recover_address(telemetry_digest(payload, chain_id), signature_bytes(sample.signature))
