"""AsyncLuxxonClient against the real stub app, in process (httpx.ASGITransport)."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest
from eth_account import Account

from luxxon_agent.api import AsyncLuxxonClient, LuxxonClient
from luxxon_agent.clock import FakeClock
from luxxon_agent.eip712 import KeySigner
from luxxon_agent.errors import ApiError
from luxxon_agent.identity import address_of, create_workspace_signed, sign_message, siwe_login
from luxxon_agent.models import (
    AvailabilityState,
    CreateApiKeyRequest,
    CreateSessionRequest,
    CreateWorkspaceRequest,
    DeviceKind,
    Environment,
    RegisterOperatorRequest,
    Role,
    Scope,
    SessionState,
    UpdateWorkspaceRequest,
)
from luxxon_agent.secret import Secret
from luxxon_agent.stub import StubConfig, create_app
from luxxon_agent.telemetry.delegation import register_operator

ORIGIN = "http://stub.test"
BASE = f"{ORIGIN}/api/v1"
LAT, LNG = 4.711, -74.072


def stub_transport(clock: FakeClock | None = None) -> httpx.ASGITransport:
    config = StubConfig(
        db_path=":memory:", public_base_url=ORIGIN, clock=clock or FakeClock(), with_video=False
    )
    return httpx.ASGITransport(app=create_app(config))


@pytest.fixture
async def transport() -> AsyncIterator[httpx.ASGITransport]:
    yield stub_transport()


def new_wallet() -> Secret:
    return Secret("0x" + bytes(Account.create().key).hex())


def client(transport: httpx.ASGITransport, **kwargs: object) -> AsyncLuxxonClient:
    return AsyncLuxxonClient(BASE, transport=transport, **kwargs)  # type: ignore[arg-type]


async def wallet_session(
    transport: httpx.ASGITransport, role: Role, slug: str, key: Secret | None = None
) -> tuple[AsyncLuxxonClient, str]:
    """A logged-in client for a (new) wallet owning a new workspace of `role`."""
    key = key or new_wallet()
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


async def test_operators_register_list_revoke(transport: httpx.ASGITransport) -> None:
    wallet = new_wallet()
    owner, supplier_id = await wallet_session(transport, Role.SUPPLIER, "fleet-one", wallet)
    device = Account.create().address
    try:
        chain_id = (await owner.config()).chain_id
        registered = await register_operator(
            owner,
            workspace_id=supplier_id,
            label="drone-7",
            kind=DeviceKind.DRONE,
            device_address=device,
            wallet=KeySigner(wallet),
            chain_id=chain_id,
            issued_at=FakeClock().now(),
            lifetime=timedelta(days=30),
        )
        assert registered.workspace_id == supplier_id and registered.revoked_at is None
        assert registered.device_address.lower() == device.lower()
        assert registered.kind is DeviceKind.DRONE

        same_label = RegisterOperatorRequest(
            label="drone-7",
            kind=DeviceKind.DRONE,
            device_address=device,
            issued_at=registered.issued_at,
            expires_at=registered.expires_at,
            signature=registered.delegation_signature,
        )
        with pytest.raises(ApiError) as replay:  # the same delegation again: its digest is used
            await owner.register_operator(supplier_id, same_label)
        assert replay.value.status == 409

        assert [op.id for op in await owner.list_operators(supplier_id)] == [registered.id]
        revoked = await owner.revoke_operator(supplier_id, registered.id)
        assert revoked.id == registered.id and revoked.revoked_at is not None
        again = await owner.revoke_operator(supplier_id, registered.id)  # idempotent
        assert again.revoked_at == revoked.revoked_at
        (listed,) = await owner.list_operators(supplier_id)
        assert listed.revoked_at == revoked.revoked_at

        with pytest.raises(ApiError) as missing:
            await owner.revoke_operator(supplier_id, "op_nope")
        assert missing.value.status == 404
    finally:
        await owner.aclose()


def test_sync_client_blocks_on_the_stub_from_a_plain_function() -> None:
    wallet = new_wallet()
    address = address_of(wallet)
    with LuxxonClient(BASE, transport=stub_transport()) as c:
        assert repr(c).startswith("LuxxonClient(") and c.base_url == BASE
        assert c.health().status
        challenge = c.workspace_challenge(address)
        workspace = c.create_workspace(
            CreateWorkspaceRequest(
                slug="sync-fleet",
                name="Sync fleet",
                wallet_address=address,
                signature=sign_message(wallet, challenge.message),
                nonce=challenge.nonce,
                roles=[Role.SUPPLIER],
            )
        )
        login = c.wallet_challenge(address)
        c.wallet_login(address, login.nonce, sign_message(wallet, login.message))
        assert c.session_cookie is not None  # a forwarded property, set by the async client
        c.select_workspace(workspace.id)
        assert c.me().kind == "wallet_session"
        assert c.list_operators(workspace.id) == []
        with pytest.raises(ApiError) as info:
            c.get_session("ses_does_not_exist")
        assert info.value.status in (403, 404)
    with pytest.raises(RuntimeError, match="closed"):
        c.health()
    c.close()  # a second close is harmless


def test_sync_client_forwards_every_public_coroutine() -> None:
    public = {
        name
        for name, member in vars(AsyncLuxxonClient).items()
        if inspect.iscoroutinefunction(member) and not name.startswith("_")
    }
    assert {"register_operator", "list_operators", "revoke_operator", "health"} <= public
    for name in public - {"aclose"}:
        forwarded = getattr(LuxxonClient, name)
        assert not inspect.iscoroutinefunction(forwarded), name
        assert inspect.signature(forwarded) == inspect.signature(getattr(AsyncLuxxonClient, name))


async def test_sync_client_refuses_to_block_a_running_loop() -> None:
    c = LuxxonClient(BASE, transport=stub_transport())
    with pytest.raises(RuntimeError, match="AsyncLuxxonClient"):
        c.health()
