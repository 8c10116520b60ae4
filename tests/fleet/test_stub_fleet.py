"""Per-operator dispatch in the stub (issue 13): one workspace, many operators, parallel
sessions, each metered on its own device key. A real uvicorn server on loopback, real
wallets, real EIP-712 signatures checked by recovery."""

from __future__ import annotations

import random
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from luxxon_agent.clock import FakeClock
from luxxon_agent.eip712 import KeySigner
from luxxon_agent.meter import earnings
from luxxon_agent.models import MeterMode
from luxxon_agent.secret import Secret
from luxxon_agent.stub import MintOnlyVideoBackend, StubConfig, create_app
from luxxon_agent.stub.fleet import OPERATOR_COLUMNS
from tests.conftest import free_port
from tests.stub.conftest import START, Actor, ServedHarness, data, error
from tests.support import serve
from tests.telemetry.conftest import register_device, wallet_signer
from tests.telemetry.helpers import CHAIN, signed

HERE = (4.711, -74.072)
FAR = (4.9, -74.3)  # ~32 km from HERE
OUTSIDE_COVERAGE = 1_000.0


def online_body(at: tuple[float, float] = HERE, radius: float = 5_000) -> dict[str, Any]:
    """A PATCH body going ONLINE with this coverage (an operator's or a workspace's)."""
    return {
        "availabilityState": "ONLINE",
        "coverageLat": at[0],
        "coverageLng": at[1],
        "coverageRadiusMeters": radius,
    }


@dataclass
class Fleet:
    """A SUPPLIER workspace with registered operators, a consumer, and the stub."""

    harness: ServedHarness
    supplier: Actor
    operate: httpx.AsyncClient
    """The supplier's API key (sessions:operate, sessions:read)."""
    consumer: httpx.AsyncClient
    devices: dict[str, KeySigner] = field(default_factory=dict)
    """Operator id → its device key."""
    sequences: dict[str, int] = field(default_factory=dict)

    @property
    def ws(self) -> str:
        return str(self.supplier.workspace_id)

    def path(self, operator_id: str, tail: str = "") -> str:
        return f"/workspaces/{self.ws}/operators/{operator_id}{tail}"

    def new_device(self) -> KeySigner:
        return KeySigner(Secret("0x" + (f"{len(self.devices) + 1:02x}" * 32)))

    async def register(
        self,
        label: str,
        device: KeySigner | None = None,
        lifetime: timedelta = timedelta(days=30),
    ) -> str:
        device = device or self.new_device()
        registered = data(
            await register_device(
                self.operate,
                self.supplier,
                device,
                label=label,
                issued_at=self.clock.now(),
                lifetime=lifetime,
            ),
            201,
        )
        self.devices[registered["id"]] = device
        return str(registered["id"])

    async def online(
        self, operator_id: str, at: tuple[float, float] = HERE, radius: float = 5_000
    ) -> dict[str, Any]:
        body = online_body(at, radius)
        return dict(data(await self.operate.patch(self.path(operator_id), json=body)))

    async def workspace_online(self) -> None:
        """The workspace itself ONLINE: workspace level, while no operator was set ONLINE."""
        data(await self.operate.patch(f"/workspaces/{self.ws}", json=online_body()))

    async def operator(self, operator_id: str) -> dict[str, Any]:
        return dict(data(await self.operate.get(self.path(operator_id))))

    async def workspace_state(self) -> str:
        return str(data(await self.operate.get(f"/workspaces/{self.ws}"))["availabilityState"])

    async def request(self, *, dispatch: bool = True, duration: int = 600) -> dict[str, Any]:
        body = {"lat": HERE[0], "lng": HERE[1], "maxDurationSeconds": duration}
        session = data(await self.consumer.post("/sessions", json=body), 201)
        if dispatch:
            session = data(await self.consumer.post(f"/sessions/{session['id']}/dispatch"))
        return dict(session)

    async def no_coverage(self) -> None:
        """A new session finds no free operator to dispatch to (and no workspace-level one)."""
        session = await self.request(dispatch=False)
        error(await self.consumer.post(f"/sessions/{session['id']}/dispatch"), 503, "NO_COVERAGE")

    async def accept(self, session_id: str, operator_id: str | None = None) -> httpx.Response:
        body = {} if operator_id is None else {"operatorId": operator_id}
        return await self.operate.post(f"/sessions/{session_id}/accept", json=body)

    async def live(self, session_id: str, operator_id: str | None = None) -> dict[str, Any]:
        data(await self.accept(session_id, operator_id))
        return dict(data(await self.operate.post(f"/sessions/{session_id}/start"))["session"])

    @property
    def clock(self) -> FakeClock:
        return self.harness.clock


