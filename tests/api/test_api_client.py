"""AsyncLuxxonClient against httpx.MockTransport: envelope, errors, retries, tokens, timeouts."""

from __future__ import annotations

import json
import random
from collections.abc import Callable

import httpx
import pytest

import luxxon_agent.api as api
from luxxon_agent.api import AsyncLuxxonClient, RetryPolicy, unwrap
from luxxon_agent.backoff import Backoff
from luxxon_agent.errors import ApiError, NetworkError, RequestTimeout
from luxxon_agent.models import RegisterOperatorRequest, SessionState, UpdateWorkspaceRequest
from luxxon_agent.secret import Secret
from luxxon_agent.wire import CONSISTENCY_HEADER

BASE = "https://api.example.test/api/v1"
NOW = "2026-05-13T08:42:00.123Z"

SESSION = {
    "id": "ses_1",
    "consumerWorkspaceId": "ws_c",
    "operatorWorkspaceId": "ws_o",
    "state": "ASSIGNED",
    "maxDurationSeconds": 600,
    "ratePerSecondMicroUsdc": "1000",
    "holdMicroUsdc": "600000",
    "createdAt": NOW,
    "requestedLat": 4.711,
    "requestedLng": -74.072,
}


def envelope(data: object, status: int = 200) -> dict[str, object]:
    return {"statusCode": status, "message": "OK", "data": data, "timestamp": NOW}


class RecordingClock:
    """Records the sleeps the retry loop asks for, without waiting."""

    def __init__(self) -> None:
        self.sleeps: list[float] = []

    def now(self):  # pragma: no cover - not used by the client
        raise NotImplementedError

    def monotonic(self) -> float:
        return 0.0

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)


def make_client(
    handler: Callable[[httpx.Request], httpx.Response],
    clock: RecordingClock | None = None,
    **kwargs: object,
) -> AsyncLuxxonClient:
    return AsyncLuxxonClient(
        BASE,
        transport=httpx.MockTransport(handler),
        clock=clock or RecordingClock(),
        rng=random.Random(7),
        **kwargs,  # type: ignore[arg-type]
    )


def test_exported_members() -> None:
    assert api.__all__ == sorted(api.__all__)
    for name in api.__all__:
        assert hasattr(api, name), name


def test_unwrap_envelope_and_bare() -> None:
    assert unwrap(envelope({"a": 1})) == {"a": 1}
    assert unwrap({"a": 1}) == {"a": 1}
    assert unwrap([1, 2]) == [1, 2]


async def test_envelope_and_bare_payloads_parse_to_models() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        if request.url.path.endswith("/ses_1"):
            return httpx.Response(200, json=envelope(SESSION))
        return httpx.Response(200, json=[SESSION])

    async with make_client(handler) as client:
        one = await client.get_session("ses_1")
        many = await client.list_sessions(SessionState.ASSIGNED)
    assert one.state is SessionState.ASSIGNED and one.rate_per_second_micro_usdc == 1000
    assert [s.id for s in many] == ["ses_1"]
    assert seen == ["/api/v1/sessions/ses_1", "/api/v1/sessions"]


async def test_error_body_becomes_api_error_with_fields() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        body = {"code": "INVALID_STATE", "message": "session is LIVE", "detail": "use end"}
        return httpx.Response(409, json=body)

    async with make_client(handler) as client:
        with pytest.raises(ApiError) as info:
            await client.cancel("ses_1")
    err = info.value
    assert (err.status, err.code, err.message, err.detail) == (
        409,
        "INVALID_STATE",
        "session is LIVE",
        "use end",
    )
    assert (err.method, err.path) == ("DELETE", "/sessions/ses_1")
    assert "\n" not in str(err) and "INVALID_STATE" in str(err)


