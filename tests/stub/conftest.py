"""A stub app in memory (httpx.ASGITransport), real wallets, real SIWE signatures."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount

from luxxon_agent.clock import FakeClock
from luxxon_agent.stub import MintOnlyVideoBackend, StubConfig, create_app

BASE = "http://stub.test"
API = f"{BASE}/api/v1"
START = datetime(2026, 5, 13, 8, 0, tzinfo=UTC)


def sign(account: LocalAccount, message: str) -> str:
    """EIP-191 personal_sign, as a wallet signs a SIWE or workspace challenge."""
    return "0x" + account.sign_message(encode_defunct(text=message)).signature.hex().removeprefix(
        "0x"
    )


def data(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["statusCode"] == status
    return body["data"]


def error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["code"] == code, body
    assert set(body) == {"code", "message", "detail"}
    return body


@dataclass
class Actor:
    """A wallet with a logged-in http client (its own cookie jar)."""

    account: LocalAccount
    http: httpx.AsyncClient
    workspace_id: str | None = None

    async def challenge(self, kind: str = "auth/wallet") -> dict[str, Any]:
        """A fresh SIWE challenge: `kind` "auth/wallet" to log in, "workspaces" to create one."""
        return data(
            await self.http.post(f"/{kind}/challenge", json={"walletAddress": self.account.address})
        )

    async def login(self) -> dict[str, Any]:
        challenge = await self.challenge()
        return data(
            await self.http.post(
                "/auth/wallet/login",
                json={
                    "walletAddress": self.account.address,
                    "nonce": challenge["nonce"],
                    "signature": sign(self.account, challenge["message"]),
                },
            )
        )

    async def create_workspace(self, slug: str, roles: list[str]) -> dict[str, Any]:
        challenge = await self.challenge("workspaces")
        workspace = data(
            await self.http.post(
                "/workspaces",
                json={
                    "slug": slug,
                    "name": slug.title(),
                    "walletAddress": self.account.address,
                    "signature": sign(self.account, challenge["message"]),
                    "nonce": challenge["nonce"],
                    "roles": roles,
                },
            ),
            201,
        )
        self.workspace_id = workspace["id"]
        return workspace

    async def mint_key(self, scopes: list[str], environment: str = "TEST") -> dict[str, Any]:
        return data(
            await self.http.post(
                f"/workspaces/{self.workspace_id}/api-keys",
                json={"label": "test", "environment": environment, "scopes": scopes},
            ),
            201,
        )


@dataclass
class Harness:
    clock: FakeClock
    video: MintOnlyVideoBackend
    app: Any
    transport: httpx.ASGITransport

    @property
    def stub(self) -> Any:
        return self.app.state.stub

    def snapshot(self) -> dict[str, list[tuple[Any, ...]]]:
        return self.stub.store.snapshot()

    def client(self, api_key: str | None = None) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        return httpx.AsyncClient(transport=self.transport, base_url=API, headers=headers)

    def actor(self) -> Actor:
        return Actor(Account.create(), self.client())

    async def supplier(
        self,
        slug: str = "acme-drones",
        coverage: tuple[float, float, float] = (4.711, -74.072, 5000),
    ) -> tuple[Actor, httpx.AsyncClient]:
        """A logged-in SUPPLIER workspace, ONLINE with coverage, and an operator key client."""
        actor = self.actor()
        await actor.create_workspace(slug, ["SUPPLIER"])
        await actor.login()
        key = await actor.mint_key(["sessions:operate", "sessions:read", "wallet:read"])
        operator = self.client(key["plaintext"])
        lat, lng, radius = coverage
        data(
            await operator.patch(
                f"/workspaces/{actor.workspace_id}",
                json={
                    "availabilityState": "ONLINE",
                    "coverageLat": lat,
                    "coverageLng": lng,
                    "coverageRadiusMeters": radius,
                    "deviceKind": "DRONE",
                },
            )
        )
        return actor, operator

    async def consumer(self, slug: str = "watcher") -> tuple[Actor, httpx.AsyncClient]:
        actor = self.actor()
        await actor.create_workspace(slug, ["CONSUMER"])
        await actor.login()
        key = await actor.mint_key(["sessions:request", "sessions:read"])
        return actor, self.client(key["plaintext"])

    async def requested(
        self, consumer: httpx.AsyncClient, *, dispatch: bool = True, duration: int = 600
    ) -> dict[str, Any]:
        session = data(
            await consumer.post(
                "/sessions", json={"lat": 4.711, "lng": -74.072, "maxDurationSeconds": duration}
            ),
            201,
        )
        if dispatch:
            session = data(await consumer.post(f"/sessions/{session['id']}/dispatch"))
        return session

    async def live(
        self, duration: int = 600
    ) -> tuple[httpx.AsyncClient, httpx.AsyncClient, dict[str, Any]]:
        """A supplier and a consumer with one session taken to LIVE.

        Returns the operator's and the consumer's key clients and the start result.
        """
        _, operator = await self.supplier()
        _, consumer = await self.consumer()
        sid = (await self.requested(consumer, duration=duration))["id"]
        data(await operator.post(f"/sessions/{sid}/accept"))
        started = data(await operator.post(f"/sessions/{sid}/start"))
        return operator, consumer, started


@pytest.fixture
async def harness() -> AsyncIterator[Harness]:
    clock = FakeClock(START)
    config = StubConfig(db_path=":memory:", public_base_url=BASE, clock=clock, rng=random.Random(7))
    video = MintOnlyVideoBackend(BASE)
    app = create_app(config, video=video)
    transport = httpx.ASGITransport(app=app)
    yield Harness(clock=clock, video=video, app=app, transport=transport)
    app.state.stub.store.close()


@dataclass
class ServedHarness(Harness):
    """A Harness whose app is served by a real uvicorn server on loopback."""

    origin: str = ""
    clients: list[httpx.AsyncClient] = field(default_factory=list)
    """Every client made, closed when the fixture ends (they hold real sockets)."""

    def client(self, api_key: str | None = None) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        made = httpx.AsyncClient(base_url=f"{self.origin}/api/v1", headers=headers)
        self.clients.append(made)
        return made


@pytest.fixture
async def served() -> AsyncIterator[ServedHarness]:
    from tests.conftest import free_port
    from tests.support import serve

    port = free_port()
    origin = f"http://127.0.0.1:{port}"
    clock = FakeClock(START)
    config = StubConfig(
        db_path=":memory:", public_base_url=origin, clock=clock, rng=random.Random(7)
    )
    video = MintOnlyVideoBackend(origin)
    app = create_app(config, video=video)
    harness = ServedHarness(
        clock=clock, video=video, app=app, transport=httpx.ASGITransport(app=app), origin=origin
    )
    async with serve(app, port):
        try:
            yield harness
        finally:
            for client in harness.clients:
                await client.aclose()
    app.state.stub.store.close()
