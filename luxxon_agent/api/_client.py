"""AsyncLuxxonClient: every endpoint of the contract, async, over one httpx.AsyncClient."""

from __future__ import annotations

import contextlib
import logging
import random
from collections.abc import Iterator
from http.cookies import CookieError, SimpleCookie
from types import TracebackType
from typing import Any, Literal, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, TypeAdapter, ValidationError

from luxxon_agent import __version__
from luxxon_agent.api._envelope import error_from_response, unwrap
from luxxon_agent.api._retry import DEFAULT_RETRY, RetryPolicy
from luxxon_agent.clock import SYSTEM_CLOCK, Clock
from luxxon_agent.errors import ApiError, ConfigError, NetworkError, RequestTimeout
from luxxon_agent.models import (
    AcceptRequest,
    ApiKey,
    ApiModel,
    CancelAllResult,
    CreateApiKeyRequest,
    CreateSessionRequest,
    CreateWorkspaceRequest,
    Health,
    LocationHeartbeat,
    Me,
    Operator,
    ProducerToken,
    RegisterOperatorRequest,
    SelectWorkspaceRequest,
    ServerConfig,
    Session,
    SessionState,
    Settlement,
    StartResult,
    TelemetryReceipt,
    TelemetrySample,
    UpdateWorkspaceRequest,
    WalletBalance,
    WalletChallenge,
    WalletChallengeRequest,
    WalletEvent,
    WalletLoginRequest,
    WalletLoginResult,
    Workspace,
)
from luxxon_agent.secret import Secret
from luxxon_agent.wire import CONSISTENCY_HEADER, SESSION_COOKIE

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 10.0

M = TypeVar("M", bound=BaseModel)
Method = Literal["GET", "POST", "PATCH", "DELETE"]

_IDEMPOTENT_METHODS = frozenset({"GET", "DELETE", "PATCH"})
# failed before the request left, so retrying cannot repeat a non-idempotent call
_NEVER_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


@contextlib.contextmanager
def _map_httpx_errors(method: str, path: str) -> Iterator[None]:
    """The one place httpx exceptions become ours (the URL holds no secret: path only)."""
    try:
        yield
    except httpx.TimeoutException as exc:
        raise RequestTimeout(f"{method} {path} timed out ({type(exc).__name__})") from exc
    except httpx.TransportError as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise NetworkError(f"{method} {path} failed: {reason}") from exc