async def test_unknown_code_kept_verbatim_and_non_json_error() -> None:
    bodies = iter(
        [
            httpx.Response(418, json={"code": "TEAPOT_OVERHEATED", "message": "too hot"}),
            httpx.Response(400, text="<html>\n<b>Bad</b> gateway\n</html>"),
        ]
    )

    async with make_client(lambda request: next(bodies)) as client:
        with pytest.raises(ApiError) as first:
            await client.me()
        with pytest.raises(ApiError) as second:
            await client.me()
    assert first.value.code == "TEAPOT_OVERHEATED" and "TEAPOT_OVERHEATED" in str(first.value)
    assert second.value.status == 400 and "\n" not in str(second.value)


async def test_auth_headers_and_consistency_token_echoed() -> None:
    requests: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        n = len(requests)
        return httpx.Response(200, json=envelope(SESSION), headers={CONSISTENCY_HEADER: f"t{n}"})

    client = make_client(handler, api_key=Secret("lxxn_test_abcdefghij1234567890"))
    async with client:
        await client.accept("ses_1")
        await client.get_session("ses_1")
        await client.get_session("ses_1")
    assert CONSISTENCY_HEADER not in requests[0].headers
    assert requests[1].headers[CONSISTENCY_HEADER] == "t1"
    assert requests[2].headers[CONSISTENCY_HEADER] == "t2"
    assert requests[0].headers["Authorization"] == "Bearer lxxn_test_abcdefghij1234567890"
    assert client.consistency_token == "t3"
    assert "lxxn_test" not in repr(client)


async def test_login_keeps_cookie_and_logout_drops_it() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/login"):
            result = {
                "walletAddress": "0x" + "ab" * 20,
                "memberships": [],
                "expiresAt": NOW,
            }
            cookie = "lx_session=s3cr3t; HttpOnly; SameSite=Lax; Path=/; Max-Age=3600"
            return httpx.Response(200, json=envelope(result), headers={"Set-Cookie": cookie})
        if request.url.path.endswith("/me"):
            assert request.headers["Cookie"] == "lx_session=s3cr3t"
            me = {"kind": "wallet_session", "walletAddress": "0x" + "ab" * 20}
            return httpx.Response(200, json=envelope(me))
        assert request.url.path.endswith("/logout")
        return httpx.Response(
            200, json=envelope(None), headers={"Set-Cookie": "lx_session=; Max-Age=0; Path=/"}
        )

    async with make_client(handler) as client:
        result = await client.wallet_login("0x" + "ab" * 20, "n" * 16, "0x" + "11" * 65)
        assert result.memberships == []
        assert client.session_cookie == Secret("s3cr3t")
        assert (await client.me()).kind == "wallet_session"
        await client.logout()
        assert client.session_cookie is None


async def test_idempotent_get_retries_on_503_then_succeeds() -> None:
    statuses = iter([503, 502, 200])
    clock = RecordingClock()

    def handler(request: httpx.Request) -> httpx.Response:
        status = next(statuses)
        if status == 200:
            return httpx.Response(200, json=envelope(SESSION))
        return httpx.Response(status, json={"code": "UNAVAILABLE", "message": "later"})

    async with make_client(handler, clock) as client:
        session = await client.get_session("ses_1")
    assert session.id == "ses_1"
    assert len(clock.sleeps) == 2
    # backoff grows and stays inside the jittered window [base/2, base]
    assert 0.125 <= clock.sleeps[0] <= 0.25 and 0.25 <= clock.sleeps[1] <= 0.5


async def test_retry_after_is_honoured_on_429() -> None:
    responses = iter(
        [
            httpx.Response(
                429, json={"code": "RATE_LIMITED", "message": "slow"}, headers={"Retry-After": "3"}
            ),
            httpx.Response(200, json=envelope([])),
        ]
    )
    clock = RecordingClock()
    async with make_client(lambda request: next(responses), clock) as client:
        assert await client.list_sessions() == []
    assert clock.sleeps == [3.0]


