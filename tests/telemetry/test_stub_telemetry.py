"""The stub's telemetry endpoint, operator delegations and the telemetry meter at /end."""

from __future__ import annotations

from datetime import timedelta

from luxxon_agent.api import AsyncLuxxonClient
from luxxon_agent.backoff import Backoff
from luxxon_agent.eip712 import SECP256K1_N, KeySigner
from luxxon_agent.meter import earnings
from luxxon_agent.secret import Secret
from luxxon_agent.telemetry import SampleState, Spool, Uploader
from tests.stub.conftest import API, data, error
from tests.support import wait_for
from tests.telemetry.conftest import Live, register_device, wallet_signer
from tests.telemetry.helpers import signed

OUTSIDE = (4.713, -74.072)  # ~222 m from the requested point; the default geofence is 200 m


def stored(live: Live) -> list[tuple]:
    return live.harness.snapshot().get("telemetry", [])


async def post(live: Live, sample, sid: str | None = None):
    return await live.operator.post(f"/sessions/{sid or live.sid}/telemetry", json=sample.to_wire())


async def refused(live: Live, sample, status: int, code: str, sid: str | None = None) -> None:
    before = live.harness.snapshot()
    error(await post(live, sample, sid), status, code)
    assert live.harness.snapshot() == before  # every rejection stores nothing


async def test_device_and_wallet_signatures_are_accepted_once(live: Live):
    t = live.started_at + timedelta(seconds=0.75)
    receipt = data(await post(live, signed(live.sid, t)), 201)
    assert receipt == {
        "sessionId": live.sid,
        "capturedAt": "2026-05-13T08:00:01.000Z",
        "duplicate": False,
    }
    by_wallet = signed(live.sid, t + timedelta(seconds=1), signer=wallet_signer(live.supplier))
    data(await post(live, by_wallet), 201)
    # a replay (a retry after a lost answer) succeeds as a duplicate and stores nothing
    before = live.harness.snapshot()["telemetry"]
    assert data(await post(live, signed(live.sid, t)))["duplicate"] is True
    assert live.harness.snapshot()["telemetry"] == before
    assert len(before) == 2
    # another sample for an already stored second is a conflict, not an overwrite
    await refused(live, signed(live.sid, t, lat=4.7111), 409, "CONFLICT")


async def test_forged_wrong_session_and_wrong_workspace_samples_are_refused(live: Live):
    t = live.started_at + timedelta(seconds=1)
    stranger = KeySigner(Secret("0x" + "77" * 32))
    await refused(live, signed(live.sid, t, signer=stranger), 403, "UNKNOWN_SIGNER")
    # a valid sample of another session of the same operator, replayed into this one
    await refused(live, signed(live.other["id"], t), 403, "UNKNOWN_SIGNER")
    # signed for the right session but on another chain
    await refused(live, signed(live.sid, t, chain_id=1), 403, "UNKNOWN_SIGNER")
    # a second supplier: its key cannot see the session, its wallet's signature is no good here
    rival, rival_operator = await live.harness.supplier(slug="rival-drones")
    before = live.harness.snapshot()
    error(
        await rival_operator.post(
            f"/sessions/{live.sid}/telemetry", json=signed(live.sid, t).to_wire()
        ),
        404,
        "SESSION_NOT_FOUND",
    )
    assert live.harness.snapshot() == before
    await refused(live, signed(live.sid, t, signer=wallet_signer(rival)), 403, "UNKNOWN_SIGNER")
    # the consumer side may not post telemetry at all
    error(
        await live.requester.post(
            f"/sessions/{live.sid}/telemetry", json=signed(live.sid, t).to_wire()
        ),
        403,
        "NOT_AUTHORIZED",
    )
    assert stored(live) == []