class AsyncLuxxonClient:
    """Async client of the Luxxon API; use as `async with AsyncLuxxonClient(url) as c:`.

    Auth is an API key (Bearer), the `lx_session` cookie of a wallet login, or
    both. The latest `X-Lx-Consistency-Token` seen is sent back on every call.
    Idempotent calls (see `_request(idempotent=...)` callers and docs/cli.md)
    retry per `retries`; a request that provably never left (connect failure)
    is retried whatever the method.
    """

    def __init__(
        self,
        base_url: str,
        *,
        api_key: Secret | None = None,
        session_cookie: Secret | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        retries: RetryPolicy | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Clock = SYSTEM_CLOCK,
        rng: random.Random | None = None,
    ) -> None:
        if timeout is None or timeout <= 0:
            raise ValueError("timeout must be a positive number of seconds")
        self._api_key = api_key
        self._session_cookie = session_cookie
        self._timeout = httpx.Timeout(timeout)
        self._retries = retries or DEFAULT_RETRY
        self._clock = clock
        self._rng = rng or random.Random()
        self._consistency_token: str | None = None
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/") + "/",
            transport=transport,
            timeout=self._timeout,
            headers={"User-Agent": f"luxxon-agent/{__version__}", "Accept": "application/json"},
            follow_redirects=False,
        )

    # ---- lifecycle -------------------------------------------------------------

    async def __aenter__(self) -> AsyncLuxxonClient:
        await self._http.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._http.__aexit__(exc_type, exc, tb)

    async def aclose(self) -> None:
        await self._http.aclose()

    # ---- state a caller may persist ----------------------------------------------

    @property
    def base_url(self) -> str:
        return str(self._http.base_url).rstrip("/")

    @property
    def session_cookie(self) -> Secret | None:
        """The `lx_session` cookie, set by `wallet_login`, cleared by `logout`."""
        return self._session_cookie

    @property
    def consistency_token(self) -> str | None:
        return self._consistency_token

    def __repr__(self) -> str:
        auth = "api_key" if self._api_key else "cookie" if self._session_cookie else "none"
        return f"AsyncLuxxonClient({self.base_url!r}, auth={auth})"

    # ---- public, wallet session ----------------------------------------------------

    async def health(self) -> Health:
        return _parse(Health, await self._request("GET", "health"))

    async def config(self) -> ServerConfig:
        return _parse(ServerConfig, await self._request("GET", "config"))

    async def me(self) -> Me:
        return _parse(Me, await self._request("GET", "me"))

    async def wallet_challenge(self, wallet_address: str) -> WalletChallenge:
        body = WalletChallengeRequest(wallet_address=wallet_address)
        # a fresh challenge has no effect besides an unused nonce: safe to retry
        data = await self._request("POST", "auth/wallet/challenge", body, idempotent=True)
        return _parse(WalletChallenge, data)

    async def wallet_login(
        self, wallet_address: str, nonce: str, signature: str
    ) -> WalletLoginResult:
        body = WalletLoginRequest(wallet_address=wallet_address, nonce=nonce, signature=signature)
        return _parse(WalletLoginResult, await self._request("POST", "auth/wallet/login", body))

    async def select_workspace(self, workspace_id: str) -> None:
        body = SelectWorkspaceRequest(workspace_id=workspace_id)
        await self._request("POST", "auth/workspace/select", body, idempotent=True)

    async def logout(self) -> None:
        try:
            await self._request("POST", "auth/logout", idempotent=True)
        finally:
            self._session_cookie = None

    # ---- workspaces and keys ---------------------------------------------------------

    async def workspace_challenge(self, wallet_address: str) -> WalletChallenge:
        body = WalletChallengeRequest(wallet_address=wallet_address)
        data = await self._request("POST", "workspaces/challenge", body, idempotent=True)
        return _parse(WalletChallenge, data)

    async def create_workspace(self, request: CreateWorkspaceRequest) -> Workspace:
        return _parse(Workspace, await self._request("POST", "workspaces", request))

    async def update_workspace(
        self, workspace_id: str, request: UpdateWorkspaceRequest
    ) -> Workspace:
        data = await self._request("PATCH", f"workspaces/{_seg(workspace_id)}", request)
        return _parse(Workspace, data)

    async def post_location(self, workspace_id: str, heartbeat: LocationHeartbeat) -> None:
        # not retried: a replayed sequence is refused with 409 by design
        await self._request("POST", f"workspaces/{_seg(workspace_id)}/location", heartbeat)

    async def create_api_key(self, workspace_id: str, request: CreateApiKeyRequest) -> ApiKey:
        data = await self._request("POST", f"workspaces/{_seg(workspace_id)}/api-keys", request)
        return _parse(ApiKey, data)

    async def revoke_api_key(self, workspace_id: str, key_id: str) -> ApiKey:
        path = f"workspaces/{_seg(workspace_id)}/api-keys/{_seg(key_id)}/revoke"
        return _parse(ApiKey, await self._request("POST", path, idempotent=True))

    # ---- operators (device keys of a SUPPLIER workspace) --------------------------------

    async def register_operator(
        self, workspace_id: str, request: RegisterOperatorRequest
    ) -> Operator:
        # not retried: the server refuses a delegation digest it has seen (409)
        data = await self._request("POST", f"workspaces/{_seg(workspace_id)}/operators", request)
        return _parse(Operator, data)

    async def list_operators(self, workspace_id: str) -> list[Operator]:
        data = await self._request("GET", f"workspaces/{_seg(workspace_id)}/operators")
        return _parse_list(Operator, _items(data))

    async def revoke_operator(self, workspace_id: str, operator_id: str) -> Operator:
        path = f"workspaces/{_seg(workspace_id)}/operators/{_seg(operator_id)}/revoke"
        # revoking a revoked operator returns it unchanged: safe to retry
        return _parse(Operator, await self._request("POST", path, idempotent=True))

    # ---- sessions ------------------------------------------------------------------------

    async def list_sessions(self, state: SessionState | None = None) -> list[Session]:
        params = {"state": state.value} if state else None
        data = await self._request("GET", "sessions", params=params)
        return _parse_list(Session, _items(data))

    async def get_session(self, session_id: str) -> Session:
        return _parse(Session, await self._request("GET", f"sessions/{_seg(session_id)}"))

    async def accept(self, session_id: str, operator_workspace_id: str | None = None) -> Session:
        body = AcceptRequest(operator_workspace_id=operator_workspace_id)
        data = await self._request("POST", f"sessions/{_seg(session_id)}/accept", body)
        return _parse(Session, data)

    async def start(self, session_id: str) -> StartResult:
        data = await self._request("POST", f"sessions/{_seg(session_id)}/start")
        return _parse(StartResult, data)

    async def producer_token(self, session_id: str) -> ProducerToken:
        data = await self._request("GET", f"sessions/{_seg(session_id)}/producer-token")
        return _parse(ProducerToken, data)

    async def post_telemetry(self, session_id: str, sample: TelemetrySample) -> TelemetryReceipt:
        # the server deduplicates by capturedAt (receipt.duplicate): safe to retry
        path = f"sessions/{_seg(session_id)}/telemetry"
        return _parse(TelemetryReceipt, await self._request("POST", path, sample, idempotent=True))

    async def end(self, session_id: str) -> Session:
        return _parse(Session, await self._request("POST", f"sessions/{_seg(session_id)}/end"))

    async def cancel(self, session_id: str) -> Session:
        return _parse(Session, await self._request("DELETE", f"sessions/{_seg(session_id)}"))

    async def cancel_all_assignments(self) -> CancelAllResult:
        # a repeat finds nothing left to cancel: the end state is the same
        data = await self._request("POST", "sessions/cancel-all-assignments", idempotent=True)
        return _parse(CancelAllResult, data)

    async def frame(self, session_id: str) -> bytes:
        response = await self._send(
            "GET", f"sessions/{_seg(session_id)}/frame", accept="image/jpeg"
        )
        return response.content

    async def create_session(self, request: CreateSessionRequest) -> Session:
        return _parse(Session, await self._request("POST", "sessions", request))

    async def dispatch(self, session_id: str) -> Session:
        data = await self._request("POST", f"sessions/{_seg(session_id)}/dispatch")
        return _parse(Session, data)

    # ---- money -------------------------------------------------------------------------

    async def wallet(self) -> WalletBalance:
        return _parse(WalletBalance, await self._request("GET", "wallet"))

    async def wallet_events(self) -> list[WalletEvent]:
        data = await self._request("GET", "wallet/events")
        return _parse_list(WalletEvent, _items(data))

    async def settlement(self, session_id: str) -> Settlement:
        data = await self._request("GET", f"settlements/{_seg(session_id)}")
        return _parse(Settlement, data)

    # ---- the one request path ---------------------------------------------------------------

    async def _request(
        self,
        method: Method,
        path: str,
        body: ApiModel | None = None,
        *,
        params: dict[str, str] | None = None,
        idempotent: bool | None = None,
    ) -> Any:
        response = await self._send(method, path, body, params=params, idempotent=idempotent)
        if not response.content:
            return None
        try:
            return unwrap(response.json())
        except ValueError as exc:
            raise ApiError(
                response.status_code,
                "INVALID_RESPONSE",
                "the server's answer is not JSON",
                method=method,
                path=f"/{path}",
            ) from exc

    async def _send(
        self,
        method: Method,
        path: str,
        body: ApiModel | None = None,
        *,
        params: dict[str, str] | None = None,
        idempotent: bool | None = None,
        accept: str = "application/json",
    ) -> httpx.Response:
        if idempotent is None:
            idempotent = method in _IDEMPOTENT_METHODS
        policy = self._retries
        shown_path = f"/{path}"
        json_body = body.to_wire() if body is not None else None
        for attempt in range(policy.attempts):
            last = attempt == policy.attempts - 1
            try:
                response = await self._send_once(method, path, json_body, params, accept)
            except httpx.TransportError as exc:
                if last or not (idempotent or isinstance(exc, _NEVER_SENT)):
                    with _map_httpx_errors(method, shown_path):
                        raise
                delay = policy.backoff.delay(attempt, self._rng)
                logger.info("%s %s: %s, retry in %.2fs", method, shown_path, _name(exc), delay)
            else:
                if response.is_success:
                    return response
                error = error_from_response(response, method, shown_path)
                retryable = idempotent and response.status_code in policy.statuses
                if last or not retryable:
                    raise error
                delay = policy.backoff.delay(attempt, self._rng)
                if error.retry_after is not None:
                    if error.retry_after > policy.max_retry_after:
                        raise error
                    delay = max(delay, error.retry_after)
                logger.info(
                    "%s %s: HTTP %d, retry in %.2fs",
                    method,
                    shown_path,
                    response.status_code,
                    delay,
                )
            await self._clock.sleep(delay)
        raise AssertionError("unreachable: the last attempt returns or raises")

    async def _send_once(
        self,
        method: str,
        path: str,
        json_body: dict[str, Any] | None,
        params: dict[str, str] | None,
        accept: str,
    ) -> httpx.Response:
        headers = {"Accept": accept}
        if self._api_key is not None:
            headers["Authorization"] = f"Bearer {self._api_key.reveal()}"
        if self._session_cookie is not None:
            headers["Cookie"] = f"{SESSION_COOKIE}={self._session_cookie.reveal()}"
        if self._consistency_token is not None:
            headers[CONSISTENCY_HEADER] = self._consistency_token
        response = await self._http.request(
            method, path, json=json_body, params=params, headers=headers, timeout=self._timeout
        )
        # cookies are ours to keep (per profile), not httpx's jar: one source of truth
        self._http.cookies.clear()
        self._remember(response)
        logger.debug("%s /%s -> %d", method, path, response.status_code)
        return response

    def _remember(self, response: httpx.Response) -> None:
        token = response.headers.get(CONSISTENCY_HEADER)
        if token:
            self._consistency_token = token
        for header in response.headers.get_list("set-cookie"):
            cookie = SimpleCookie()
            try:
                cookie.load(header)
            except CookieError:
                continue
            morsel = cookie.get(SESSION_COOKIE)
            if morsel is None:
                continue
            cleared = not morsel.value or morsel["max-age"] in ("0", "-1")
            self._session_cookie = None if cleared else Secret(morsel.value)


def _seg(value: str) -> str:
    """One path segment; an id can never climb out of its path."""
    if not value or value in (".", ".."):
        raise ConfigError(f"not a valid id: {value!r}")
    return quote(value, safe="")


def _items(data: Any) -> Any:
    """A list payload, bare or paginated as `{items: [...]}`."""
    if isinstance(data, dict) and isinstance(data.get("items"), list):
        return data["items"]
    return data


def _name(exc: BaseException) -> str:
    return type(exc).__name__


def _parse(model: type[M], data: Any) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise _invalid(model.__name__, exc) from exc


def _parse_list(model: type[M], data: Any) -> list[M]:
    try:
        return TypeAdapter(list[model]).validate_python(data)  # type: ignore[valid-type]
    except ValidationError as exc:
        raise _invalid(f"list of {model.__name__}", exc) from exc


def _invalid(what: str, exc: ValidationError) -> ApiError:
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "body"
    detail = f"{where}: {first['msg']}"
    return ApiError(200, "INVALID_RESPONSE", f"unexpected {what} from the server", detail)
