"""settle(): the simulated atomic settlement of an ended session.

One "transaction" takes the fee and pays the operator (seed, Earnings): the
stub records it as CONFIRMED at once with a deterministic fake tx hash, and
credits the operator workspace's wallet with a SETTLEMENT_CREDIT event.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from luxxon_agent.meter import earnings
from luxxon_agent.models import SettlementState
from luxxon_agent.stub.store import ts

SETTLEMENT_CONTRACT = "0x000000000000000000000000000000000000dEaD"
"""Placeholder: the stub settles nothing on chain."""
USDC_CONTRACT_BASE = "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913"
"""USDC on Base mainnet, as /config reports it."""
CREDIT_EVENT = "SETTLEMENT_CREDIT"


@dataclass(frozen=True)
class SettlementRecord:
    tx_hash: str
    charged_micro_usdc: int
    fee_micro_usdc: int
    operator_earned_micro_usdc: int


def simulated_tx_hash(payload: dict[str, Any]) -> str:
    """0x + 64 hex: a hash of the settlement payload, so equal inputs give equal hashes."""
    digest = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
    return f"0x{digest}"


def settle(
    conn: sqlite3.Connection,
    *,
    session: sqlite3.Row,
    clean_seconds: int,
    failed_seconds: int,
    fee_bps: int,
    chain_id: int,
    operator_wallet: str,
    event_id: str,
    now: datetime,
) -> SettlementRecord:
    """Write the settlement and the operator's wallet credit inside the caller's transaction."""
    split = earnings(clean_seconds, int(session["rate_per_second_micro_usdc"]), fee_bps)
    payload: dict[str, Any] = {
        "sessionId": session["id"],
        "consumerWorkspaceId": session["consumer_workspace_id"],
        "operatorWorkspaceId": session["operator_workspace_id"],
        "operatorWallet": operator_wallet,
        "cleanSeconds": clean_seconds,
        "failedSeconds": failed_seconds,
        "ratePerSecondMicroUsdc": str(session["rate_per_second_micro_usdc"]),
        "chargedMicroUsdc": str(split.charged_micro_usdc),
        "feeMicroUsdc": str(split.fee_micro_usdc),
        "operatorEarnedMicroUsdc": str(split.operator_earned_micro_usdc),
        "feeBps": fee_bps,
        "chainId": chain_id,
        "settlementContract": SETTLEMENT_CONTRACT,
        "usdcContract": USDC_CONTRACT_BASE,
        "settledAt": ts(now),
    }
    tx_hash = simulated_tx_hash(payload)
    conn.execute(
        "INSERT INTO settlements (session_id, state, charged_micro_usdc, fee_micro_usdc,"
        " operator_earned_micro_usdc, fee_bps, tx_hash, payload, created_at)"
        " VALUES (?,?,?,?,?,?,?,?,?)",
        (
            session["id"],
            SettlementState.CONFIRMED.value,
            split.charged_micro_usdc,
            split.fee_micro_usdc,
            split.operator_earned_micro_usdc,
            fee_bps,
            tx_hash,
            json.dumps(payload),
            ts(now),
        ),
    )
    conn.execute(
        "INSERT INTO wallet_events (id, workspace_id, kind, session_id, amount_micro_usdc,"
        " tx_hash, created_at) VALUES (?,?,?,?,?,?,?)",
        (
            event_id,
            session["operator_workspace_id"],
            CREDIT_EVENT,
            session["id"],
            split.operator_earned_micro_usdc,
            tx_hash,
            ts(now),
        ),
    )
    return SettlementRecord(
        tx_hash=tx_hash,
        charged_micro_usdc=split.charged_micro_usdc,
        fee_micro_usdc=split.fee_micro_usdc,
        operator_earned_micro_usdc=split.operator_earned_micro_usdc,
    )
