"""AsyncLuxxonClient against the real stub app, in process (httpx.ASGITransport)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from eth_account import Account

from luxxon_agent.api import AsyncLuxxonClient
from luxxon_agent.clock import FakeClock
from luxxon_agent.errors import ApiError
from luxxon_agent.identity import create_workspace_signed, siwe_login
from luxxon_agent.models import (
    AvailabilityState,
    CreateApiKeyRequest,
    CreateSessionRequest,
    Environment,
    Role,
    Scope,
    SessionState,
    UpdateWorkspaceRequest,
)
from luxxon_agent.secret import Secret
from luxxon_agent.stub import StubConfig, create_app

ORIGIN = "http://stub.test"
BASE = f"{ORIGIN}/api/v1"
LAT, LNG = 4.711, -74.072


@pytest.fixture
async def transport() -> AsyncIterator[httpx.ASGITransport]:
    app = create_app(
        StubConfig(db_path=":memory:", public_base_url=ORIGIN, clock=FakeClock(), with_video=False)
    )
    yield httpx.ASGITransport(app=app)


def client(transport: httpx.ASGITransport, **kwargs: object) -> AsyncLuxxonClient:
    return AsyncLuxxonClient(BASE, transport=transport, **kwargs)  # type: ignore[arg-type]


async def wallet_session(
    transport: httpx.ASGITransport, role: Role, slug: str
) -> tuple[AsyncLuxxonClient, str]:
    """A logged-in client for a new wallet owning a new workspace of `role`."""
    key = Secret("0x" + bytes(Account.create().key).hex())
    c = client(transport)
    await c.__aenter__()
    workspace = await create_workspace_signed(c, key, slug=slug, name=slug, roles=[role])
    await siwe_login(c, key)
    await c.select_workspace(workspace.id)
    return c, workspace.id


async def test_operator_lifecycle_through_every_call(transport: httpx.ASGITransport) -> None:
    async with client(transport) as public:
        assert (await public.health()).status
        assert (await public.config()).fee_bps >= 0

    operator, supplier_id = await wallet_session(transport, Role.SUPPLIER, "acme-drones")
    consumer, _ = await wallet_session(transport, Role.CONSUMER, "news-desk")
    try:
        assert operator.session_cookie is not None
        assert (await operator.me()).kind == "wallet_session"
        key = await operator.create_api_key(
            supplier_id,
            CreateApiKeyRequest(
                label="fleet",
                environment=Environment.TEST,
                scopes=[Scope.SESSIONS_OPERATE, Scope.SESSIONS_READ, Scope.WALLET_READ],
            ),
        )
        assert key.plaintext and key.plaintext.startswith("lxxn_test_")
        assert key.plaintext not in repr(key)
        online = await operator.update_workspace(
            supplier_id,
            UpdateWorkspaceRequest(
                availability_state=AvailabilityState.ONLINE,
                coverage_lat=LAT,
                coverage_lng=LNG,
                coverage_radius_meters=5000,
            ),
        )
        assert online.availability_state is AvailabilityState.ONLINE
        assert operator.consistency_token  # echoed after writes

        session = await consumer.create_session(
            CreateSessionRequest(lat=LAT, lng=LNG, max_duration_seconds=600)
        )
        dispatched = await consumer.dispatch(session.id)
        assert dispatched.operator_workspace_id == supplier_id

        async with client(transport, api_key=Secret(key.plaintext)) as fleet:
            me = await fleet.me()
            assert me.kind == "api_key" and me.workspace_id == supplier_id
            listed = await fleet.list_sessions(SessionState.REQUESTED)
            assert [s.id for s in listed] == [session.id]
            assert (await fleet.accept(session.id)).state is SessionState.ASSIGNED
            started = await fleet.start(session.id)
            assert started.session.state is SessionState.LIVE
            token = await fleet.producer_token(session.id)
            assert token.whip_url == started.whip_url
            assert started.whip_url not in repr(started)
            with pytest.raises(ApiError) as frame:
                await fleet.frame(session.id)
            assert frame.value.status == 404
            ended = await fleet.end(session.id)
            assert ended.state is SessionState.ENDED
            settlement = await fleet.settlement(session.id)
            assert settlement.session_id == session.id
            assert (await fleet.wallet()).workspace_id == supplier_id
            assert isinstance(await fleet.wallet_events(), list)
            assert (await fleet.cancel_all_assignments()).count == 0

            with pytest.raises(ApiError) as illegal:
                await fleet.accept(session.id)
            assert illegal.value.code == "INVALID_STATE" and illegal.value.status == 409
            with pytest.raises(ApiError) as missing:
                await fleet.get_session("ses_does_not_exist")
            assert missing.value.code in ("SESSION_NOT_FOUND", "NOT_FOUND")

        revoked = await operator.revoke_api_key(supplier_id, key.id)
        assert revoked.revoked_at is not None
        await operator.logout()
        assert operator.session_cookie is None
    finally:
        await operator.aclose()
        await consumer.aclose()


async def test_wrong_signature_is_refused_with_its_code(transport: httpx.ASGITransport) -> None:
    account = Account.create()
    async with client(transport) as c:
        challenge = await c.wallet_challenge(account.address)
        with pytest.raises(ApiError) as info:
            await c.wallet_login(account.address, challenge.nonce, "0x" + "11" * 65)
    assert info.value.status in (400, 401) and info.value.code
    assert c.session_cookie is None
