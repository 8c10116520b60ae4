"""A real stub (uvicorn on 127.0.0.1, real WHIP ingest) and a real headless Chromium.

Chromium is Debian's /usr/bin/chromium driven by Playwright. Its fake devices
stand in for the camera and microphone (a moving test pattern and a beep).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from luxxon_agent.models import (
    AvailabilityState,
    CreateSessionRequest,
    CreateWorkspaceRequest,
    DeviceKind,
    Role,
    UpdateWorkspaceRequest,
)
from luxxon_agent.secret import Secret
from luxxon_agent.stub import StubConfig, create_app
from luxxon_agent.stub.ingest import WhipIngest
from luxxon_agent.video import pin_ice_to_loopback
from tests.conftest import free_port, require_tool
from tests.support import serve

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount
    from playwright.async_api import Browser, Playwright

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "browser"

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    # Chromium may replace its host ICE candidates with random *.local mDNS names (it did on
    # an about:blank origin here); aioice would have to resolve those over multicast.
    # Raw host addresses keep ICE deterministic; the packets still never leave this machine.
    "--disable-features=WebRtcHideLocalIpsWithMdns",
]

LAT, LNG = 4.711, -74.072


@dataclass
class Stub:
    base: str
    ingest: WhipIngest


@pytest.fixture
async def stub() -> AsyncIterator[Stub]:
    """The stub app with the real WHIP ingest, served by uvicorn on 127.0.0.1."""
    pin_ice_to_loopback()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    ingest = WhipIngest(base)
    app = create_app(StubConfig(db_path=":memory:", public_base_url=base), video=ingest)
    async with serve(app, port, lifespan="on"):
        try:
            yield Stub(base, ingest)
        finally:
            await ingest.aclose()


@pytest.fixture
async def playwright() -> AsyncIterator[Playwright]:
    from playwright.async_api import async_playwright

    async with async_playwright() as driver:
        yield driver


async def launch_chromium(driver: Playwright, *extra_args: str) -> Browser:
    """Debian's Chromium, headless, with fake camera and microphone."""
    return await driver.chromium.launch(
        executable_path=require_tool("chromium"),
        headless=True,
        args=[*CHROMIUM_ARGS, *extra_args],
    )


@pytest.fixture
async def browser(playwright: Playwright) -> AsyncIterator[Browser]:
    chromium = await launch_chromium(playwright)
    try:
        yield chromium
    finally:
        await chromium.close()


def sign_text(account: LocalAccount, message: str) -> str:
    from eth_account.messages import encode_defunct

    return "0x" + bytes(account.sign_message(encode_defunct(text=message)).signature).hex()


async def login(base: str, account: LocalAccount) -> Secret:
    """SIWE login from Python (the test's own set-up, not the page's); returns lx_session."""
    from luxxon_agent.api import AsyncLuxxonClient

    async with AsyncLuxxonClient(f"{base}/api/v1") as client:
        challenge = await client.wallet_challenge(account.address)
        await client.wallet_login(
            account.address, challenge.nonce, sign_text(account, challenge.message)
        )
        assert client.session_cookie is not None
        return client.session_cookie


async def create_workspace(base: str, account: LocalAccount, slug: str, role: Role) -> str:
    from luxxon_agent.api import AsyncLuxxonClient

    async with AsyncLuxxonClient(f"{base}/api/v1") as client:
        challenge = await client.workspace_challenge(account.address)
        workspace = await client.create_workspace(
            CreateWorkspaceRequest(
                slug=slug,
                name=slug,
                wallet_address=account.address,
                signature=sign_text(account, challenge.message),
                nonce=challenge.nonce,
                roles=[role],
            )
        )
        return workspace.id


@dataclass
class LiveSession:
    id: str
    operator: LocalAccount
    consumer: LocalAccount
    operator_cookie: Secret
    consumer_cookie: Secret
    whip_url: Secret
    video_ref: str


async def live_session(base: str) -> LiveSession:
    """Two wallets, a SUPPLIER and a CONSUMER workspace, one session taken to LIVE."""
    from eth_account import Account

    from luxxon_agent.api import AsyncLuxxonClient

    operator: LocalAccount = Account.create()
    consumer: LocalAccount = Account.create()
    operator_ws = await create_workspace(base, operator, "browser-operator", Role.SUPPLIER)
    await create_workspace(base, consumer, "browser-consumer", Role.CONSUMER)
    operator_cookie = await login(base, operator)
    consumer_cookie = await login(base, consumer)
    async with AsyncLuxxonClient(f"{base}/api/v1", session_cookie=operator_cookie) as op:
        await op.update_workspace(
            operator_ws,
            UpdateWorkspaceRequest(
                availability_state=AvailabilityState.ONLINE,
                coverage_lat=LAT,
                coverage_lng=LNG,
                coverage_radius_meters=5_000,
                device_kind=DeviceKind.LAPTOP,
            ),
        )
        async with AsyncLuxxonClient(f"{base}/api/v1", session_cookie=consumer_cookie) as co:
            session = await co.create_session(
                CreateSessionRequest(lat=LAT, lng=LNG, max_duration_seconds=600)
            )
            await co.dispatch(session.id)
        await op.accept(session.id)
        started = await op.start(session.id)
    return LiveSession(
        id=session.id,
        operator=operator,
        consumer=consumer,
        operator_cookie=operator_cookie,
        consumer_cookie=consumer_cookie,
        whip_url=Secret(started.whip_url),
        video_ref=started.video_backend_ref,
    )