async def test_revoked_and_expired_device_keys_are_refused(live: Live):
    clock = live.harness.clock
    t = live.started_at + timedelta(seconds=1)
    data(await post(live, signed(live.sid, t)), 201)
    revoked = data(
        await live.operator.post(
            f"/workspaces/{live.supplier.workspace_id}/operators/{live.operator_id}/revoke"
        )
    )
    assert revoked["revokedAt"] is not None
    await refused(live, signed(live.sid, t + timedelta(seconds=1)), 403, "DEVICE_REVOKED")

    short = KeySigner(Secret("0x" + "55" * 32))
    data(
        await register_device(
            live.operator,
            live.supplier,
            short,
            label="drone-8",
            issued_at=clock.now(),
            lifetime=timedelta(seconds=30),
        ),
        201,
    )
    await clock.advance(40)
    late = live.started_at + timedelta(seconds=35)
    await refused(live, signed(live.sid, late, signer=short), 403, "DEVICE_EXPIRED")
    # what it signed while the delegation held still counts when it arrives late
    early = live.started_at + timedelta(seconds=5)
    data(await post(live, signed(live.sid, early, signer=short)), 201)


async def test_capture_time_must_lie_in_the_session_and_not_ahead_of_the_clock(live: Live):
    clock = live.harness.clock
    await refused(
        live,
        signed(live.sid, live.started_at - timedelta(seconds=1)),
        422,
        "CAPTURED_OUT_OF_SESSION",
    )
    await refused(
        live, signed(live.sid, clock.now() + timedelta(seconds=2.5)), 422, "CAPTURED_IN_FUTURE"
    )
    data(await post(live, signed(live.sid, clock.now() + timedelta(seconds=1.5))), 201)
    beyond = live.started_at + timedelta(seconds=live.session["maxDurationSeconds"] + 1)
    await clock.advance(live.session["maxDurationSeconds"] + 5)
    await refused(live, signed(live.sid, beyond), 422, "CAPTURED_OUT_OF_SESSION")


async def test_malformed_signatures_and_ended_sessions_are_refused(live: Live):
    t = live.started_at + timedelta(seconds=1)
    sample = signed(live.sid, t)
    raw = bytes.fromhex(sample.signature[2:])
    s = int.from_bytes(raw[32:64], "big")
    high_s = raw[:32] + (SECP256K1_N - s).to_bytes(32, "big") + bytes([55 - raw[64]])
    await refused(
        live, sample.model_copy(update={"signature": "0x" + high_s.hex()}), 400, "INVALID_SIGNATURE"
    )
    await refused(live, sample.model_copy(update={"signature": "0xdead"}), 400, "INVALID_SIGNATURE")
    data(await live.operator.post(f"/sessions/{live.sid}/end"))
    await refused(live, sample, 409, "INVALID_STATE")


async def test_delegations_are_verified_listed_revoked_and_not_replayable(live: Live):
    clock = live.harness.clock
    ws = live.supplier.workspace_id
    device = KeySigner(Secret("0x" + "66" * 32))
    impostor = KeySigner(Secret("0x" + "99" * 32))
    before = live.harness.snapshot()
    error(
        await register_device(
            live.operator, live.supplier, device, label="d2", issued_at=clock.now(), signer=impostor
        ),
        400,
        "INVALID_DELEGATION",
    )
    error(
        await register_device(
            live.operator,
            live.supplier,
            device,
            label="d2",
            issued_at=clock.now() - timedelta(days=2),
            lifetime=timedelta(days=1),
        ),
        400,
        "INVALID_DELEGATION",
    )
    error(
        await register_device(
            live.operator, live.supplier, device, label="drone-7", issued_at=clock.now()
        ),
        409,
        "CONFLICT",
    )
    assert live.harness.snapshot() == before
    # the same signed delegation cannot be registered twice (e.g. after a revoke)
    issued = clock.now()
    first = data(
        await register_device(live.operator, live.supplier, device, label="d2", issued_at=issued),
        201,
    )
    assert first["deviceAddress"] == device.address and first["kind"] == "DRONE"
    data(await live.operator.post(f"/workspaces/{ws}/operators/{first['id']}/revoke"))
    again = data(await live.operator.post(f"/workspaces/{ws}/operators/{first['id']}/revoke"))
    assert (
        again["revokedAt"]
        == data(await live.operator.get(f"/workspaces/{ws}/operators"))[1]["revokedAt"]
    )
    error(
        await register_device(live.operator, live.supplier, device, label="d2", issued_at=issued),
        409,
        "CONFLICT",
    )
    listed = data(await live.operator.get(f"/workspaces/{ws}/operators"))
    assert [(o["label"], o.get("revokedAt") is None) for o in listed] == [
        ("drone-7", True),
        ("d2", False),
    ]
    # another workspace cannot list or register here
    _, rival_operator = await live.harness.supplier(slug="rival-drones")
    error(await rival_operator.get(f"/workspaces/{ws}/operators"), 403, "WORKSPACE_MISMATCH")


