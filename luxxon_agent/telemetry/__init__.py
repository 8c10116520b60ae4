"""Signed telemetry that is never lost: EIP-712 signing, the 1 Hz sampler, the spool, the uploader.

    signer = KeySigner(device_key.private_key)   # luxxon_agent.eip712
    with Spool(state_dir / "telemetry.sqlite3") as spool:
        async with Uploader(spool, client) as uploader, Sampler(
            spool=spool, provider=latest_fix, signer=signer, session_id=sid,
            chain_id=config.chain_id, on_sample=uploader.notify,
        ):
            ...                               # the session is LIVE
        await uploader.drain(timeout=30)      # before POST /sessions/:id/end

Signing spec: docs/telemetry-signing.md; pipeline and meter: docs/telemetry.md.
"""

from luxxon_agent.telemetry.delegation import Delegation
from luxxon_agent.telemetry.sampler import FixProvider, Sampler, Tick, TickOutcome
from luxxon_agent.telemetry.signing import (
    TelemetryPayload,
    recover_signer,
    sign_sample,
    telemetry_digest,
    telemetry_typed_data,
)
from luxxon_agent.telemetry.spool import SampleState, Spool, SpooledSample, SpoolStats
from luxxon_agent.telemetry.uploader import DrainResult, TelemetrySink, Uploader

__all__ = [
    "Delegation",
    "DrainResult",
    "FixProvider",
    "SampleState",
    "Sampler",
    "Spool",
    "SpoolStats",
    "SpooledSample",
    "TelemetryPayload",
    "TelemetrySink",
    "Tick",
    "TickOutcome",
    "Uploader",
    "recover_signer",
    "sign_sample",
    "telemetry_digest",
    "telemetry_typed_data",
]