async def _fleet(operator_dispatch: bool) -> AsyncIterator[Fleet]:
    port = free_port()
    origin = f"http://127.0.0.1:{port}"
    clock = FakeClock(START)
    config = StubConfig(
        db_path=":memory:",
        public_base_url=origin,
        clock=clock,
        rng=random.Random(13),
        meter=MeterMode.TELEMETRY,
        chain_id=CHAIN,
        operator_dispatch=operator_dispatch,
    )
    video = MintOnlyVideoBackend(origin)
    app = create_app(config, video=video)
    harness = ServedHarness(
        clock=clock, video=video, app=app, transport=httpx.ASGITransport(app=app), origin=origin
    )
    async with serve(app, port):
        try:
            supplier = harness.actor()
            await supplier.create_workspace("fleet", ["SUPPLIER"])
            await supplier.login()
            key = await supplier.mint_key(["sessions:operate", "sessions:read"])
            consumer = harness.actor()
            await consumer.create_workspace("watcher", ["CONSUMER"])
            await consumer.login()
            consumer_key = await consumer.mint_key(["sessions:request", "sessions:read"])
            yield Fleet(
                harness=harness,
                supplier=supplier,
                operate=harness.client(key["plaintext"]),
                consumer=harness.client(consumer_key["plaintext"]),
            )
        finally:
            for client in harness.clients:
                await client.aclose()
    app.state.stub.store.close()


@pytest.fixture
async def fleet() -> AsyncIterator[Fleet]:
    async for made in _fleet(operator_dispatch=True):
        yield made


@pytest.fixture
async def fleet_off() -> AsyncIterator[Fleet]:
    async for made in _fleet(operator_dispatch=False):
        yield made


async def test_config_advertises_the_capability(fleet: Fleet) -> None:
    assert data(await fleet.operate.get("/config"))["features"] == ["per-operator-dispatch"]