async def test_retry_after_beyond_limit_surfaces_at_once() -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return httpx.Response(
            503,
            json={"code": "UNAVAILABLE", "message": "maintenance"},
            headers={"Retry-After": "3600"},
        )

    clock = RecordingClock()
    async with make_client(handler, clock) as client:
        with pytest.raises(ApiError) as info:
            await client.me()
    assert calls == 1 and clock.sleeps == [] and info.value.retry_after == 3600.0


async def test_non_idempotent_post_is_not_retried_on_503() -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return httpx.Response(503, json={"code": "UNAVAILABLE", "message": "later"})

    async with make_client(handler) as client:
        with pytest.raises(ApiError) as info:
            await client.accept("ses_1")
    assert calls == 1 and info.value.status == 503


async def test_idempotent_post_cancel_all_is_retried() -> None:
    responses = iter(
        [
            httpx.Response(504, json={"code": "UNAVAILABLE", "message": "gateway"}),
            httpx.Response(200, json=envelope({"count": 1, "cancelled": ["ses_1"]})),
        ]
    )
    async with make_client(lambda request: next(responses)) as client:
        result = await client.cancel_all_assignments()
    assert result.count == 1 and result.cancelled == ["ses_1"]


async def test_retries_give_up_after_attempts() -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return httpx.Response(502, text="bad gateway")

    clock = RecordingClock()
    policy = RetryPolicy(attempts=3, backoff=Backoff(initial=1.0, jitter=0))
    async with make_client(handler, clock, retries=policy) as client:
        with pytest.raises(ApiError) as info:
            await client.health()
    assert calls == 3 and clock.sleeps == [1.0, 2.0] and info.value.status == 502


async def test_connect_error_retried_even_for_post_then_mapped() -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        raise httpx.ConnectError("connection refused", request=request)

    async with make_client(handler, retries=RetryPolicy(attempts=2)) as client:
        with pytest.raises(NetworkError) as info:
            await client.start("ses_1")
    assert calls == 2
    assert isinstance(info.value.__cause__, httpx.ConnectError)
    assert "POST /sessions/ses_1/start" in str(info.value)


async def test_read_timeout_maps_and_is_not_retried_for_post() -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        raise httpx.ReadTimeout("read timed out", request=request)

    async with make_client(handler) as client:
        with pytest.raises(RequestTimeout) as info:
            await client.end("ses_1")
    assert calls == 1 and isinstance(info.value.__cause__, httpx.ReadTimeout)


async def test_every_call_carries_the_timeout() -> None:
    seen: list[dict[str, float | None]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.extensions["timeout"])
        return httpx.Response(200, json=envelope({"status": "ok", "time": NOW}))

    async with make_client(handler, timeout=2.5) as client:
        await client.health()
    assert seen == [{"connect": 2.5, "read": 2.5, "write": 2.5, "pool": 2.5}]
    with pytest.raises(ValueError):
        AsyncLuxxonClient(BASE, timeout=0)