async def test_telemetry_meter_fails_exactly_the_seconds_outside_the_geofence(live: Live):
    clock = live.harness.clock
    whole = live.started_at.replace(microsecond=0)
    for k in range(1, 31):
        await clock.advance(1)
        where = OUTSIDE if 11 <= k <= 20 else (4.711, -74.072)
        data(
            await post(
                live, signed(live.sid, whole + timedelta(seconds=k), lat=where[0], lng=where[1])
            ),
            201,
        )
    await clock.advance(0.1)
    ended = data(await live.operator.post(f"/sessions/{live.sid}/end"))
    assert (ended["cleanSeconds"], ended["failedSeconds"]) == (20, 10)
    settlement = data(await live.operator.get(f"/settlements/{live.sid}"))
    expected = earnings(20, 1000, 1000)
    assert settlement["operatorEarnedMicroUsdc"] == str(expected.operator_earned_micro_usdc)
    assert settlement["chargedMicroUsdc"] == str(expected.charged_micro_usdc)


async def test_a_retry_after_the_session_ended_or_the_device_was_revoked_is_a_duplicate(
    live: Live,
):
    t = live.started_at + timedelta(seconds=1)
    first = signed(live.sid, t)
    data(await post(live, first), 201)  # stored, but suppose the answer was lost
    ws = live.supplier.workspace_id
    data(await live.operator.post(f"/workspaces/{ws}/operators/{live.operator_id}/revoke"))
    assert data(await post(live, first))["duplicate"] is True
    await live.harness.clock.advance(2)
    data(await live.operator.post(f"/sessions/{live.sid}/end"))
    before = live.harness.snapshot()
    assert data(await post(live, first))["duplicate"] is True
    assert live.harness.snapshot() == before
    # a different sample for that second, or a new one, is still refused
    await refused(live, signed(live.sid, t, lat=4.7111), 409, "INVALID_STATE")
    await refused(live, signed(live.sid, t + timedelta(seconds=1)), 409, "INVALID_STATE")


async def test_the_uploader_holds_early_samples_until_the_stub_accepts_them(live: Live, tmp_path):
    """Signed before the device key was registered, and by a clock 5 s ahead: both paid."""
    clock = live.harness.clock
    newcomer = KeySigner(Secret("0x" + "66" * 32))
    key = await live.supplier.mint_key(["sessions:operate", "sessions:read"])
    client = AsyncLuxxonClient(
        API, api_key=Secret(str(key["plaintext"])), transport=live.harness.transport
    )
    early = signed(live.sid, live.started_at + timedelta(seconds=1), signer=newcomer)
    ahead = signed(live.sid, clock.now() + timedelta(seconds=5))
    backoff = Backoff(initial=1.0, maximum=1.0, jitter=0)
    with Spool(tmp_path / "spool.db") as spool:
        spool.append(live.sid, early)
        spool.append(live.sid, ahead)
        async with client, Uploader(spool, client, backoff=backoff, clock=clock) as up:
            await wait_for(lambda: up.counters.held >= 1, 5, "a hold", interval=0.01)
            data(
                await register_device(
                    live.operator, live.supplier, newcomer, label="late", issued_at=clock.now()
                ),
                201,
            )
            for _ in range(10):
                if spool.stats(live.sid).pending == 0:
                    break
                await clock.advance(1.0)
                await up.drain(timeout=0.2, session_id=live.sid)
            assert up.counters.held >= 2 and up.counters.rejected == 0
        assert [r.state for r in spool.samples(live.sid)] == [SampleState.DELIVERED] * 2
    assert len(stored(live)) == 2
