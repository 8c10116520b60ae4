"""Who is calling: API keys (Bearer lxxn_…) and wallet sessions (the lx_session cookie).

Route modules depend on `principal` (any authenticated caller), `require_scope(scope)`
(a caller acting for one workspace with that scope) or `require_wallet_session`.
A wallet session is a member acting for itself, so it holds every scope of the
workspace it selected. `lastUsedAt` of a key records its last *successful* use:
it is written when the response starts with a success status (the app's
middleware calls `touch_after_success`), so a refused request changes nothing
in the database, and to the second: a key used many times a
second (a telemetry backlog) is written once a second, not once a request.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import string
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import Depends, Request
from starlette.types import Scope as ASGIScope

from luxxon_agent.models import Environment, ErrorCode, Scope
from luxxon_agent.stub.http_error import HttpError
from luxxon_agent.stub.runtime import StubRuntime, runtime
from luxxon_agent.stub.store import parse_ts, ts
from luxxon_agent.wire import SESSION_COOKIE

_PRINCIPAL_STATE = "lx_principal"
LAST_USED_RESOLUTION = timedelta(seconds=1)
"""lastUsedAt is kept to this resolution (see above)."""
KEY_PREFIXES = {Environment.LIVE: "lxxn_live_", Environment.TEST: "lxxn_test_"}
KEY_PREFIX_LENGTH = 20
_KEY_ALPHABET = string.ascii_letters + string.digits
ALL_SCOPES = frozenset(Scope)


def token_hash(token: str) -> str:
    """sha256 hex: all the server keeps of a key or a cookie."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_api_key(environment: Environment) -> str:
    """`lxxn_live_` / `lxxn_test_` followed by 40 base62 characters (~238 bits)."""
    body = "".join(secrets.choice(_KEY_ALPHABET) for _ in range(40))
    return KEY_PREFIXES[environment] + body


@dataclass(frozen=True)
class Principal:
    """An authenticated caller."""

    kind: str
    """"api_key" or "wallet_session"."""
    workspace_id: str | None
    """The key's workspace, or the wallet session's selected one (None until selected)."""
    scopes: frozenset[Scope]
    wallet_address: str | None = None
    key_id: str | None = None
    environment: Environment | None = None
    session_token_hash: str | None = field(default=None, repr=False)
    last_used_at: datetime | None = None
    """The key's stored lastUsedAt when the request came in."""


def _unauthenticated(code: ErrorCode, message: str) -> HttpError:
    return HttpError(401, code, message)


def _from_api_key(stub: StubRuntime, header: str) -> Principal:
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise _unauthenticated(ErrorCode.INVALID_API_KEY, "Authorization must be 'Bearer <key>'")
    if not token.startswith(tuple(KEY_PREFIXES.values())):
        raise _unauthenticated(
            ErrorCode.INVALID_API_KEY, "API keys start with lxxn_live_ or lxxn_test_"
        )
    row = stub.store.one("SELECT * FROM api_keys WHERE key_hash = ?", (token_hash(token),))
    if row is None:
        raise _unauthenticated(ErrorCode.INVALID_API_KEY, "unknown API key")
    grace_end = parse_ts(row["grace_period_end"])
    if row["revoked_at"] is not None and grace_end is not None and stub.now() >= grace_end:
        raise _unauthenticated(ErrorCode.REVOKED_API_KEY, "this API key was revoked")
    return Principal(
        kind="api_key",
        workspace_id=row["workspace_id"],
        scopes=frozenset(Scope(s) for s in json.loads(row["scopes"])),
        key_id=row["id"],
        environment=Environment(row["environment"]),
        last_used_at=parse_ts(row["last_used_at"]),
    )


def _from_cookie(stub: StubRuntime, token: str) -> Principal:
    digest = token_hash(token)
    row = stub.store.one("SELECT * FROM wallet_sessions WHERE token_hash = ?", (digest,))
    if row is None or row["revoked_at"] is not None:
        raise _unauthenticated(ErrorCode.INVALID_TOKEN, "wallet session is not valid; log in again")
    expires = parse_ts(row["expires_at"])
    if expires is None or stub.now() >= expires:
        raise _unauthenticated(ErrorCode.INVALID_TOKEN, "wallet session expired; log in again")
    return Principal(
        kind="wallet_session",
        workspace_id=row["selected_workspace_id"],
        scopes=ALL_SCOPES,
        wallet_address=row["wallet_address"],
        session_token_hash=digest,
    )