async def test_patch_body_is_camel_case_and_omits_unset() -> None:
    bodies: list[dict[str, object]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        bodies.append(json.loads(request.content))
        return httpx.Response(
            200,
            json={
                "id": "ws_o",
                "slug": "acme",
                "name": "Acme",
                "walletAddress": "0x" + "ab" * 20,
                "roles": ["SUPPLIER"],
                "availabilityState": "ONLINE",
                "createdAt": NOW,
                "createdByWallet": "0x" + "ab" * 20,
            },
        )

    request = UpdateWorkspaceRequest(
        availability_state="ONLINE",
        coverage_lat=4.7,
        coverage_lng=-74.0,
        coverage_radius_meters=500,
    )
    async with make_client(handler) as client:
        workspace = await client.update_workspace("ws_o", request)
    assert workspace.availability_state == "ONLINE"
    assert bodies == [
        {
            "availabilityState": "ONLINE",
            "coverageLat": 4.7,
            "coverageLng": -74.0,
            "coverageRadiusMeters": 500.0,
        }
    ]


async def test_frame_returns_bytes_and_404_is_api_error() -> None:
    responses = iter(
        [
            httpx.Response(200, content=b"\xff\xd8jpeg", headers={"Content-Type": "image/jpeg"}),
            httpx.Response(404, json={"code": "FRAME_NOT_AVAILABLE", "message": "no keyframe yet"}),
        ]
    )
    async with make_client(lambda request: next(responses)) as client:
        assert await client.frame("ses_1") == b"\xff\xd8jpeg"
        with pytest.raises(ApiError) as info:
            await client.frame("ses_1")
    assert info.value.code == "FRAME_NOT_AVAILABLE"


async def test_unexpected_payload_is_one_line_api_error() -> None:
    async with make_client(lambda request: httpx.Response(200, json={"nope": 1})) as client:
        with pytest.raises(ApiError) as info:
            await client.get_session("ses_1")
    assert info.value.code == "INVALID_RESPONSE" and "\n" not in str(info.value)


async def test_ids_are_quoted_into_one_segment() -> None:
    paths: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        paths.append(request.url.raw_path.decode())
        return httpx.Response(200, json=SESSION)

    async with make_client(handler) as client:
        await client.get_session("../admin")
    assert paths == ["/api/v1/sessions/..%2Fadmin"]


async def test_read_timeout_on_get_is_retried() -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise httpx.ReadTimeout("read timed out", request=request)
        return httpx.Response(200, json=envelope({"count": 0, "cancelled": []}))

    clock = RecordingClock()
    async with make_client(handler, clock) as client:
        assert (await client.cancel_all_assignments()).count == 0
    assert calls == 2 and len(clock.sleeps) == 1


async def test_empty_id_is_refused_before_any_request() -> None:
    from luxxon_agent.errors import ConfigError

    def handler(request: httpx.Request) -> httpx.Response:
        raise AssertionError("no request may be sent")

    async with make_client(handler) as client:
        with pytest.raises(ConfigError):
            await client.get_session("")


OPERATOR = {
    "id": "op_1",
    "workspaceId": "ws/o",
    "label": "drone-7",
    "kind": "DRONE",
    "deviceAddress": "0x" + "ab" * 20,
    "issuedAt": NOW,
    "expiresAt": "2027-05-13T08:42:00.123Z",
    "delegationSignature": "0x" + "11" * 65,
    "createdAt": NOW,
}


async def test_operator_calls_paths_and_retries() -> None:
    """Register is never retried (a replayed delegation is 409); revoke and list are."""
    seen: list[tuple[str, str]] = []
    unavailable = {"code": "UNAVAILABLE", "message": "later"}

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.method, request.url.raw_path.decode()))
        if len(seen) in (1, 2, 4):  # the register, then the first try of list and of revoke
            return httpx.Response(503, json=unavailable)
        if request.method == "GET":
            return httpx.Response(200, json=envelope({"items": [OPERATOR]}))
        return httpx.Response(200, json=envelope({**OPERATOR, "revokedAt": NOW}))

    request = RegisterOperatorRequest.model_validate(
        {key: OPERATOR[key] for key in ("label", "kind", "deviceAddress", "issuedAt", "expiresAt")}
        | {"signature": OPERATOR["delegationSignature"]}
    )
    async with make_client(handler) as client:
        with pytest.raises(ApiError) as info:
            await client.register_operator("ws/o", request)
        listed = await client.list_operators("ws/o")
        revoked = await client.revoke_operator("ws/o", "op_1")
    assert info.value.status == 503
    assert [op.id for op in listed] == ["op_1"] and listed[0].kind.value == "DRONE"
    assert revoked.revoked_at is not None
    base = "/api/v1/workspaces/ws%2Fo/operators"
    assert seen == [
        ("POST", base),
        ("GET", base),
        ("GET", base),
        ("POST", f"{base}/op_1/revoke"),
        ("POST", f"{base}/op_1/revoke"),
    ]
