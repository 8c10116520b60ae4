"""Operators (devices of a SUPPLIER workspace), registered by a wallet-signed delegation.

`POST /workspaces/:id/operators` carries an OperatorDelegation (docs/telemetry-signing.md)
signed with the workspace wallet; the stub verifies it and, from then on, accepts
telemetry signed by the device key until the delegation expires or is revoked.
Registering and revoking need `sessions:operate`, listing needs `sessions:read`
(an API key of the workspace with that scope, or a member's wallet session, which
holds every scope); the scope is checked before anything is looked up, and only
the wallet's signature can authorise a device.

Per-operator dispatch (StubConfig.operator_dispatch; rules in stub/fleet.py) adds
show, update (label, kind, availability, coverage), the operator's heartbeat and
retire; with it off those answer 404 NOT_FOUND, as a server without them would.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from luxxon_agent.eip712 import normalize_address
from luxxon_agent.errors import SignatureError
from luxxon_agent.models import (
    AvailabilityState,
    ErrorCode,
    LocationHeartbeat,
    Operator,
    RegisterOperatorRequest,
    Role,
    SessionState,
    UpdateOperatorRequest,
)
from luxxon_agent.stub import fleet
from luxxon_agent.stub.auth import Operator as OperateCaller
from luxxon_agent.stub.auth import Principal, SessionReader, member_runtime
from luxxon_agent.stub.http_error import HttpError
from luxxon_agent.stub.openapi import Envelope, errors
from luxxon_agent.stub.routes.workspaces import (
    require_coverage,
    require_rising_sequence,
    workspace_row,
)
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
ADDED_COLUMNS = {"operators": fleet.OPERATOR_COLUMNS}


class UpdateOperatorBody(UpdateOperatorRequest):
    """The request as the stub takes it: BUSY is the server's to set (and the schema says so)."""

    availability_state: Literal[AvailabilityState.ONLINE, AvailabilityState.OFFLINE] | None = None


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
        availability_state=row["availability_state"],
        coverage_lat=row["coverage_lat"],
        coverage_lng=row["coverage_lng"],
        coverage_radius_meters=row["coverage_radius_meters"],
        last_seen_at=parse_ts(row["last_seen_at"]),
        session_id=row["session_id"],
        retired_at=parse_ts(row["retired_at"]),
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


def _workspace_operator(stub: StubRuntime, workspace_id: str, operator_id: str) -> sqlite3.Row:
    row = stub.store.one(
        "SELECT * FROM operators WHERE id = ? AND workspace_id = ?", (operator_id, workspace_id)
    )
    if row is None:
        raise HttpError(404, ErrorCode.NOT_FOUND, "no such operator", operator_id)
    return row


def _dispatch_runtime(request: Request, found: Principal, workspace_id: str) -> StubRuntime:
    """member_runtime, for the per-operator endpoints: 404 when the capability is off."""
    stub = member_runtime(request, found, workspace_id)
    if not stub.config.operator_dispatch:
        raise HttpError(
            404, ErrorCode.NOT_FOUND, "no such endpoint: this server has no per-operator dispatch"
        )
    return stub


def _derive_workspace(stub: StubRuntime, conn: sqlite3.Connection, workspace_id: str) -> None:
    """An operator changed: an operator-level workspace's availability follows it."""
    if stub.operator_level(workspace_id):
        fleet.derive_workspace_availability(conn, workspace_id, stub.now())


