"""The workspace wallet (tracked balance, event ledger) and settlements."""

from __future__ import annotations

import json

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from luxxon_agent.models import (
    ErrorCode,
    Scope,
    Settlement,
    SettlementState,
    WalletBalance,
    WalletEvent,
)
from luxxon_agent.stub.auth import (
    AnyCaller,
    WalletReader,
)
from luxxon_agent.stub.http_error import HttpError
from luxxon_agent.stub.openapi import Envelope, errors
from luxxon_agent.stub.routes.sessions import visible_session
from luxxon_agent.stub.runtime import ok, runtime
from luxxon_agent.stub.store import parse_ts

router = APIRouter(tags=["wallet"])


@router.get("/wallet", response_model=Envelope[WalletBalance], responses=errors(404))
async def wallet(request: Request, found: WalletReader) -> JSONResponse:
    stub = runtime(request)
    workspace = stub.store.one(
        "SELECT wallet_address FROM workspaces WHERE id = ?", (found.workspace_id,)
    )
    if workspace is None:
        raise HttpError(404, ErrorCode.WORKSPACE_NOT_FOUND, "no such workspace")
    total = stub.store.one(
        "SELECT COALESCE(SUM(amount_micro_usdc), 0) FROM wallet_events WHERE workspace_id = ?",
        (found.workspace_id,),
    )
    return ok(
        request,
        WalletBalance(
            workspace_id=str(found.workspace_id),
            wallet_address=workspace["wallet_address"],
            balance_micro_usdc=int(total[0]) if total else 0,
        ),
    )


@router.get("/wallet/events", response_model=Envelope[list[WalletEvent]])
async def wallet_events(request: Request, found: WalletReader) -> JSONResponse:
    stub = runtime(request)
    rows = stub.store.all(
        "SELECT * FROM wallet_events WHERE workspace_id = ? ORDER BY created_at DESC, id DESC",
        (found.workspace_id,),
    )
    return ok(
        request,
        [
            WalletEvent(
                id=row["id"],
                kind=row["kind"],
                session_id=row["session_id"],
                amount_micro_usdc=row["amount_micro_usdc"],
                tx_hash=row["tx_hash"],
                created_at=parse_ts(row["created_at"]),
            )
            for row in rows
        ],
    )


@router.get("/settlements/{session_id}", response_model=Envelope[Settlement], responses=errors(404))
async def settlement(session_id: str, request: Request, found: AnyCaller) -> JSONResponse:
    """Either side, with sessions:read or wallet:read."""
    if not found.scopes & {Scope.SESSIONS_READ, Scope.WALLET_READ}:
        raise HttpError(
            403, ErrorCode.NOT_AUTHORIZED, "this API key lacks sessions:read or wallet:read"
        )
    stub = runtime(request)
    visible_session(stub, session_id, found.workspace_id)
    row = stub.store.one("SELECT * FROM settlements WHERE session_id = ?", (session_id,))
    if row is None:
        return ok(request, Settlement(session_id=session_id, state=SettlementState.NOT_READY))
    return ok(
        request,
        Settlement(
            session_id=session_id,
            state=row["state"],
            charged_micro_usdc=row["charged_micro_usdc"],
            fee_micro_usdc=row["fee_micro_usdc"],
            operator_earned_micro_usdc=row["operator_earned_micro_usdc"],
            fee_bps=row["fee_bps"],
            tx_hash=row["tx_hash"],
            payload=json.loads(row["payload"]),
        ),
    )
