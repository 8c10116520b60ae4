"""StubConfig: every knob of the local API server, in one frozen value."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

from luxxon_agent.clock import SYSTEM_CLOCK, Clock
from luxxon_agent.models import MeterMode

APP_NAME = "luxxon-agent"
BASE_CHAIN_ID = 8453
DEFAULT_PORT = 8787
DEFAULT_RATE_PER_SECOND_MICRO_USDC = 1_000
"""0.001 USDC per second (3.60 USDC an hour) when the consumer names no rate."""
DEFAULT_GEOFENCE_RADIUS_METERS = 200.0


def default_db_path() -> Path:
    """The stub's database in the user's data dir (XDG_DATA_HOME is honoured)."""
    from platformdirs import user_data_path

    return user_data_path(APP_NAME, appauthor=False) / "stub.sqlite3"


@dataclass(frozen=True)
class StubConfig:
    """How one stub instance behaves. Only `public_base_url` usually needs setting."""

    db_path: str | Path = ":memory:"
    """SQLite file (WAL mode), or ":memory:" for a throwaway database."""
    public_base_url: str = f"http://127.0.0.1:{DEFAULT_PORT}"
    """Origin the server is reached at (no /api/v1): SIWE domain/uri and minted URLs use it."""
    meter: MeterMode = MeterMode.WALLCLOCK
    """Which meter `/end` runs (stub/metering.py)."""
    fee_bps: int = 1000
    """Platform fee in basis points taken from each charge."""
    chain_id: int = BASE_CHAIN_ID
    """Chain the SIWE messages and /config name (Base mainnet)."""
    clock: Clock = SYSTEM_CLOCK
    """Every time-dependent rule (nonces, cookies, grace, expiry, meter) reads this clock."""
    rng: random.Random = field(default_factory=random.SystemRandom)
    """Source of object ids. Secrets (nonces, keys, cookies, whipUrls) always use `secrets`."""
    nonce_ttl: timedelta = timedelta(minutes=5)
    """How long a SIWE or workspace challenge can be signed and used."""
    session_cookie_ttl: timedelta = timedelta(hours=12)
    """Lifetime of the lx_session cookie and its server-side record."""
    api_key_grace: timedelta = timedelta(seconds=60)
    """A revoked key keeps working this long."""
    sweep_interval_seconds: float = 1.0
    """Period of the pre-LIVE expiry sweep (clock seconds)."""
    default_rate_per_second_micro_usdc: int = DEFAULT_RATE_PER_SECOND_MICRO_USDC
    default_geofence_radius_meters: float = DEFAULT_GEOFENCE_RADIUS_METERS
    telemetry_max_future_skew_ms: int = 2_000
    """Published in /config for the telemetry endpoint (how far ahead capturedAt may be)."""
    telemetry_freshness_seconds: float = 2.0
    """Published in /config: how old a sample may be and still cover a second."""
    with_video: bool = False
    """Serve the real WHIP ingest (stub/ingest/); False mints URLs only."""
    transport_cc: bool = False
    """The ingest answers a publisher's offer of transport-wide sequence numbers and sends
    transport-cc feedback (stub/ingest/feedback.py); False: receiver reports and REMB only."""
    operator_dispatch: bool = True
    """Per-operator dispatch (stub/fleet.py), advertised in /config `features`; False
    answers as production does today: workspace-level only."""

    def __post_init__(self) -> None:
        parts = urlsplit(self.public_base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(
                f"public_base_url must be an http(s) origin, got {self.public_base_url!r}"
            )
        if not 0 <= self.fee_bps <= 10_000:
            raise ValueError(f"fee_bps must lie in 0..10000, got {self.fee_bps}")
        object.__setattr__(self, "public_base_url", self.public_base_url.rstrip("/"))

    @property
    def siwe_domain(self) -> str:
        """EIP-4361 domain: the authority (host[:port]) of the public URL."""
        return urlsplit(self.public_base_url).netloc

    @property
    def siwe_uri(self) -> str:
        """EIP-4361 URI: the public origin."""
        return self.public_base_url

    @property
    def secure_cookies(self) -> bool:
        return urlsplit(self.public_base_url).scheme == "https"
