"""SIWE wallet login, workspace selection, logout, and GET /me."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import datetime

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from luxxon_agent.eip712 import normalize_address as checksum_address
from luxxon_agent.models import (
    ErrorCode,
    Me,
    SelectWorkspaceRequest,
    WalletChallenge,
    WalletChallengeRequest,
    WalletLoginRequest,
    WalletLoginResult,
)
from luxxon_agent.stub.auth import (
    AnyCaller,
    Principal,
    WalletSession,
    member_runtime,
    token_hash,
)
from luxxon_agent.stub.config import StubConfig
from luxxon_agent.stub.http_error import HttpError
from luxxon_agent.stub.openapi import Envelope, LoggedOut, errors
from luxxon_agent.stub.runtime import StubRuntime, ok, runtime
from luxxon_agent.stub.store import parse_ts, ts
from luxxon_agent.stub.wallet_auth import (
    new_nonce,
    siwe_message,
    verify_siwe,
)
from luxxon_agent.wire import SESSION_COOKIE

router = APIRouter(tags=["auth"])

LOGIN = "login"


ChallengeText = Callable[[StubConfig, str, str, datetime, datetime], str]


def issue_challenge(
    stub: StubRuntime, purpose: str, address: str, build: ChallengeText
) -> WalletChallenge:
    """Store a single-use nonce bound to `address` and `purpose`, with the exact message."""
    now = stub.now()
    expires = now + stub.config.nonce_ttl
    nonce = new_nonce()
    message = build(stub.config, address, nonce, now, expires)
    with stub.store.transaction() as conn:
        conn.execute(
            "INSERT INTO nonces (nonce, purpose, wallet_address, message, expires_at)"
            " VALUES (?,?,?,?,?)",
            (nonce, purpose, address, message, ts(expires)),
        )
    return WalletChallenge(nonce=nonce, message=message, expires_at=expires)


def usable_nonce(stub: StubRuntime, purpose: str, nonce: str, address: str) -> str:
    """The stored message of a nonce that is this wallet's, unused and unexpired; else 401."""
    row = stub.store.one("SELECT * FROM nonces WHERE nonce = ? AND purpose = ?", (nonce, purpose))
    if row is None:
        raise HttpError(401, ErrorCode.INVALID_TOKEN, "unknown nonce; request a new challenge")
    if row["wallet_address"] != address:
        raise HttpError(401, ErrorCode.INVALID_TOKEN, "nonce was issued to another wallet")
    if row["used_at"] is not None:
        raise HttpError(401, ErrorCode.INVALID_TOKEN, "nonce already used; request a new challenge")
    expires = parse_ts(row["expires_at"])
    if expires is None or stub.now() >= expires:
        raise HttpError(401, ErrorCode.INVALID_TOKEN, "nonce expired; request a new challenge")
    return str(row["message"])


@router.post("/auth/wallet/challenge", response_model=Envelope[WalletChallenge])
async def wallet_challenge(body: WalletChallengeRequest, request: Request) -> JSONResponse:
    stub = runtime(request)
    address = checksum_address(body.wallet_address)
    return ok(request, issue_challenge(stub, LOGIN, address, siwe_message))


@router.post(
    "/auth/wallet/login", response_model=Envelope[WalletLoginResult], responses=errors(401)
)
async def wallet_login(body: WalletLoginRequest, request: Request) -> JSONResponse:
    stub = runtime(request)
    address = checksum_address(body.wallet_address)
    message = usable_nonce(stub, LOGIN, body.nonce, address)
    now = stub.now()
    verify_siwe(stub.config, message, body.signature, address=address, nonce=body.nonce, now=now)
    memberships = stub.memberships(address)
    selected = memberships[0].workspace_id if len(memberships) == 1 else None
    token = secrets.token_urlsafe(32)
    expires = now + stub.config.session_cookie_ttl
    with stub.store.transaction() as conn:
        conn.execute("UPDATE nonces SET used_at = ? WHERE nonce = ?", (ts(now), body.nonce))
        conn.execute(
            "INSERT INTO wallet_sessions (token_hash, wallet_address, selected_workspace_id,"
            " created_at, expires_at) VALUES (?,?,?,?,?)",
            (token_hash(token), address, selected, ts(now), ts(expires)),
        )
    response = ok(
        request,
        WalletLoginResult(
            wallet_address=address,
            memberships=memberships,
            selected_workspace_id=selected,
            expires_at=expires,
        ),
    )
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=int(stub.config.session_cookie_ttl.total_seconds()),
        path="/",
        httponly=True,
        samesite="lax",
        secure=stub.config.secure_cookies,
    )
    return response


def me_of(stub: StubRuntime, found: Principal) -> Me:
    if found.kind == "api_key":
        return Me(
            kind="api_key",
            workspace_id=found.workspace_id,
            key_id=found.key_id,
            environment=found.environment,
            scopes=sorted(found.scopes),
        )
    return Me(
        kind="wallet_session",
        workspace_id=found.workspace_id,
        scopes=sorted(found.scopes),
        wallet_address=found.wallet_address,
        memberships=stub.memberships(found.wallet_address or ""),
    )


@router.post("/auth/workspace/select", response_model=Envelope[Me])
async def select_workspace(
    body: SelectWorkspaceRequest,
    request: Request,
    found: WalletSession,
) -> JSONResponse:
    stub = member_runtime(request, found, body.workspace_id)
    with stub.store.transaction() as conn:
        conn.execute(
            "UPDATE wallet_sessions SET selected_workspace_id = ? WHERE token_hash = ?",
            (body.workspace_id, found.session_token_hash),
        )
    selected = Principal(
        kind=found.kind,
        workspace_id=body.workspace_id,
        scopes=found.scopes,
        wallet_address=found.wallet_address,
    )
    return ok(request, me_of(stub, selected))


@router.post("/auth/logout", response_model=Envelope[LoggedOut])
async def logout(request: Request, found: WalletSession) -> JSONResponse:
    stub = runtime(request)
    with stub.store.transaction() as conn:
        conn.execute(
            "UPDATE wallet_sessions SET revoked_at = ? WHERE token_hash = ?",
            (ts(stub.now()), found.session_token_hash),
        )
    response = ok(request, {"loggedOut": True})
    response.delete_cookie(
        SESSION_COOKIE, path="/", httponly=True, samesite="lax", secure=stub.config.secure_cookies
    )
    return response


@router.get("/me", response_model=Envelope[Me])
async def me(request: Request, found: AnyCaller) -> JSONResponse:
    return ok(request, me_of(runtime(request), found))