async def test_operators_show_update_and_their_errors(fleet: Fleet) -> None:
    op = await fleet.register("cam-1")
    listed = data(await fleet.operate.get(f"/workspaces/{fleet.ws}/operators"))
    assert [(o["id"], o["availabilityState"]) for o in listed] == [(op, "OFFLINE")]
    shown = await fleet.operator(op)
    assert shown == listed[0]
    assert "sessionId" not in shown and "lastSeenAt" not in shown and "retiredAt" not in shown

    updated = data(
        await fleet.operate.patch(fleet.path(op), json={"label": "roof-cam", "kind": "FIXED"})
    )
    assert (updated["label"], updated["kind"], updated["availabilityState"]) == (
        "roof-cam",
        "FIXED",
        "OFFLINE",
    )
    # going ONLINE needs the whole coverage triple, and the message names what is missing
    refused = error(
        await fleet.operate.patch(
            fleet.path(op), json={"availabilityState": "ONLINE", "coverageLat": HERE[0]}
        ),
        400,
        "INVALID_INPUT",
    )
    assert refused["message"] == (
        "availabilityState: going ONLINE needs coverageLng, coverageRadiusMeters"
    )
    before = fleet.harness.snapshot()
    error(
        await fleet.operate.patch(fleet.path(op), json={"availabilityState": "BUSY"}),
        400,
        "INVALID_INPUT",
    )
    error(
        await fleet.operate.patch(fleet.path(op), json={"coverageRadiusMeters": 0}),
        400,
        "INVALID_INPUT",
    )
    error(await fleet.operate.patch(fleet.path(op), json={"colour": "red"}), 400, "INVALID_INPUT")
    assert fleet.harness.snapshot() == before
    other = await fleet.register("cam-2")
    before = fleet.harness.snapshot()
    taken = error(
        await fleet.operate.patch(fleet.path(other), json={"label": "roof-cam"}), 409, "CONFLICT"
    )
    assert "label" in taken["message"]
    error(await fleet.operate.get(fleet.path("op_nope")), 404, "NOT_FOUND")
    error(await fleet.operate.patch(fleet.path("op_nope"), json={}), 404, "NOT_FOUND")
    # a read-only key may look but not change
    reader = fleet.harness.client((await fleet.supplier.mint_key(["sessions:read"]))["plaintext"])
    assert data(await reader.get(fleet.path(op)))["id"] == op
    error(await reader.patch(fleet.path(op), json={"kind": "PTZ"}), 403, "NOT_AUTHORIZED")
    # another workspace's key sees none of it
    rival = fleet.harness.actor()
    await rival.create_workspace("rival", ["SUPPLIER"])
    await rival.login()
    rival_key = fleet.harness.client(
        (await rival.mint_key(["sessions:operate", "sessions:read"]))["plaintext"]
    )
    error(await rival_key.get(fleet.path(op)), 403, "WORKSPACE_MISMATCH")
    error(await rival_key.get(f"/workspaces/{rival.workspace_id}/operators/{op}"), 404, "NOT_FOUND")
    assert fleet.harness.snapshot()["operators"] == before["operators"]

    online = await fleet.online(op)
    assert online["availabilityState"] == "ONLINE"
    assert (online["coverageLat"], online["coverageLng"], online["coverageRadiusMeters"]) == (
        *HERE,
        5_000,
    )
    assert await fleet.workspace_state() == "ONLINE"
    # the workspace's availability now follows its operators
    error(
        await fleet.operate.patch(f"/workspaces/{fleet.ws}", json={"availabilityState": "OFFLINE"}),
        409,
        "INVALID_STATE",
    )
    offline = data(await fleet.operate.patch(fleet.path(op), json={"availabilityState": "OFFLINE"}))
    assert offline["availabilityState"] == "OFFLINE"
    assert await fleet.workspace_state() == "OFFLINE"


async def test_operator_heartbeat_sequence_rules(fleet: Fleet) -> None:
    a, b = await fleet.register("cam-a"), await fleet.register("cam-b")
    beat = {"lat": HERE[0], "lng": HERE[1], "accuracyMeters": 4.0}
    await fleet.clock.advance(3)
    seen = data(await fleet.operate.post(fleet.path(a, "/location"), json={**beat, "sequence": 5}))
    assert seen["lastSeenAt"] == "2026-05-13T08:00:03.000Z"
    workspace = data(await fleet.operate.get(f"/workspaces/{fleet.ws}"))
    assert workspace["lastSeenAt"] == seen["lastSeenAt"]
    before = fleet.harness.snapshot()
    for replayed in (5, 4):
        refused = error(
            await fleet.operate.post(
                fleet.path(a, "/location"), json={**beat, "sequence": replayed}
            ),
            409,
            "CONFLICT",
        )
        assert refused["message"] == f"sequence {replayed} is not above the last accepted 5"
    error(
        await fleet.operate.post(fleet.path(a, "/location"), json={**beat, "sequence": -1}),
        400,
        "INVALID_INPUT",
    )
    assert fleet.harness.snapshot() == before
    # sequences are per operator: b starts its own
    data(await fleet.operate.post(fleet.path(b, "/location"), json={**beat, "sequence": 1}))
    data(await fleet.operate.post(fleet.path(a, "/location"), json={**beat, "sequence": 6}))
    # a sessionId must be a session this operator holds
    await fleet.online(a)
    await fleet.online(b)
    session = await fleet.request()
    holder = session["operatorId"]
    other = b if holder == a else a
    data(await fleet.accept(session["id"]))
    error(
        await fleet.operate.post(
            fleet.path(other, "/location"),
            json={**beat, "sequence": 50, "sessionId": session["id"]},
        ),
        404,
        "SESSION_NOT_FOUND",
    )
    data(
        await fleet.operate.post(
            fleet.path(holder, "/location"),
            json={**beat, "sequence": 50, "sessionId": session["id"]},
        )
    )


