"""The report of `luxxon sessions earnings ID`: the server's figures and this machine's cross-check.

The server's side is the session (cleanSeconds, failedSeconds, chargedMicroUsdc)
and its settlement. The local side, when this machine's spool holds the
session, re-runs the telemetry-anchored meter (luxxon_agent.meter) over the
samples taken here, as the server would if it had received all of them: over
startedAt .. min(endedAt or now, startedAt + maxDurationSeconds).

Without an explicit spool, the agent's spools are searched:
`<state_dir>/<operator label>/telemetry.sqlite3`, state_dir being the agent's
default (`[agent] state_dir`) or `$LUXXON_AGENT_AGENT_STATE_DIR`.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from luxxon_agent.errors import ApiError
from luxxon_agent.meter import earnings, telemetry_clean_seconds
from luxxon_agent.models import Session, Settlement
from luxxon_agent.telemetry.signing import ms_to_datetime
from luxxon_agent.telemetry.spool import SampleState, Spool
from luxxon_agent.wire import SPOOL_FILE_NAME

if TYPE_CHECKING:
    from luxxon_agent.api import AsyncLuxxonClient


@dataclass(frozen=True, slots=True)
class _LocalSample:
    captured_at: datetime
    lat: float
    lng: float
    accuracy_m: float


@dataclass(frozen=True, slots=True)
class LocalCheck:
    """What this machine's spool says about one session."""

    samples_taken: int
    delivered: int
    pending: int
    rejected: int
    seconds_metered: int
    """Whole seconds from startedAt to endedAt (or now, while LIVE), at most maxDurationSeconds."""
    seconds_covered: int
    """Seconds the telemetry meter counts clean over the samples taken here (rejected excluded)."""
    would_earn_micro_usdc: int
    """What the operator earns for `seconds_covered` after the fee."""


def local_check(
    spool: Spool,
    session: Session,
    *,
    now: datetime,
    fee_bps: int,
    freshness_s: float,
    default_radius_m: float,
) -> LocalCheck | None:
    """The cross-check, or None when the spool holds nothing of this session."""
    rows = spool.samples(session.id)
    if not rows:
        return None
    counted = []
    for row in rows:
        if row.state is SampleState.REJECTED:
            continue
        body = json.loads(row.body)
        counted.append(
            _LocalSample(
                captured_at=ms_to_datetime(row.captured_at_ms),
                lat=body["point"]["lat"],
                lng=body["point"]["lng"],
                accuracy_m=body["accuracyMeters"],
            )
        )
    covered = metered = 0
    if session.started_at is not None:
        # the server meters no second past maxDurationSeconds, even when /end came later
        latest = session.started_at + timedelta(seconds=session.max_duration_seconds)
        end = min(session.ended_at or now, latest)
        covered, failed = telemetry_clean_seconds(
            session.started_at,
            end,
            counted,
            (session.requested_lat, session.requested_lng),
            session.geofence_radius_meters or default_radius_m,
            freshness_s,
        )
        metered = covered + failed
    states = Counter(row.state for row in rows)
    split = earnings(covered, session.rate_per_second_micro_usdc, fee_bps)
    return LocalCheck(
        samples_taken=len(rows),
        delivered=states[SampleState.DELIVERED],
        pending=states[SampleState.PENDING],
        rejected=states[SampleState.REJECTED],
        seconds_metered=metered,
        seconds_covered=covered,
        would_earn_micro_usdc=split.operator_earned_micro_usdc,
    )


DEFAULT_GEOFENCE_RADIUS_M = 200.0
"""Used only when the server's session carries no geofenceRadiusMeters."""


def agent_spools(env: Mapping[str, str]) -> tuple[Path, list[Path]]:
    """The agent's state directory and the spools in it (one per operator label)."""
    # the agent's own settings decide where it keeps spools: read them, never restate them
    from luxxon_agent.agent.config import AgentSection, env_name

    state_dir = env.get(env_name(("agent", "state_dir")))
    root = Path(state_dir) if state_dir else AgentSection.model_fields["state_dir"].default
    try:
        found = sorted(root.glob(f"*/{SPOOL_FILE_NAME}"))
    except OSError:
        found = []  # unreadable (another user's state_dir): reported as "no spool found"
    return root, found


async def earnings_report(
    client: AsyncLuxxonClient,
    session_id: str,
    spool_path: Path | None,
    *,
    now: datetime,
    env: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Server figures plus, when a spool holds the session, the local cross-check.

    `spool_path=None` searches the agent's spools (`agent_spools(env)`).
    `report["spool"]` says where it looked: `searched` (paths), `found` (the
    spools that exist) and `holdsSession`.
    """
    session = await client.get_session(session_id)
    config = await client.config()
    settlement: Settlement | None
    try:
        settlement = await client.settlement(session_id)
    except ApiError as exc:
        if exc.status != 404:
            raise
        settlement = None
    fee_bps = settlement.fee_bps if settlement and settlement.fee_bps is not None else None
    fee_bps = config.fee_bps if fee_bps is None else fee_bps
    server: dict[str, Any] = {
        "sessionId": session.id,
        "state": session.state.value,
        "cleanSeconds": session.clean_seconds,
        "failedSeconds": session.failed_seconds,
        "ratePerSecondMicroUsdc": str(session.rate_per_second_micro_usdc),
        "chargedMicroUsdc": _money(session.charged_micro_usdc),
        "meter": config.meter.value,
        "settlementState": settlement.state.value if settlement else None,
        "feeMicroUsdc": _money(settlement.fee_micro_usdc if settlement else None),
        "operatorEarnedMicroUsdc": _money(
            settlement.operator_earned_micro_usdc if settlement else None
        ),
        "settlementTxHash": settlement.tx_hash if settlement else None,
    }
    if spool_path is not None:
        searched, candidates = str(spool_path), [spool_path] if spool_path.exists() else []
    else:
        root, candidates = agent_spools(env or {})
        searched = str(root / "*" / SPOOL_FILE_NAME)
    where: dict[str, Any] = {
        "searched": searched,
        "found": [str(c) for c in candidates],
        "holdsSession": False,
    }
    report: dict[str, Any] = {"server": server, "local": None, "spool": where}
    for candidate in candidates:
        with Spool(candidate) as spool:
            check = local_check(
                spool,
                session,
                now=now,
                fee_bps=fee_bps,
                freshness_s=config.telemetry_freshness_seconds,
                default_radius_m=DEFAULT_GEOFENCE_RADIUS_M,
            )
        if check is not None:
            local = {_camel(k): v for k, v in asdict(check).items()}
            local["wouldEarnMicroUsdc"] = str(check.would_earn_micro_usdc)
            local["spool"] = str(candidate)
            report["local"] = local
            where["holdsSession"] = True
            break
    return report


def local_summary(report: Mapping[str, Any]) -> str | None:
    """One line explaining a missing cross-check (None when there is one)."""
    if report["local"] is not None:
        return None
    where = report["spool"]
    if not where["found"]:
        return (
            f"local cross-check: no telemetry spool found at {where['searched']}"
            " (pass --spool PATH)"
        )
    spools = ", ".join(where["found"])
    return f"local cross-check: no samples of this session in {spools}"


def _money(value: int | None) -> str | None:
    return None if value is None else str(value)


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)