def authenticate(request: Request) -> Principal:
    """The caller, from the Authorization header or else the lx_session cookie."""
    stub = runtime(request)
    header = request.headers.get("authorization")
    if header:
        return _from_api_key(stub, header)
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        return _from_cookie(stub, cookie)
    raise _unauthenticated(
        ErrorCode.NOT_AUTHENTICATED,
        "send 'Authorization: Bearer <API key>' or log in with a wallet",
    )


def _touch_key(stub: StubRuntime, principal: Principal) -> None:
    if principal.key_id is None:
        return
    now = stub.now()
    last = principal.last_used_at
    if last is None or not timedelta(0) <= now - last < LAST_USED_RESOLUTION:
        with stub.store.transaction() as conn:
            conn.execute(
                "UPDATE api_keys SET last_used_at = ? WHERE id = ?",
                (ts(now), principal.key_id),
            )


def _authenticated(request: Request) -> Principal:
    found = authenticate(request)
    # read back by touch_after_success once the response turned out a success
    request.scope.setdefault("state", {})[_PRINCIPAL_STATE] = found
    return found


def touch_after_success(scope: ASGIScope) -> None:
    """Write the lastUsedAt of the key that made this request; the app calls this when the
    request's response starts with a success status."""
    found = scope.get("state", {}).get(_PRINCIPAL_STATE)
    if isinstance(found, Principal):
        _touch_key(scope["app"].state.stub, found)


async def principal(request: Request) -> Principal:
    """Any authenticated caller."""
    return _authenticated(request)


def require_scope(
    scope: Scope,
) -> Callable[..., Coroutine[Any, Any, Principal]]:
    """Dependency: a caller acting for a workspace, holding `scope`."""

    async def dependency(request: Request) -> Principal:
        found = _authenticated(request)
        if scope not in found.scopes:
            raise HttpError(
                403, ErrorCode.NOT_AUTHORIZED, f"this API key lacks the {scope.value} scope"
            )
        if found.workspace_id is None:
            raise HttpError(
                403,
                ErrorCode.NOT_AUTHORIZED,
                "select a workspace first (POST /auth/workspace/select)",
            )
        return found

    dependency.__name__ = f"require_{scope.name.lower()}"
    AUTHENTICATING.add(dependency)
    return dependency


async def require_wallet_session(request: Request) -> Principal:
    """Dependency: a wallet (cookie) session; API keys cannot do this."""
    found = _authenticated(request)
    if found.kind != "wallet_session":
        raise HttpError(
            403,
            ErrorCode.NOT_AUTHORIZED,
            "this needs a wallet session (SIWE login), not an API key",
        )
    return found


AUTHENTICATING: set[Callable[..., Any]] = {principal, require_wallet_session}
"""Every dependency that authenticates its caller (the OpenAPI document marks their routes)."""


def member_runtime(request: Request, found: Principal, workspace_id: str) -> StubRuntime:
    """The app's StubRuntime, once the caller is shown to act for `workspace_id`: its key's
    workspace, or a member wallet."""
    stub = runtime(request)
    if found.kind == "api_key":
        allowed = found.workspace_id == workspace_id
    else:
        allowed = (
            stub.store.one(
                "SELECT 1 FROM workspace_members m JOIN workspaces w ON w.id = m.workspace_id"
                " WHERE m.workspace_id = ? AND m.wallet_address = ? AND w.deleted_at IS NULL",
                (workspace_id, found.wallet_address),
            )
            is not None
        )
    if not allowed:
        raise HttpError(
            403, ErrorCode.WORKSPACE_MISMATCH, "you do not act for this workspace", workspace_id
        )
    return stub


AnyCaller = Annotated[Principal, Depends(principal)]
"""Any authenticated caller (route parameter type)."""
WalletSession = Annotated[Principal, Depends(require_wallet_session)]
"""A wallet session (cookie), not an API key."""
Operator = Annotated[Principal, Depends(require_scope(Scope.SESSIONS_OPERATE))]
"""A caller with sessions:operate for its workspace."""
SessionReader = Annotated[Principal, Depends(require_scope(Scope.SESSIONS_READ))]
"""A caller with sessions:read for its workspace."""
Requester = Annotated[Principal, Depends(require_scope(Scope.SESSIONS_REQUEST))]
"""A consumer caller with sessions:request for its workspace."""
WalletReader = Annotated[Principal, Depends(require_scope(Scope.WALLET_READ))]
"""A caller with wallet:read for its workspace."""