async def test_dispatch_picks_the_longest_idle_covering_operator(fleet: Fleet) -> None:
    far, first, second = [await fleet.register(f"cam-{i}") for i in range(3)]
    await fleet.online(far, at=FAR, radius=OUTSIDE_COVERAGE)
    await fleet.clock.advance(1)
    await fleet.online(first)
    await fleet.clock.advance(1)
    await fleet.online(second)
    # far has been idle longest, but does not cover the point
    s1 = await fleet.request()
    assert (s1["operatorId"], s1["operatorWorkspaceId"]) == (first, fleet.ws)
    # an offer counts as work: the next session goes to the other idle operator
    s2 = await fleet.request()
    assert s2["operatorId"] == second
    # a session dispatched to an operator is accepted for that operator only
    error(await fleet.accept(s1["id"], second), 409, "CONFLICT")
    accepted = data(await fleet.accept(s1["id"]))
    assert (accepted["state"], accepted["operatorId"]) == ("ASSIGNED", first)
    assert (await fleet.operator(first))["sessionId"] == s1["id"]
    assert (await fleet.operator(first))["availabilityState"] == "BUSY"
    # first is busy now: the next dispatch skips it even though it was offered work earlier
    data(await fleet.accept(s2["id"], second))
    await fleet.no_coverage()
    # the consumer sees which operator holds its session
    assert data(await fleet.consumer.get(f"/sessions/{s1['id']}"))["operatorId"] == first


async def test_accept_with_and_without_an_operator_id(fleet: Fleet) -> None:
    # dispatched at workspace level (no operator ONLINE yet), then the fleet comes up
    await fleet.workspace_online()
    sessions = [await fleet.request() for _ in range(4)]
    assert {s["operatorWorkspaceId"] for s in sessions} == {fleet.ws}
    assert all("operatorId" not in s for s in sessions)
    a, b, retired = [await fleet.register(f"cam-{i}") for i in range(3)]
    await fleet.online(a)
    await fleet.clock.advance(1)
    await fleet.online(b)
    await fleet.online(retired)
    data(await fleet.operate.post(fleet.path(retired, "/retire")))

    error(await fleet.accept(sessions[0]["id"], "op_nope"), 404, "NOT_FOUND")
    error(await fleet.accept(sessions[0]["id"], retired), 409, "OPERATOR_RETIRED")
    named = data(await fleet.accept(sessions[0]["id"], b))
    assert named["operatorId"] == b
    error(await fleet.accept(sessions[1]["id"], b), 409, "OPERATOR_BUSY")
    # without operatorId the server picks the longest-idle free operator: a
    picked = data(await fleet.accept(sessions[1]["id"]))
    assert picked["operatorId"] == a
    assert await fleet.workspace_state() == "BUSY"
    before = fleet.harness.snapshot()
    error(await fleet.accept(sessions[2]["id"]), 409, "OPERATOR_BUSY")
    assert fleet.harness.snapshot() == before
    # an OFFLINE operator takes no new work
    await fleet.operate.post(f"/sessions/{sessions[1]['id']}/start")
    data(await fleet.operate.post(f"/sessions/{sessions[1]['id']}/end"))
    data(await fleet.operate.patch(fleet.path(a), json={"availabilityState": "OFFLINE"}))
    error(await fleet.accept(sessions[2]["id"], a), 409, "OPERATOR_BUSY")
    # operatorWorkspaceId, when sent, must still be the caller's workspace
    error(
        await fleet.operate.post(
            f"/sessions/{sessions[2]['id']}/accept",
            json={"operatorWorkspaceId": "ws_other", "operatorId": a},
        ),
        403,
        "WORKSPACE_MISMATCH",
    )