def _live_operator(stub: StubRuntime, workspace_id: str, operator_id: str) -> sqlite3.Row:
    """The operator, refused with OPERATOR_RETIRED once retired."""
    row = _workspace_operator(stub, workspace_id, operator_id)
    if row["retired_at"] is not None:
        raise fleet.retired(operator_id)
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
    if fleet.label_taken(stub.store, workspace_id, body.label):
        raise HttpError(
            409, ErrorCode.CONFLICT, f"operator {body.label!r} exists; revoke it first", body.label
        )
    # one device key, one operator: else each could sign (and so pay) the other's session
    holder = fleet.address_taken(stub.store, workspace_id, delegation.device_address)
    if holder is not None:
        raise HttpError(
            409,
            ErrorCode.CONFLICT,
            f"deviceAddress: operator {holder} already has this device key; revoke it first",
            holder,
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
    row = _workspace_operator(stub, workspace_id, operator_id)
    if row["revoked_at"] is None:
        with stub.store.transaction() as conn:
            # a revoked device takes no new work; a session it holds keeps running
            conn.execute(
                "UPDATE operators SET revoked_at = ?, availability_state = ? WHERE id = ?",
                (ts(stub.now()), fleet.OFFLINE, operator_id),
            )
            _derive_workspace(stub, conn, workspace_id)
        row = _operator_row(stub, operator_id)
    return ok(request, operator_model(row))


# ---- per-operator dispatch (stub extension of the roadmap; docs/api.md) ----------------


@router.get(
    "/workspaces/{workspace_id}/operators/{operator_id}",
    response_model=Envelope[Operator],
    responses=errors(404),
)
async def get_operator(
    workspace_id: str, operator_id: str, request: Request, found: SessionReader
) -> JSONResponse:
    stub = _dispatch_runtime(request, found, workspace_id)
    return ok(request, operator_model(_workspace_operator(stub, workspace_id, operator_id)))


@router.patch(
    "/workspaces/{workspace_id}/operators/{operator_id}",
    response_model=Envelope[Operator],
    responses=errors(404, 409),
)
async def update_operator(
    workspace_id: str,
    operator_id: str,
    body: UpdateOperatorBody,
    request: Request,
    found: OperateCaller,
) -> JSONResponse:
    """ONLINE needs the full coverage triple (sent now or stored); OFFLINE while holding a
    session keeps the session, the operator just takes no new work."""
    stub = _dispatch_runtime(request, found, workspace_id)
    row = _live_operator(stub, workspace_id, operator_id)
    changes = body.model_dump(exclude_unset=True, exclude_none=True)
    wanted = changes.pop("availability_state", None)
    merged = {key: row[key] for key in row.keys()} | {
        key: value.value if hasattr(value, "value") else value for key, value in changes.items()
    }
    now = stub.now()
    if wanted is AvailabilityState.ONLINE:
        require_coverage(merged)
        fleet.require_valid_key(row, now, "availabilityState: ")
        if row["availability_state"] == fleet.OFFLINE:
            holding = row["session_id"] is not None
            merged["availability_state"] = fleet.BUSY if holding else fleet.ONLINE
            merged["idle_since"] = row["idle_since"] if holding else ts(now)
            merged["first_online_at"] = row["first_online_at"] or ts(now)
    elif wanted is AvailabilityState.OFFLINE:
        merged["availability_state"] = fleet.OFFLINE
    if body.label is not None and body.label != row["label"]:
        if fleet.label_taken(stub.store, workspace_id, body.label):
            raise HttpError(409, ErrorCode.CONFLICT, f"label: {body.label!r} is taken", body.label)
    with stub.store.transaction() as conn:
        conn.execute(
            "UPDATE operators SET label = ?, kind = ?, coverage_lat = ?, coverage_lng = ?,"
            " coverage_radius_meters = ?, availability_state = ?, idle_since = ?,"
            " first_online_at = ? WHERE id = ?",
            (
                merged["label"],
                merged["kind"],
                merged["coverage_lat"],
                merged["coverage_lng"],
                merged["coverage_radius_meters"],
                merged["availability_state"],
                merged["idle_since"],
                merged["first_online_at"],
                operator_id,
            ),
        )
        _derive_workspace(stub, conn, workspace_id)
    return ok(request, operator_model(_operator_row(stub, operator_id)))


@router.post(
    "/workspaces/{workspace_id}/operators/{operator_id}/location",
    response_model=Envelope[Operator],
    responses=errors(404, 409),
)
async def post_operator_location(
    workspace_id: str,
    operator_id: str,
    body: LocationHeartbeat,
    request: Request,
    found: OperateCaller,
) -> JSONResponse:
    """The operator's heartbeat: `sequence` rises per operator, as the workspace's does."""
    stub = _dispatch_runtime(request, found, workspace_id)
    row = _live_operator(stub, workspace_id, operator_id)
    require_rising_sequence(row["last_sequence"], body.sequence)
    if body.session_id is not None:
        held = stub.store.one(
            "SELECT 1 FROM sessions WHERE id = ? AND operator_id = ?",
            (body.session_id, operator_id),
        )
        if held is None:
            raise HttpError(
                404, ErrorCode.SESSION_NOT_FOUND, "sessionId: no such session of this operator"
            )
    now = ts(stub.now())
    with stub.store.transaction() as conn:
        conn.execute(
            "UPDATE operators SET last_seen_at = ?, last_lat = ?, last_lng = ?,"
            " last_sequence = ? WHERE id = ?",
            (now, body.lat, body.lng, body.sequence, operator_id),
        )
        conn.execute("UPDATE workspaces SET last_seen_at = ? WHERE id = ?", (now, workspace_id))
    return ok(request, operator_model(_operator_row(stub, operator_id)))


@router.post(
    "/workspaces/{workspace_id}/operators/{operator_id}/retire",
    response_model=Envelope[Operator],
    responses=errors(404),
)
async def retire_operator(
    workspace_id: str, operator_id: str, request: Request, found: OperateCaller
) -> JSONResponse:
    """OFFLINE for good: an ASSIGNED session it holds is cancelled, a LIVE one runs to its
    end, offers made to it go back to the workspace. Idempotent."""
    stub = _dispatch_runtime(request, found, workspace_id)
    row = _workspace_operator(stub, workspace_id, operator_id)
    if row["retired_at"] is not None:
        return ok(request, operator_model(row))
    assigned = stub.store.all(
        "SELECT * FROM sessions WHERE operator_id = ? AND state = ?",
        (operator_id, SessionState.ASSIGNED.value),
    )
    with stub.store.transaction() as conn:
        conn.execute(
            "UPDATE operators SET retired_at = ?, availability_state = ? WHERE id = ?",
            (ts(stub.now()), fleet.OFFLINE, operator_id),
        )
        refs = stub.finish_pre_live(conn, assigned, SessionState.CANCELLED)
        for session in assigned:
            stub.free_operator_of(conn, session)
        conn.execute(
            "UPDATE sessions SET operator_id = NULL WHERE operator_id = ? AND state = ?",
            (operator_id, SessionState.REQUESTED.value),
        )
        _derive_workspace(stub, conn, workspace_id)
    await stub.close_inputs(refs)
    return ok(request, operator_model(_operator_row(stub, operator_id)))
