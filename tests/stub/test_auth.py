"""SIWE login, workspace creation by signature, API keys: the happy paths and every refusal.

Each refusal asserts the error code and that the database did not change.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import httpx
from eth_account import Account

from tests.stub.conftest import Harness, data, error, sign

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount


async def _login(
    http: httpx.AsyncClient,
    address: str,
    challenge: dict[str, Any],
    signer: LocalAccount,
    message: str | None = None,
) -> httpx.Response:
    """POST a SIWE login for `address` with the challenge's nonce, signed by `signer`.

    `message` is what `signer` signs instead of the challenge's message (a forgery).
    """
    signature = sign(signer, challenge["message"] if message is None else message)
    return await http.post(
        "/auth/wallet/login",
        json={"walletAddress": address, "nonce": challenge["nonce"], "signature": signature},
    )


async def test_siwe_login_sets_a_hardened_cookie_and_selects_the_only_workspace(
    harness: Harness,
) -> None:
    actor = harness.actor()
    workspace = await actor.create_workspace("acme-drones", ["SUPPLIER"])
    challenge = await actor.challenge()
    assert f"Nonce: {challenge['nonce']}" in challenge["message"]
    assert challenge["message"].startswith("stub.test wants you to sign in with your Ethereum")
    assert "Chain ID: 8453" in challenge["message"]
    response = await _login(actor.http, actor.account.address.lower(), challenge, actor.account)
    result = data(response)
    assert result["selectedWorkspaceId"] == workspace["id"]
    assert [m["workspaceId"] for m in result["memberships"]] == [workspace["id"]]
    cookie = response.headers["set-cookie"]
    assert cookie.startswith("lx_session=")
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Max-Age=43200" in cookie
    token = response.cookies["lx_session"]
    # only a hash of the cookie is stored
    assert token not in json.dumps(harness.snapshot())
    me = data(await actor.http.get("/me"))
    assert me["kind"] == "wallet_session" and me["workspaceId"] == workspace["id"]


async def test_wrong_siwe_signature_is_refused_and_changes_nothing(harness: Harness) -> None:
    actor, intruder = harness.actor(), Account.create()
    challenge = await actor.challenge()
    before = harness.snapshot()
    response = await _login(actor.http, actor.account.address, challenge, intruder)
    error(response, 401, "INVALID_TOKEN")
    assert "lx_session" not in response.cookies
    assert harness.snapshot() == before
    # a signature over a different message (another domain) is just as wrong
    forged = challenge["message"].replace("stub.test", "evil.test")
    response = await _login(actor.http, actor.account.address, challenge, actor.account, forged)
    error(response, 401, "INVALID_TOKEN")
    assert harness.snapshot() == before


async def test_replayed_nonce_is_refused_and_changes_nothing(harness: Harness) -> None:
    actor = harness.actor()
    challenge = await actor.challenge()
    body = {
        "walletAddress": actor.account.address,
        "nonce": challenge["nonce"],
        "signature": sign(actor.account, challenge["message"]),
    }
    data(await actor.http.post("/auth/wallet/login", json=body))
    before = harness.snapshot()
    replay = await harness.client().post("/auth/wallet/login", json=body)
    assert error(replay, 401, "INVALID_TOKEN")["message"].startswith("nonce already used")
    assert harness.snapshot() == before


async def test_expired_nonce_is_refused_and_changes_nothing(harness: Harness) -> None:
    actor = harness.actor()
    challenge = await actor.challenge()
    await harness.clock.advance(5 * 60)  # nonce TTL
    before = harness.snapshot()
    response = await _login(actor.http, actor.account.address, challenge, actor.account)
    assert error(response, 401, "INVALID_TOKEN")["message"].startswith("nonce expired")
    assert harness.snapshot() == before


async def test_nonce_of_another_wallet_is_refused(harness: Harness) -> None:
    alice, mallory = harness.actor(), harness.actor()
    challenge = await alice.challenge()
    before = harness.snapshot()
    response = await _login(mallory.http, mallory.account.address, challenge, mallory.account)
    error(response, 401, "INVALID_TOKEN")
    assert harness.snapshot() == before


async def test_logout_revokes_the_cookie_and_expiry_ends_it(harness: Harness) -> None:
    actor = harness.actor()
    await actor.create_workspace("acme", ["SUPPLIER"])
    await actor.login()
    token = actor.http.cookies["lx_session"]
    data(await actor.http.post("/auth/logout"))
    stolen = harness.client()
    stolen.cookies.set("lx_session", token)
    error(await stolen.get("/me"), 401, "INVALID_TOKEN")
    # a second login expires after the cookie TTL
    await actor.login()
    data(await actor.http.get("/me"))
    await harness.clock.advance(timedelta(hours=12).total_seconds())
    error(await actor.http.get("/me"), 401, "INVALID_TOKEN")


async def test_workspace_creation_needs_the_wallets_signature(harness: Harness) -> None:
    actor, intruder = harness.actor(), Account.create()
    challenge = await actor.challenge("workspaces")
    body = {
        "slug": "acme",
        "name": "Acme",
        "walletAddress": actor.account.address,
        "signature": sign(intruder, challenge["message"]),
        "nonce": challenge["nonce"],
        "roles": ["SUPPLIER"],
    }
    before = harness.snapshot()
    error(await actor.http.post("/workspaces", json=body), 401, "INVALID_TOKEN")
    assert harness.snapshot() == before
    # a login nonce does not create a workspace either
    login = await actor.challenge()
    before = harness.snapshot()
    body |= {"nonce": login["nonce"], "signature": sign(actor.account, login["message"])}
    error(await actor.http.post("/workspaces", json=body), 401, "INVALID_TOKEN")
    assert harness.snapshot() == before
    body |= {"nonce": challenge["nonce"], "signature": sign(actor.account, challenge["message"])}
    created = data(await actor.http.post("/workspaces", json=body), 201)
    assert created["roles"] == ["SUPPLIER"] and created["availabilityState"] == "OFFLINE"
    assert created["createdByWallet"] == actor.account.address
    # the slug is now taken
    again = await actor.challenge("workspaces")
    before = harness.snapshot()
    body |= {"nonce": again["nonce"], "signature": sign(actor.account, again["message"])}
    error(await actor.http.post("/workspaces", json=body), 409, "CONFLICT")
    assert harness.snapshot() == before


async def test_api_key_is_returned_once_and_only_its_hash_is_stored(harness: Harness) -> None:
    actor = harness.actor()
    await actor.create_workspace("acme", ["SUPPLIER"])
    await actor.login()
    key = await actor.mint_key(["sessions:read"], environment="LIVE")
    plaintext = key["plaintext"]
    assert plaintext.startswith("lxxn_live_") and len(plaintext) == 50
    assert key["prefix"] == plaintext[:20]
    assert plaintext not in json.dumps(harness.snapshot())
    listed = data(await actor.http.get(f"/workspaces/{actor.workspace_id}/api-keys"))
    assert [k["id"] for k in listed] == [key["id"]] and "plaintext" not in listed[0]
    me = data(await harness.client(plaintext).get("/me"))
    assert me == {
        "kind": "api_key",
        "workspaceId": actor.workspace_id,
        "keyId": key["id"],
        "environment": "LIVE",
        "scopes": ["sessions:read"],
        "memberships": [],
    }
    test_key = await actor.mint_key(["sessions:read"])
    assert test_key["plaintext"].startswith("lxxn_test_")


async def test_api_keys_cannot_mint_keys(harness: Harness) -> None:
    supplier, operator = await harness.supplier()
    before = harness.snapshot()
    response = await operator.post(
        f"/workspaces/{supplier.workspace_id}/api-keys",
        json={"label": "x", "environment": "TEST", "scopes": ["sessions:operate"]},
    )
    error(response, 403, "NOT_AUTHORIZED")
    assert harness.snapshot() == before


async def test_unknown_and_malformed_keys_are_refused(harness: Harness) -> None:
    before = harness.snapshot()
    error(await harness.client("lxxn_live_" + "x" * 40).get("/me"), 401, "INVALID_API_KEY")
    error(await harness.client("sk_live_nope").get("/me"), 401, "INVALID_API_KEY")
    error(await harness.client().get("/me"), 401, "NOT_AUTHENTICATED")
    assert harness.snapshot() == before


async def test_key_without_operate_scope_cannot_operate(harness: Harness) -> None:
    supplier, operator = await harness.supplier()
    _, requester = await harness.consumer()
    session = await harness.requested(requester)
    reader_key = await supplier.mint_key(["sessions:read"])
    reader = harness.client(reader_key["plaintext"])
    data(await reader.get(f"/sessions/{session['id']}"))  # it can read
    before = harness.snapshot()
    workspace = f"/workspaces/{supplier.workspace_id}"
    for method, path, body in (
        ("POST", f"/sessions/{session['id']}/accept", None),
        ("POST", "/sessions/cancel-all-assignments", None),
        ("PATCH", workspace, {"availabilityState": "OFFLINE"}),
        (
            "POST",
            f"{workspace}/location",
            {"lat": 4.7, "lng": -74, "accuracyMeters": 5, "sequence": 1},
        ),
        ("GET", "/wallet", None),
    ):
        response = await reader.request(method, path, json=body)
        assert "lacks" in error(response, 403, "NOT_AUTHORIZED")["message"]
    assert harness.snapshot() == before


async def test_revoked_key_works_within_grace_then_is_refused(harness: Harness) -> None:
    supplier, operator = await harness.supplier()
    key_id = data(await operator.get("/me"))["keyId"]
    revoked = data(
        await supplier.http.post(f"/workspaces/{supplier.workspace_id}/api-keys/{key_id}/revoke")
    )
    assert revoked["revokedAt"] == "2026-05-13T08:00:00.000Z"
    assert revoked["gracePeriodEnd"] == "2026-05-13T08:01:00.000Z"
    await harness.clock.advance(59)
    data(await operator.get("/sessions"))  # still inside the 60 s grace
    await harness.clock.advance(1)
    before = harness.snapshot()
    error(await operator.get("/sessions"), 401, "REVOKED_API_KEY")
    error(
        await operator.patch(
            f"/workspaces/{supplier.workspace_id}", json={"availabilityState": "OFFLINE"}
        ),
        401,
        "REVOKED_API_KEY",
    )
    assert harness.snapshot() == before
    error(
        await supplier.http.post(f"/workspaces/{supplier.workspace_id}/api-keys/{key_id}/revoke"),
        409,
        "CONFLICT",
    )
    assert harness.snapshot() == before


async def test_a_key_only_reaches_its_own_workspace(harness: Harness) -> None:
    alice, alice_op = await harness.supplier("alice")
    bob, bob_op = await harness.supplier("bob")
    before = harness.snapshot()
    error(
        await bob_op.patch(f"/workspaces/{alice.workspace_id}", json={"name": "owned"}),
        403,
        "WORKSPACE_MISMATCH",
    )
    error(await bob_op.get(f"/workspaces/{alice.workspace_id}"), 403, "WORKSPACE_MISMATCH")
    error(
        await bob.http.post(
            f"/workspaces/{alice.workspace_id}/api-keys",
            json={"label": "x", "environment": "TEST", "scopes": ["sessions:read"]},
        ),
        403,
        "WORKSPACE_MISMATCH",
    )
    error(
        await bob.http.post("/auth/workspace/select", json={"workspaceId": alice.workspace_id}),
        403,
        "WORKSPACE_MISMATCH",
    )
    assert harness.snapshot() == before
