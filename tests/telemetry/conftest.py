"""A telemetry-metered stub in memory, with a LIVE session and a registered device key."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest

from luxxon_agent.clock import FakeClock
from luxxon_agent.eip712 import KeySigner
from luxxon_agent.models import MeterMode
from luxxon_agent.secret import Secret
from luxxon_agent.stub import MintOnlyVideoBackend, StubConfig, create_app
from luxxon_agent.telemetry import Delegation
from tests.stub.conftest import BASE, START, Actor, Harness, data
from tests.telemetry.helpers import CHAIN, DEVICE


def wallet_signer(actor: Actor) -> KeySigner:
    return KeySigner(Secret("0x" + bytes(actor.account.key).hex()))


async def register_device(
    client: httpx.AsyncClient,
    actor: Actor,
    device: KeySigner,
    *,
    label: str = "drone-7",
    issued_at: datetime,
    lifetime: timedelta = timedelta(days=30),
    chain_id: int = CHAIN,
    signer: KeySigner | None = None,
) -> httpx.Response:
    delegation = Delegation.create(
        str(actor.workspace_id), label, device.address, issued_at, issued_at + lifetime
    )
    signature = delegation.sign(signer or wallet_signer(actor), chain_id)
    return await client.post(
        f"/workspaces/{actor.workspace_id}/operators",
        json={
            "label": label,
            "kind": "DRONE",
            "deviceAddress": device.address,
            "issuedAt": delegation.issued_at.isoformat().replace("+00:00", "Z"),
            "expiresAt": delegation.expires_at.isoformat().replace("+00:00", "Z"),
            "signature": signature,
        },
    )


@dataclass
class Live:
    """A supplier with a registered device and one LIVE session."""

    harness: Harness
    supplier: Actor
    operator: httpx.AsyncClient
    requester: httpx.AsyncClient
    session: dict[str, Any]
    started_at: datetime
    operator_id: str
    other: dict[str, Any]
    """A second LIVE session of the same operator workspace."""

    @property
    def sid(self) -> str:
        return str(self.session["id"])


@pytest.fixture
async def harness() -> AsyncIterator[Harness]:
    clock = FakeClock(START)
    config = StubConfig(
        db_path=":memory:",
        public_base_url=BASE,
        clock=clock,
        rng=random.Random(11),
        meter=MeterMode.TELEMETRY,
        chain_id=CHAIN,
    )
    video = MintOnlyVideoBackend(BASE)
    app = create_app(config, video=video)
    yield Harness(clock=clock, video=video, app=app, transport=httpx.ASGITransport(app=app))
    app.state.stub.store.close()


@pytest.fixture
async def live(harness: Harness) -> Live:
    supplier, operator = await harness.supplier()
    _, requester = await harness.consumer()
    registered = data(
        await register_device(operator, supplier, DEVICE, issued_at=harness.clock.now()), 201
    )
    await harness.clock.advance(0.25)
    sessions = [await harness.requested(requester) for _ in range(2)]
    live_sessions = []
    for session in sessions:
        data(await operator.post(f"/sessions/{session['id']}/accept"))
        live_sessions.append(
            data(await operator.post(f"/sessions/{session['id']}/start"))["session"]
        )
    started = live_sessions[0]
    return Live(
        harness=harness,
        supplier=supplier,
        operator=operator,
        requester=requester,
        session=started,
        started_at=harness.clock.now(),
        operator_id=registered["id"],
        other=live_sessions[1],
    )
