"""Workspaces: creation by wallet signature, updates, presence heartbeats, API keys."""

from __future__ import annotations

import json
import sqlite3
from typing import Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from luxxon_agent.eip712 import normalize_address as checksum_address
from luxxon_agent.models import (
    ApiKey,
    AvailabilityState,
    CreateApiKeyRequest,
    CreateWorkspaceRequest,
    ErrorCode,
    LocationHeartbeat,
    Role,
    UpdateWorkspaceRequest,
    WalletChallenge,
    WalletChallengeRequest,
    Workspace,
)
from luxxon_agent.stub.auth import (
    KEY_PREFIX_LENGTH,
    Operator,
    SessionReader,
    WalletSession,
    member_runtime,
    new_api_key,
    token_hash,
)
from luxxon_agent.stub.http_error import HttpError
from luxxon_agent.stub.openapi import Envelope, errors
from luxxon_agent.stub.routes.auth import issue_challenge, usable_nonce
from luxxon_agent.stub.runtime import StubRuntime, ok, runtime
from luxxon_agent.stub.store import ts
from luxxon_agent.stub.wallet_auth import (
    verify_personal_sign,
    workspace_message,
)

router = APIRouter(tags=["workspaces"])


class UpdateWorkspaceBody(UpdateWorkspaceRequest):
    """The request as the stub takes it: BUSY is the server's to set, so a client may ask
    for ONLINE or OFFLINE only (and the schema says so)."""

    availability_state: Literal[AvailabilityState.ONLINE, AvailabilityState.OFFLINE] | None = None


CREATE_WORKSPACE = "workspace"


def workspace_row(stub: StubRuntime, workspace_id: str) -> sqlite3.Row:
    row = stub.store.one(
        "SELECT * FROM workspaces WHERE id = ? AND deleted_at IS NULL", (workspace_id,)
    )
    if row is None:
        raise HttpError(404, ErrorCode.WORKSPACE_NOT_FOUND, "no such workspace", workspace_id)
    return row


def _workspace_ok(
    request: Request, stub: StubRuntime, workspace_id: str, status: int = 200
) -> JSONResponse:
    return ok(request, stub.workspace(workspace_row(stub, workspace_id)), status=status)


def _key_row(stub: StubRuntime, key_id: str) -> sqlite3.Row:
    row = stub.store.one("SELECT * FROM api_keys WHERE id = ?", (key_id,))
    if row is None:
        raise HttpError(404, ErrorCode.NOT_FOUND, "no such API key", key_id)
    return row


@router.post("/workspaces/challenge", response_model=Envelope[WalletChallenge])
async def workspace_challenge(body: WalletChallengeRequest, request: Request) -> JSONResponse:
    stub = runtime(request)
    address = checksum_address(body.wallet_address)
    return ok(request, issue_challenge(stub, CREATE_WORKSPACE, address, workspace_message))


@router.post(
    "/workspaces", status_code=201, response_model=Envelope[Workspace], responses=errors(401, 409)
)
async def create_workspace(body: CreateWorkspaceRequest, request: Request) -> JSONResponse:
    stub = runtime(request)
    address = checksum_address(body.wallet_address)
    message = usable_nonce(stub, CREATE_WORKSPACE, body.nonce, address)
    verify_personal_sign(message, body.signature, address=address)
    if stub.store.one("SELECT 1 FROM workspaces WHERE slug = ?", (body.slug,)) is not None:
        raise HttpError(409, ErrorCode.CONFLICT, "slug is taken", body.slug)
    now = stub.now()
    workspace_id = stub.new_id("ws")
    roles = sorted({role.value for role in body.roles})
    with stub.store.transaction() as conn:
        conn.execute("UPDATE nonces SET used_at = ? WHERE nonce = ?", (ts(now), body.nonce))
        conn.execute(
            "INSERT INTO workspaces (id, slug, name, wallet_address, roles, availability_state,"
            " created_at, created_by_wallet) VALUES (?,?,?,?,?,?,?,?)",
            (
                workspace_id,
                body.slug,
                body.name,
                address,
                json.dumps(roles),
                AvailabilityState.OFFLINE.value,
                ts(now),
                address,
            ),
        )
        conn.execute(
            "INSERT INTO workspace_members (workspace_id, wallet_address) VALUES (?, ?)",
            (workspace_id, address),
        )
    return _workspace_ok(request, stub, workspace_id, status=201)


@router.get("/workspaces/{workspace_id}", response_model=Envelope[Workspace], responses=errors(404))
async def get_workspace(workspace_id: str, request: Request, found: SessionReader) -> JSONResponse:
    stub = member_runtime(request, found, workspace_id)
    return _workspace_ok(request, stub, workspace_id)