async def test_four_operators_hold_four_sessions_at_once(fleet: Fleet) -> None:
    ops = [await fleet.register(f"cam-{i}") for i in range(4)]
    for op in ops:
        await fleet.online(op)
        await fleet.clock.advance(1)
    sessions = [await fleet.request() for _ in ops]
    assert [s["operatorId"] for s in sessions] == ops  # longest idle first, one each
    states = []
    for session in sessions:
        await fleet.live(session["id"])
        states.append(await fleet.workspace_state())
    assert states == ["ONLINE", "ONLINE", "ONLINE", "BUSY"]
    listed = data(await fleet.operate.get(f"/workspaces/{fleet.ws}/operators"))
    assert {o["id"]: (o["availabilityState"], o["sessionId"]) for o in listed} == {
        op: ("BUSY", s["id"]) for op, s in zip(ops, sessions, strict=True)
    }
    assert all(s["state"] == "LIVE" for s in data(await fleet.operate.get("/sessions?state=LIVE")))
    for op, session in zip(ops, sessions, strict=True):
        mine = data(await fleet.operate.get("/sessions", params={"operatorId": op}))
        assert [s["id"] for s in mine] == [session["id"]]
    assert data(await fleet.operate.get("/sessions", params={"operatorId": "op_nope"})) == []
    # one ends: its operator is free and ONLINE again, and so is the workspace
    await fleet.clock.advance(2)
    data(await fleet.operate.post(f"/sessions/{sessions[2]['id']}/end"))
    freed = await fleet.operator(ops[2])
    assert (freed["availabilityState"], freed.get("sessionId")) == ("ONLINE", None)
    assert await fleet.workspace_state() == "ONLINE"
    assert (await fleet.operator(ops[1]))["availabilityState"] == "BUSY"


async def test_a_sample_signed_by_another_operators_key_is_refused_and_not_counted(
    fleet: Fleet,
) -> None:
    a, b = await fleet.register("cam-a"), await fleet.register("cam-b")
    await fleet.online(a)
    await fleet.clock.advance(1)
    await fleet.online(b)
    session_a, session_b = await fleet.request(), await fleet.request()
    assert (session_a["operatorId"], session_b["operatorId"]) == (a, b)
    await fleet.clock.advance(0.25)
    started = await fleet.live(session_a["id"])
    await fleet.live(session_b["id"])
    sid = started["id"]
    whole = fleet.clock.now().replace(microsecond=0)
    for k in range(1, 31):
        await fleet.clock.advance(1)
        at = whole + timedelta(seconds=k)
        if 11 <= k <= 20:
            before = fleet.harness.snapshot()
            sample = signed(sid, at, signer=fleet.devices[b])
            refused = error(
                await fleet.operate.post(f"/sessions/{sid}/telemetry", json=sample.to_wire()),
                403,
                "OPERATOR_MISMATCH",
            )
            assert fleet.devices[b].address in str(refused["detail"])
            assert fleet.harness.snapshot() == before
            # b's own session takes b's samples
            mine = signed(session_b["id"], at, signer=fleet.devices[b])
            data(
                await fleet.operate.post(
                    f"/sessions/{session_b['id']}/telemetry", json=mine.to_wire()
                ),
                201,
            )
        else:
            signer = wallet_signer(fleet.supplier) if k == 30 else fleet.devices[a]
            sample = signed(sid, at, signer=signer)
            data(await fleet.operate.post(f"/sessions/{sid}/telemetry", json=sample.to_wire()), 201)
    await fleet.clock.advance(0.1)
    ended = data(await fleet.operate.post(f"/sessions/{sid}/end"))
    # b's ten seconds count for nothing; the last good sample before them stays fresh
    # (telemetryFreshnessSeconds 2) for one of them. Counted, they would make it (30, 0).
    assert (ended["cleanSeconds"], ended["failedSeconds"]) == (21, 9)
    settlement = data(await fleet.operate.get(f"/settlements/{sid}"))
    assert settlement["operatorEarnedMicroUsdc"] == str(
        earnings(21, 1000, 1000).operator_earned_micro_usdc
    )
    rows = fleet.harness.snapshot()["telemetry"]
    assert {row[0] for row in rows} == {sid, session_b["id"]}


