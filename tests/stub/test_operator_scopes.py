"""Scopes on /workspaces/:id/operators: register and revoke need sessions:operate, list needs
sessions:read (a member's wallet session holds both); a refused call changes nothing."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx

from luxxon_agent.eip712 import KeySigner
from luxxon_agent.secret import Secret
from luxxon_agent.telemetry import Delegation
from tests.stub.conftest import START, Actor, Harness, data, error

DEVICE = KeySigner(Secret("0x" + "5a" * 32))


def _registration(harness: Harness, actor: Actor, label: str) -> dict[str, Any]:
    """A delegation of DEVICE signed by the workspace wallet, as the request body."""
    delegation = Delegation.create(
        str(actor.workspace_id), label, DEVICE.address, START, START + timedelta(days=30)
    )
    wallet = KeySigner(Secret("0x" + bytes(actor.account.key).hex()))
    return {
        "label": label,
        "kind": "DRONE",
        "deviceAddress": DEVICE.address,
        "issuedAt": "2026-05-13T08:00:00.000Z",
        "expiresAt": "2026-06-12T08:00:00.000Z",
        "signature": delegation.sign(wallet, harness.stub.config.chain_id),
    }


async def _register(
    harness: Harness, client: httpx.AsyncClient, actor: Actor, label: str
) -> httpx.Response:
    """POST a registration of DEVICE as operator `label` of the actor's workspace."""
    return await client.post(
        f"/workspaces/{actor.workspace_id}/operators", json=_registration(harness, actor, label)
    )


async def _key_client(harness: Harness, actor: Actor, scopes: list[str]) -> httpx.AsyncClient:
    return harness.client((await actor.mint_key(scopes))["plaintext"])


async def test_wallet_read_key_can_neither_list_register_nor_revoke(harness: Harness) -> None:
    supplier, operator = await harness.supplier()
    ws = supplier.workspace_id
    registered = data(await _register(harness, operator, supplier, "a"), 201)
    reader = await _key_client(harness, supplier, ["wallet:read"])
    before = harness.snapshot()
    body = error(await _register(harness, reader, supplier, "b"), 403, "NOT_AUTHORIZED")
    assert "sessions:operate" in body["message"]
    error(
        await reader.post(f"/workspaces/{ws}/operators/{registered['id']}/revoke"),
        403,
        "NOT_AUTHORIZED",
    )
    body = error(await reader.get(f"/workspaces/{ws}/operators"), 403, "NOT_AUTHORIZED")
    assert "sessions:read" in body["message"]
    # nothing written: the delegation is still active and no key's lastUsedAt moved
    assert harness.snapshot() == before
    listed = data(await operator.get(f"/workspaces/{ws}/operators"))
    assert [(o["label"], o.get("revokedAt")) for o in listed] == [("a", None)]


async def test_sessions_read_lists_but_cannot_change(harness: Harness) -> None:
    supplier, operator = await harness.supplier()
    ws = supplier.workspace_id
    registered = data(await _register(harness, operator, supplier, "a"), 201)
    reader = await _key_client(harness, supplier, ["sessions:read"])
    assert [o["id"] for o in data(await reader.get(f"/workspaces/{ws}/operators"))] == [
        registered["id"]
    ]
    before = harness.snapshot()
    error(await _register(harness, reader, supplier, "b"), 403, "NOT_AUTHORIZED")
    error(
        await reader.post(f"/workspaces/{ws}/operators/{registered['id']}/revoke"),
        403,
        "NOT_AUTHORIZED",
    )
    assert harness.snapshot() == before


async def test_sessions_operate_registers_and_revokes_but_does_not_list(harness: Harness) -> None:
    supplier, _ = await harness.supplier()
    ws = supplier.workspace_id
    operate = await _key_client(harness, supplier, ["sessions:operate"])
    registered = data(await _register(harness, operate, supplier, "a"), 201)
    revoked = data(await operate.post(f"/workspaces/{ws}/operators/{registered['id']}/revoke"))
    assert revoked["revokedAt"] is not None
    error(await operate.get(f"/workspaces/{ws}/operators"), 403, "NOT_AUTHORIZED")


async def test_member_wallet_session_holds_every_scope(harness: Harness) -> None:
    supplier, _ = await harness.supplier()
    ws = supplier.workspace_id
    registered = data(await _register(harness, supplier.http, supplier, "a"), 201)
    assert [o["id"] for o in data(await supplier.http.get(f"/workspaces/{ws}/operators"))] == [
        registered["id"]
    ]
    data(await supplier.http.post(f"/workspaces/{ws}/operators/{registered['id']}/revoke"))


async def test_another_workspace_with_every_scope_is_refused(harness: Harness) -> None:
    supplier, _ = await harness.supplier()
    rival, rival_operator = await harness.supplier("rival-drones")
    ws = supplier.workspace_id
    before = harness.snapshot()
    for client in (rival.http, rival_operator):
        error(await _register(harness, client, supplier, "x"), 403, "WORKSPACE_MISMATCH")
        error(await client.get(f"/workspaces/{ws}/operators"), 403, "WORKSPACE_MISMATCH")
    assert harness.snapshot() == before