@router.patch(
    "/workspaces/{workspace_id}", response_model=Envelope[Workspace], responses=errors(404)
)
async def update_workspace(
    workspace_id: str,
    body: UpdateWorkspaceBody,
    request: Request,
    found: Operator,
) -> JSONResponse:
    stub = member_runtime(request, found, workspace_id)
    row = workspace_row(stub, workspace_id)
    changes = body.model_dump(exclude_unset=True, exclude_none=True)
    merged = {key: row[key] for key in row.keys()} | {
        key: value.value if hasattr(value, "value") else value for key, value in changes.items()
    }
    wanted = changes.pop("availability_state", None)
    current = AvailabilityState(row["availability_state"])
    state = current
    idle_since = row["idle_since"]
    if wanted is AvailabilityState.ONLINE:
        if Role.SUPPLIER.value not in json.loads(row["roles"]):
            raise HttpError(
                400,
                ErrorCode.INVALID_INPUT,
                "availabilityState: only SUPPLIER workspaces go ONLINE",
            )
        missing = [
            name
            for name, key in (
                ("coverageLat", "coverage_lat"),
                ("coverageLng", "coverage_lng"),
                ("coverageRadiusMeters", "coverage_radius_meters"),
            )
            if merged[key] is None
        ]
        if missing:
            raise HttpError(
                400,
                ErrorCode.INVALID_INPUT,
                f"availabilityState: going ONLINE needs {', '.join(missing)}",
            )
        if current is AvailabilityState.OFFLINE:
            state, idle_since = AvailabilityState.ONLINE, ts(stub.now())
    elif wanted is AvailabilityState.OFFLINE:
        state = AvailabilityState.OFFLINE
    with stub.store.transaction() as conn:
        conn.execute(
            "UPDATE workspaces SET name = ?, coverage_lat = ?, coverage_lng = ?,"
            " coverage_radius_meters = ?, device_kind = ?, availability_state = ?, idle_since = ?"
            " WHERE id = ?",
            (
                merged["name"],
                merged["coverage_lat"],
                merged["coverage_lng"],
                merged["coverage_radius_meters"],
                merged["device_kind"],
                state.value,
                idle_since,
                workspace_id,
            ),
        )
    return _workspace_ok(request, stub, workspace_id)


@router.post(
    "/workspaces/{workspace_id}/location",
    response_model=Envelope[Workspace],
    responses=errors(404, 409),
)
async def post_location(
    workspace_id: str,
    body: LocationHeartbeat,
    request: Request,
    found: Operator,
) -> JSONResponse:
    stub = member_runtime(request, found, workspace_id)
    row = workspace_row(stub, workspace_id)
    last = row["last_sequence"]
    if last is not None and body.sequence <= last:
        raise HttpError(
            409,
            ErrorCode.CONFLICT,
            f"sequence {body.sequence} is not above the last accepted {last}",
            "replayed or out-of-order heartbeat",
        )
    if body.session_id is not None:
        owned = stub.store.one(
            "SELECT 1 FROM sessions WHERE id = ? AND operator_workspace_id = ?",
            (body.session_id, workspace_id),
        )
        if owned is None:
            raise HttpError(404, ErrorCode.SESSION_NOT_FOUND, "no such session", body.session_id)
    with stub.store.transaction() as conn:
        conn.execute(
            "UPDATE workspaces SET last_seen_at = ?, last_lat = ?, last_lng = ?,"
            " last_sequence = ? WHERE id = ?",
            (ts(stub.now()), body.lat, body.lng, body.sequence, workspace_id),
        )
    return _workspace_ok(request, stub, workspace_id)


@router.post(
    "/workspaces/{workspace_id}/api-keys", status_code=201, response_model=Envelope[ApiKey]
)
async def create_api_key(
    workspace_id: str,
    body: CreateApiKeyRequest,
    request: Request,
    found: WalletSession,
) -> JSONResponse:
    stub = member_runtime(request, found, workspace_id)
    plaintext = new_api_key(body.environment)
    key_id = stub.new_id("key")
    scopes = sorted({scope.value for scope in body.scopes})
    with stub.store.transaction() as conn:
        conn.execute(
            "INSERT INTO api_keys (id, workspace_id, prefix, key_hash, label, environment,"
            " scopes, created_at, created_by_wallet) VALUES (?,?,?,?,?,?,?,?,?)",
            (
                key_id,
                workspace_id,
                plaintext[:KEY_PREFIX_LENGTH],
                token_hash(plaintext),
                body.label,
                body.environment.value,
                json.dumps(scopes),
                ts(stub.now()),
                found.wallet_address,
            ),
        )
    return ok(request, stub.api_key(_key_row(stub, key_id), plaintext=plaintext), status=201)


@router.get("/workspaces/{workspace_id}/api-keys", response_model=Envelope[list[ApiKey]])
async def list_api_keys(workspace_id: str, request: Request, found: WalletSession) -> JSONResponse:
    stub = member_runtime(request, found, workspace_id)
    rows = stub.store.all(
        "SELECT * FROM api_keys WHERE workspace_id = ? ORDER BY created_at, id", (workspace_id,)
    )
    return ok(request, [stub.api_key(row) for row in rows])


@router.post(
    "/workspaces/{workspace_id}/api-keys/{key_id}/revoke",
    response_model=Envelope[ApiKey],
    responses=errors(404, 409),
)
async def revoke_api_key(
    workspace_id: str,
    key_id: str,
    request: Request,
    found: WalletSession,
) -> JSONResponse:
    stub = member_runtime(request, found, workspace_id)
    row = stub.store.one(
        "SELECT * FROM api_keys WHERE id = ? AND workspace_id = ?", (key_id, workspace_id)
    )
    if row is None:
        raise HttpError(404, ErrorCode.NOT_FOUND, "no such API key", key_id)
    if row["revoked_at"] is not None:
        raise HttpError(409, ErrorCode.CONFLICT, "API key is already revoked", key_id)
    now = stub.now()
    with stub.store.transaction() as conn:
        conn.execute(
            "UPDATE api_keys SET revoked_at = ?, grace_period_end = ? WHERE id = ?",
            (ts(now), ts(now + stub.config.api_key_grace), key_id),
        )
    return ok(request, stub.api_key(_key_row(stub, key_id)))