async def test_retire_mid_session_leaves_the_other_operators_alone(fleet: Fleet) -> None:
    a, b, c = [await fleet.register(f"cam-{i}") for i in range(3)]
    for op in (a, b, c):
        await fleet.online(op)
        await fleet.clock.advance(1)
    sa, sb, sc = [await fleet.request() for _ in range(3)]
    await fleet.live(sa["id"])
    await fleet.live(sb["id"])
    data(await fleet.accept(sc["id"]))  # c holds an ASSIGNED session
    retired = data(await fleet.operate.post(fleet.path(a, "/retire")))
    assert retired["retiredAt"] is not None
    assert (retired["availabilityState"], retired["sessionId"]) == ("OFFLINE", sa["id"])
    assert data(await fleet.operate.post(fleet.path(a, "/retire"))) == retired  # idempotent
    # its LIVE session runs on, and its device key still signs for it
    assert data(await fleet.operate.get(f"/sessions/{sa['id']}"))["state"] == "LIVE"
    at = fleet.clock.now()
    sample = signed(sa["id"], at, signer=fleet.devices[a])
    data(await fleet.operate.post(f"/sessions/{sa['id']}/telemetry", json=sample.to_wire()), 201)
    # nobody else noticed
    assert (await fleet.operator(b))["sessionId"] == sb["id"]
    assert data(await fleet.operate.get(f"/sessions/{sc['id']}"))["state"] == "ASSIGNED"
    # the retired operator takes no action and no work
    beat = {"lat": HERE[0], "lng": HERE[1], "accuracyMeters": 4.0, "sequence": 1}
    error(await fleet.operate.post(fleet.path(a, "/location"), json=beat), 409, "OPERATOR_RETIRED")
    error(await fleet.operate.patch(fleet.path(a), json={"kind": "PTZ"}), 409, "OPERATOR_RETIRED")
    await fleet.clock.advance(1)
    ended = data(await fleet.operate.post(f"/sessions/{sa['id']}/end"))
    assert ended["state"] == "ENDED"
    after = await fleet.operator(a)
    assert (after["availabilityState"], after.get("sessionId")) == ("OFFLINE", None)
    assert await fleet.workspace_state() == "BUSY"  # b and c hold sessions, a is gone
    await fleet.no_coverage()
    # retiring the operator of an ASSIGNED session cancels that session, and only that one
    data(await fleet.operate.post(fleet.path(c, "/retire")))
    assert data(await fleet.operate.get(f"/sessions/{sc['id']}"))["state"] == "CANCELLED"
    assert (await fleet.operator(c)).get("sessionId") is None
    assert data(await fleet.operate.get(f"/sessions/{sb['id']}"))["state"] == "LIVE"
    assert await fleet.workspace_state() == "BUSY"


async def test_retire_hands_a_pending_offer_back_to_the_workspace(fleet: Fleet) -> None:
    a, b = await fleet.register("cam-a"), await fleet.register("cam-b")
    await fleet.online(a)
    await fleet.clock.advance(1)
    await fleet.online(b)
    offer = await fleet.request()
    assert offer["operatorId"] == a
    data(await fleet.operate.post(fleet.path(a, "/retire")))
    assert "operatorId" not in data(await fleet.operate.get(f"/sessions/{offer['id']}"))
    assert data(await fleet.accept(offer["id"]))["operatorId"] == b


