"""Operators (devices of a SUPPLIER workspace), registered by a wallet-signed delegation.

`POST /workspaces/:id/operators` carries an OperatorDelegation (docs/telemetry-signing.md)
signed with the workspace wallet; the stub verifies it and, from then on, accepts
telemetry signed by the device key until the delegation expires or is revoked.
Registering and revoking need `sessions:operate`, listing needs `sessions:read`
(an API key of the workspace with that scope, or a member's wallet session, which
holds every scope); the scope is checked before anything is looked up, and only
the wallet's signature can authorise a device.
"""

from __future__ import annotations

import json
import sqlite3

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from luxxon_agent.eip712 import normalize_address
from luxxon_agent.errors import SignatureError
from luxxon_agent.models import ErrorCode, Operator, RegisterOperatorRequest, Role
from luxxon_agent.stub.auth import Operator as OperateCaller
from luxxon_agent.stub.auth import SessionReader, member_runtime
from luxxon_agent.stub.http_error import HttpError
from luxxon_agent.stub.openapi import Envelope, errors
from luxxon_agent.stub.routes.workspaces import workspace_row
from luxxon_agent.stub.runtime import StubRuntime, ok
from luxxon_agent.stub.store import parse_ts, ts
from luxxon_agent.telemetry.delegation import Delegation

router = APIRouter(tags=["operators"])

SCHEMA = """
CREATE TABLE IF NOT EXISTS operators (
    id TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces(id),
    label TEXT NOT NULL,
    kind TEXT NOT NULL,
    device_address TEXT NOT NULL,
    issued_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    delegation_signature TEXT NOT NULL,
    delegation_digest TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL,
    revoked_at TEXT
);
CREATE INDEX IF NOT EXISTS operators_device ON operators (workspace_id, device_address);
CREATE UNIQUE INDEX IF NOT EXISTS operators_active_label
    ON operators (workspace_id, label) WHERE revoked_at IS NULL;
"""


def operator_model(row: sqlite3.Row) -> Operator:
    return Operator(
        id=row["id"],
        workspace_id=row["workspace_id"],
        label=row["label"],
        kind=row["kind"],
        device_address=row["device_address"],
        issued_at=parse_ts(row["issued_at"]),
        expires_at=parse_ts(row["expires_at"]),
        delegation_signature=row["delegation_signature"],
        created_at=parse_ts(row["created_at"]),
        revoked_at=parse_ts(row["revoked_at"]),
    )


def _supplier_workspace(stub: StubRuntime, workspace_id: str) -> sqlite3.Row:
    row = workspace_row(stub, workspace_id)
    if Role.SUPPLIER.value not in json.loads(row["roles"]):
        raise HttpError(
            403, ErrorCode.NOT_AUTHORIZED, "only SUPPLIER workspaces have operators", workspace_id
        )
    return row


def _operator_row(stub: StubRuntime, operator_id: str) -> sqlite3.Row:
    row = stub.store.one("SELECT * FROM operators WHERE id = ?", (operator_id,))
    assert row is not None  # only called right after a write to this id
    return row


def _invalid(message: str, detail: str | None = None) -> HttpError:
    return HttpError(400, ErrorCode.INVALID_DELEGATION, message, detail)


@router.post(
    "/workspaces/{workspace_id}/operators",
    status_code=201,
    response_model=Envelope[Operator],
    responses=errors(404, 409),
)
async def register_operator(
    workspace_id: str, body: RegisterOperatorRequest, request: Request, found: OperateCaller
) -> JSONResponse:
    stub = member_runtime(request, found, workspace_id)
    workspace = _supplier_workspace(stub, workspace_id)
    try:
        delegation = Delegation.create(
            workspace_id, body.label, body.device_address, body.issued_at, body.expires_at
        )
    except ValueError as exc:
        raise _invalid(str(exc)) from None
    if delegation.expires_at <= stub.now():
        raise _invalid("the delegation has already expired", ts(delegation.expires_at))
    try:
        signer = delegation.recover(body.signature, stub.config.chain_id)
    except (SignatureError, ValueError) as exc:
        # ValueError: a time that does not fit the delegation's uint64 fields
        raise _invalid(str(exc)) from None
    wallet = normalize_address(workspace["wallet_address"])
    if signer != wallet:
        raise _invalid(
            "the delegation is not signed by the workspace wallet",
            f"signed by {signer}, workspace wallet is {wallet}",
        )
    if normalize_address(body.device_address) == wallet:
        raise _invalid("the device key must not be the workspace wallet")
    digest = "0x" + delegation.digest(stub.config.chain_id).hex()
    if stub.store.one("SELECT 1 FROM operators WHERE delegation_digest = ?", (digest,)):
        raise HttpError(409, ErrorCode.CONFLICT, "this delegation was already used; sign a new one")
    if stub.store.one(
        "SELECT 1 FROM operators WHERE workspace_id = ? AND label = ? AND revoked_at IS NULL",
        (workspace_id, body.label),
    ):
        raise HttpError(
            409, ErrorCode.CONFLICT, f"operator {body.label!r} exists; revoke it first", body.label
        )
    operator_id = stub.new_id("op")
    with stub.store.transaction() as conn:
        conn.execute(
            "INSERT INTO operators (id, workspace_id, label, kind, device_address, issued_at,"
            " expires_at, delegation_signature, delegation_digest, created_at)"
            " VALUES (?,?,?,?,?,?,?,?,?,?)",
            (
                operator_id,
                workspace_id,
                body.label,
                body.kind.value,
                delegation.device_address,
                ts(delegation.issued_at),
                ts(delegation.expires_at),
                body.signature,
                digest,
                ts(stub.now()),
            ),
        )
    return ok(request, operator_model(_operator_row(stub, operator_id)), status=201)


@router.get(
    "/workspaces/{workspace_id}/operators",
    response_model=Envelope[list[Operator]],
    responses=errors(404),
)
async def list_operators(workspace_id: str, request: Request, found: SessionReader) -> JSONResponse:
    stub = member_runtime(request, found, workspace_id)
    _supplier_workspace(stub, workspace_id)
    rows = stub.store.all(
        "SELECT * FROM operators WHERE workspace_id = ? ORDER BY created_at, id", (workspace_id,)
    )
    return ok(request, [operator_model(row) for row in rows])


@router.post(
    "/workspaces/{workspace_id}/operators/{operator_id}/revoke",
    response_model=Envelope[Operator],
    responses=errors(404),
)
async def revoke_operator(
    workspace_id: str, operator_id: str, request: Request, found: OperateCaller
) -> JSONResponse:
    """Immediate: from now on nothing signed by the device key is accepted. Idempotent."""
    stub = member_runtime(request, found, workspace_id)
    row = stub.store.one(
        "SELECT * FROM operators WHERE id = ? AND workspace_id = ?", (operator_id, workspace_id)
    )
    if row is None:
        raise HttpError(404, ErrorCode.NOT_FOUND, "no such operator", operator_id)
    if row["revoked_at"] is None:
        with stub.store.transaction() as conn:
            conn.execute(
                "UPDATE operators SET revoked_at = ? WHERE id = ?", (ts(stub.now()), operator_id)
            )
        row = _operator_row(stub, operator_id)
    return ok(request, operator_model(row))