async def test_cancel_all_frees_each_operator(fleet: Fleet) -> None:
    a, b, c = [await fleet.register(f"cam-{i}") for i in range(3)]
    for op in (a, b, c):
        await fleet.online(op)
        await fleet.clock.advance(1)
    sa, sb, sc = [await fleet.request() for _ in range(3)]
    data(await fleet.accept(sa["id"]))
    data(await fleet.accept(sb["id"]))
    await fleet.live(sc["id"])
    assert await fleet.workspace_state() == "BUSY"
    result = data(await fleet.operate.post("/sessions/cancel-all-assignments"))
    assert (result["count"], sorted(result["cancelled"])) == (2, sorted([sa["id"], sb["id"]]))
    for op in (a, b):
        freed = await fleet.operator(op)
        assert (freed["availabilityState"], freed.get("sessionId")) == ("ONLINE", None)
    assert (await fleet.operator(c))["sessionId"] == sc["id"]
    assert data(await fleet.operate.get(f"/sessions/{sc['id']}"))["state"] == "LIVE"
    assert await fleet.workspace_state() == "ONLINE"


async def test_expiry_frees_the_operator(fleet: Fleet) -> None:
    op = await fleet.register("cam-a")
    await fleet.online(op)
    session = await fleet.request(duration=30)
    data(await fleet.accept(session["id"]))
    await fleet.clock.advance(31)
    assert await fleet.harness.stub.sweep_once() == [session["id"]]
    freed = await fleet.operator(op)
    assert (freed["availabilityState"], freed.get("sessionId")) == ("ONLINE", None)
    assert await fleet.workspace_state() == "ONLINE"


async def test_an_expired_delegation_counts_as_offline_and_cannot_go_online(
    fleet: Fleet,
) -> None:
    short = await fleet.register("cam-short", lifetime=timedelta(seconds=60))
    other = await fleet.register("cam-other")
    await fleet.online(short)
    await fleet.online(other)
    await fleet.clock.advance(61)
    # the expired operator cannot be (re)set ONLINE, and the refusal names the expiry
    expires_at = (await fleet.operator(short))["expiresAt"]
    before = fleet.harness.snapshot()
    refused = error(
        await fleet.operate.patch(fleet.path(short), json=online_body()),
        409,
        "INVALID_STATE",
    )
    assert refused["message"].startswith("availabilityState: the operator's delegation expired")
    assert expires_at in refused["message"]
    assert fleet.harness.snapshot() == before
    # the only dispatchable operator goes OFFLINE: so does the workspace, the expired
    # one's stored ONLINE notwithstanding
    data(await fleet.operate.patch(fleet.path(other), json={"availabilityState": "OFFLINE"}))
    assert await fleet.workspace_state() == "OFFLINE"
    await fleet.no_coverage()


async def test_a_device_key_belongs_to_one_operator_of_the_workspace(fleet: Fleet) -> None:
    device = fleet.new_device()
    first = await fleet.register("cam-a", device=device)
    before = fleet.harness.snapshot()
    refused = error(
        await register_device(
            fleet.operate, fleet.supplier, device, label="cam-b", issued_at=fleet.clock.now()
        ),
        409,
        "CONFLICT",
    )
    assert "deviceAddress" in refused["message"] and refused["detail"] == first
    assert fleet.harness.snapshot() == before
    # once the first is revoked, the key may serve a new operator
    data(await fleet.operate.post(fleet.path(first, "/revoke")))
    await fleet.clock.advance(1)
    second = await fleet.register("cam-b", device=device)
    assert second != first


async def test_a_retired_operators_key_no_longer_signs_workspace_level_sessions(
    fleet: Fleet,
) -> None:
    a, b = await fleet.register("cam-a"), await fleet.register("cam-b")
    # no operator ever ONLINE: the workspace serves at workspace level
    await fleet.workspace_online()
    session = await fleet.request()
    started = await fleet.live(session["id"])
    assert "operatorId" not in started
    sid = started["id"]
    whole = fleet.clock.now().replace(microsecond=0)
    await fleet.clock.advance(2)
    data(await fleet.operate.post(fleet.path(a, "/retire")))
    await fleet.clock.advance(2)
    url = f"/sessions/{sid}/telemetry"
    # taken before the retire: still a's to sign
    early = signed(sid, whole + timedelta(seconds=1), signer=fleet.devices[a])
    data(await fleet.operate.post(url, json=early.to_wire()), 201)
    before = fleet.harness.snapshot()
    late = signed(sid, whole + timedelta(seconds=3), signer=fleet.devices[a])
    refused = error(await fleet.operate.post(url, json=late.to_wire()), 403, "DEVICE_REVOKED")
    assert "retired" in refused["message"]
    assert fleet.harness.snapshot() == before
    # the operator that was not retired signs on
    other = signed(sid, whole + timedelta(seconds=3), signer=fleet.devices[b])
    data(await fleet.operate.post(url, json=other.to_wire()), 201)


async def test_with_the_capability_off_the_stub_is_workspace_level(fleet_off: Fleet) -> None:
    fleet = fleet_off
    assert data(await fleet.operate.get("/config"))["features"] == []
    op = await fleet.register("cam-a")
    listed = data(await fleet.operate.get(f"/workspaces/{fleet.ws}/operators"))
    assert [o["id"] for o in listed] == [op]
    beat = {"lat": HERE[0], "lng": HERE[1], "accuracyMeters": 4.0, "sequence": 1}
    before = fleet.harness.snapshot()
    error(await fleet.operate.get(fleet.path(op)), 404, "NOT_FOUND")
    error(await fleet.operate.patch(fleet.path(op), json={"kind": "PTZ"}), 404, "NOT_FOUND")
    error(await fleet.operate.post(fleet.path(op, "/location"), json=beat), 404, "NOT_FOUND")
    error(await fleet.operate.post(fleet.path(op, "/retire")), 404, "NOT_FOUND")
    error(await fleet.operate.get("/sessions", params={"operatorId": op}), 400, "INVALID_INPUT")
    assert fleet.harness.snapshot() == before
    await fleet.workspace_online()
    first, second = await fleet.request(), await fleet.request()
    assert "operatorId" not in first
    error(await fleet.accept(first["id"], op), 400, "INVALID_INPUT")
    accepted = data(await fleet.accept(first["id"]))
    assert "operatorId" not in accepted
    assert await fleet.workspace_state() == "BUSY"
    data(await fleet.operate.post(f"/sessions/{first['id']}/start"))
    # a device key signs as before: any registered operator of the workspace
    sample = signed(first["id"], fleet.clock.now(), signer=fleet.devices[op])
    data(await fleet.operate.post(f"/sessions/{first['id']}/telemetry", json=sample.to_wire()), 201)
    data(await fleet.operate.post(f"/sessions/{first['id']}/end"))
    assert await fleet.workspace_state() == "ONLINE"
    assert data(await fleet.accept(second["id"]))["state"] == "ASSIGNED"


def test_an_older_database_gains_the_new_columns(tmp_path: Path) -> None:
    db = tmp_path / "stub.sqlite3"
    config = StubConfig(db_path=db, rng=random.Random(3))
    create_app(config).state.stub.store.close()
    with sqlite3.connect(db) as conn:
        conn.execute("ALTER TABLE sessions DROP COLUMN operator_id")
        for column in OPERATOR_COLUMNS:
            conn.execute(f'ALTER TABLE operators DROP COLUMN "{column}"')
    reopened = create_app(config).state.stub.store
    try:
        sessions = {row["name"] for row in reopened.all("PRAGMA table_info(sessions)")}
        operators = {row["name"] for row in reopened.all("PRAGMA table_info(operators)")}
    finally:
        reopened.close()
    assert "operator_id" in sessions
    assert set(OPERATOR_COLUMNS) <= operators
