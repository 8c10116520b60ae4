"""The session state machine, dispatch, cancel-all, the expiry sweep, metering and settlement."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest

from luxxon_agent.meter import earnings
from tests.stub.conftest import BASE, Actor, Harness, data, error


async def _setup(harness: Harness) -> tuple[Any, httpx.AsyncClient, Any, httpx.AsyncClient]:
    supplier, operator = await harness.supplier()
    consumer, requester = await harness.consumer()
    return supplier, operator, consumer, requester


async def _workspace(harness: Harness, client: httpx.AsyncClient, workspace_id: str) -> Any:
    return data(await client.get(f"/workspaces/{workspace_id}"))


async def test_full_lifecycle_meters_settles_and_credits_the_operator(harness: Harness) -> None:
    supplier, operator, consumer, requester = await _setup(harness)
    session = await harness.requested(requester)
    assert session["state"] == "REQUESTED"
    assert session["operatorWorkspaceId"] == supplier.workspace_id
    assert session["ratePerSecondMicroUsdc"] == "1000" and session["holdMicroUsdc"] == "600000"
    sid = session["id"]
    # the dispatched supplier sees it in its intake
    intake = data(await operator.get("/sessions", params={"state": "REQUESTED"}))
    assert [s["id"] for s in intake] == [sid]

    response = await operator.post(f"/sessions/{sid}/accept")
    assert response.headers["X-Lx-Consistency-Token"]
    assert data(response)["state"] == "ASSIGNED"
    ws = await _workspace(harness, operator, supplier.workspace_id)
    assert ws["availabilityState"] == "BUSY"

    started = data(await operator.post(f"/sessions/{sid}/start"))
    assert started["session"]["state"] == "LIVE"
    assert started["whipUrl"].startswith("http://stub.test/whip/")
    assert started["session"]["whipUrl"] == started["whipUrl"]
    # the consumer sees the whepUrl, never the whipUrl
    seen = data(await requester.get(f"/sessions/{sid}"))
    assert "whipUrl" not in seen and seen["whepUrl"] == started["whepUrl"]
    await harness.clock.advance(125.4)
    token = data(await operator.get(f"/sessions/{sid}/producer-token"))
    assert token == {"videoBackendRef": started["videoBackendRef"], "whipUrl": started["whipUrl"]}
    error(await operator.get(f"/sessions/{sid}/frame"), 404, "FRAME_NOT_AVAILABLE")

    ended = data(await operator.post(f"/sessions/{sid}/end"))
    expected = earnings(125, 1000, 1000)
    assert ended["state"] == "ENDED"
    assert (ended["cleanSeconds"], ended["failedSeconds"]) == (125, 0)
    assert ended["chargedMicroUsdc"] == str(expected.charged_micro_usdc)
    assert ended["settlementTxHash"].startswith("0x") and len(ended["settlementTxHash"]) == 66
    assert harness.video.closed == [started["videoBackendRef"]]
    ws = await _workspace(harness, operator, supplier.workspace_id)
    assert ws["availabilityState"] == "ONLINE"

    settlement = data(await requester.get(f"/settlements/{sid}"))
    assert settlement["state"] == "CONFIRMED"
    assert settlement["txHash"] == ended["settlementTxHash"]
    assert settlement["operatorEarnedMicroUsdc"] == str(expected.operator_earned_micro_usdc)
    assert settlement["feeMicroUsdc"] == str(expected.fee_micro_usdc)
    wallet = data(await operator.get("/wallet"))
    assert wallet["balanceMicroUsdc"] == "112500"
    events = data(await operator.get("/wallet/events"))
    assert [(e["kind"], e["sessionId"], e["amountMicroUsdc"]) for e in events] == [
        ("SETTLEMENT_CREDIT", sid, "112500")
    ]


async def test_meter_subtracts_disconnect_windows_and_caps_at_max_duration(
    harness: Harness,
) -> None:
    _, requester, started = await harness.live(duration=100)
    sid = started["session"]["id"]
    t0 = harness.clock.now()
    windows = [(t0 + timedelta(seconds=10), t0 + timedelta(seconds=20))]
    harness.video.disconnect_windows = lambda ref: windows  # type: ignore[method-assign]
    await harness.clock.advance(300)  # past maxDurationSeconds: billed only up to 100 s
    ended = data(await requester.post(f"/sessions/{sid}/end"))
    assert (ended["cleanSeconds"], ended["failedSeconds"]) == (90, 10)
    assert ended["chargedMicroUsdc"] == "90000"


async def test_live_page_meter_matches_what_end_bills(harness: Harness) -> None:
    """The session page's running meter and /end run one function, with the same cap."""
    _, requester, started = await harness.live(duration=100)
    sid = started["session"]["id"]
    t0 = harness.clock.now()
    windows = [(t0 + timedelta(seconds=30), t0 + timedelta(seconds=35))]
    harness.video.disconnect_windows = lambda ref: windows  # type: ignore[method-assign]
    await harness.clock.advance(250)
    page = httpx.AsyncClient(transport=harness.transport, base_url=BASE, headers=requester.headers)
    async with page:
        running = data(await page.get(f"/sessions/{sid}/live.json"))["meter"]
        ended = data(await requester.post(f"/sessions/{sid}/end"))
        final = data(await page.get(f"/sessions/{sid}/live.json"))["meter"]
    assert running["elapsedSeconds"] == 100  # capped at maxDurationSeconds, not 250
    assert (running["cleanSeconds"], running["failedSeconds"]) == (95, 5)
    assert (ended["cleanSeconds"], ended["failedSeconds"]) == (95, 5)
    assert running["chargedMicroUsdc"] == ended["chargedMicroUsdc"] == "95000"
    assert final["cleanSeconds"] == 95 and final["elapsedSeconds"] == 100


async def test_settlement_is_not_ready_before_the_end(harness: Harness) -> None:
    _, operator, _, requester = await _setup(harness)
    sid = (await harness.requested(requester))["id"]
    assert data(await requester.get(f"/settlements/{sid}")) == {
        "sessionId": sid,
        "state": "NOT_READY",
    }


async def test_dispatch_picks_the_longest_idle_covering_supplier(harness: Harness) -> None:
    first, first_op = await harness.supplier("first")
    await harness.clock.advance(1)
    second, second_op = await harness.supplier("second")
    await harness.supplier("far-away", coverage=(48.85, 2.35, 10_000))
    _, requester = await harness.consumer()
    one = await harness.requested(requester)
    two = await harness.requested(requester)
    three = await harness.requested(requester)
    # longest idle first; an offer counts as work, so the next goes to the other one
    assert [s["operatorWorkspaceId"] for s in (one, two, three)] == [
        first.workspace_id,
        second.workspace_id,
        first.workspace_id,
    ]
    # the other supplier cannot see, accept or cancel an offer made to the first
    before = harness.snapshot()
    error(await second_op.get(f"/sessions/{one['id']}"), 404, "SESSION_NOT_FOUND")
    error(await second_op.post(f"/sessions/{one['id']}/accept"), 404, "SESSION_NOT_FOUND")
    error(await second_op.delete(f"/sessions/{one['id']}"), 404, "SESSION_NOT_FOUND")
    assert harness.snapshot() == before


async def test_no_covering_supplier_is_503_no_coverage(harness: Harness) -> None:
    await harness.supplier(coverage=(48.85, 2.35, 1_000))
    _, requester = await harness.consumer()
    session = await harness.requested(requester, dispatch=False)
    before = harness.snapshot()
    error(await requester.post(f"/sessions/{session['id']}/dispatch"), 503, "NO_COVERAGE")
    assert harness.snapshot() == before


async def test_another_workspaces_session_is_not_found_and_untouched(harness: Harness) -> None:
    _, _, started = await harness.live()
    sid = started["session"]["id"]
    _, stranger = await harness.supplier("stranger")
    _, other_consumer = await harness.consumer("other-consumer")
    before = harness.snapshot()
    for client in (stranger, other_consumer):
        for method, path in (
            ("GET", f"/sessions/{sid}"),
            ("POST", f"/sessions/{sid}/end"),
            ("DELETE", f"/sessions/{sid}"),
            ("GET", f"/settlements/{sid}"),
        ):
            body = error(await client.request(method, path), 404, "SESSION_NOT_FOUND")
            # the same answer as for an id that never existed
            assert body["message"] == "no such session"
    error(await stranger.get(f"/sessions/{sid}/producer-token"), 404, "SESSION_NOT_FOUND")
    error(await stranger.post(f"/sessions/{sid}/start"), 404, "SESSION_NOT_FOUND")
    error(await stranger.get("/sessions/ses_doesnotexist"), 404, "SESSION_NOT_FOUND")
    assert harness.snapshot() == before
    for client in (stranger, other_consumer):
        assert data(await client.get("/sessions")) == []


async def test_consumer_cannot_act_as_operator(harness: Harness) -> None:
    _, operator, _, requester = await _setup(harness)
    sid = (await harness.requested(requester))["id"]
    before = harness.snapshot()
    error(await requester.post(f"/sessions/{sid}/accept"), 403, "NOT_AUTHORIZED")
    assert harness.snapshot() == before


# ---- every illegal transition: 409 INVALID_STATE and nothing changed -------------------


async def _session_in(
    harness: Harness, state: str, operator: httpx.AsyncClient, requester: httpx.AsyncClient
) -> str:
    sid = (await harness.requested(requester, duration=60))["id"]
    if state == "REQUESTED":
        return sid
    if state == "EXPIRED":
        await harness.clock.advance(60)
        assert await harness.stub.sweep_once() == [sid]
        return sid
    if state == "CANCELLED":
        data(await requester.delete(f"/sessions/{sid}"))
        return sid
    data(await operator.post(f"/sessions/{sid}/accept"))
    if state == "ASSIGNED":
        return sid
    data(await operator.post(f"/sessions/{sid}/start"))
    if state == "LIVE":
        return sid
    data(await operator.post(f"/sessions/{sid}/end"))
    return sid


ILLEGAL = [
    ("REQUESTED", "start"),
    ("REQUESTED", "end"),
    ("REQUESTED", "producer-token"),
    ("ASSIGNED", "accept"),
    ("ASSIGNED", "dispatch"),
    ("ASSIGNED", "end"),
    ("ASSIGNED", "producer-token"),
    ("LIVE", "accept"),
    ("LIVE", "dispatch"),
    ("LIVE", "start"),
    ("LIVE", "cancel"),
    ("ENDED", "accept"),
    ("ENDED", "dispatch"),
    ("ENDED", "start"),
    ("ENDED", "end"),
    ("ENDED", "cancel"),
    ("ENDED", "producer-token"),
    ("CANCELLED", "accept"),
    ("CANCELLED", "dispatch"),
    ("CANCELLED", "start"),
    ("CANCELLED", "end"),
    ("CANCELLED", "cancel"),
    ("EXPIRED", "accept"),
    ("EXPIRED", "dispatch"),
    ("EXPIRED", "start"),
    ("EXPIRED", "end"),
    ("EXPIRED", "cancel"),
]


@pytest.mark.parametrize(("state", "action"), ILLEGAL)
async def test_illegal_transition_is_invalid_state_and_changes_nothing(
    harness: Harness, state: str, action: str
) -> None:
    _, operator, _, requester = await _setup(harness)
    sid = await _session_in(harness, state, operator, requester)
    assert data(await requester.get(f"/sessions/{sid}"))["state"] == state
    calls = {
        "accept": lambda: operator.post(f"/sessions/{sid}/accept"),
        "start": lambda: operator.post(f"/sessions/{sid}/start"),
        "end": lambda: operator.post(f"/sessions/{sid}/end"),
        "cancel": lambda: operator.delete(f"/sessions/{sid}"),
        "producer-token": lambda: operator.get(f"/sessions/{sid}/producer-token"),
        "dispatch": lambda: requester.post(f"/sessions/{sid}/dispatch"),
    }
    closed = list(harness.video.closed)
    before = harness.snapshot()
    body = error(await calls[action](), 409, "INVALID_STATE")
    assert state in body["message"]
    assert harness.snapshot() == before
    assert harness.video.closed == closed


# ---- release rules, cancel-all, expiry ----------------------------------------------------


async def test_fleet_workspace_stays_busy_until_its_last_session_ends(harness: Harness) -> None:
    supplier, operator, _, requester = await _setup(harness)
    one = (await harness.requested(requester))["id"]
    two = (await harness.requested(requester))["id"]
    for sid in (one, two):
        data(await operator.post(f"/sessions/{sid}/accept"))
    data(await operator.post(f"/sessions/{one}/start"))
    data(await requester.delete(f"/sessions/{two}"))  # consumer cancels the ASSIGNED one
    assert (await _workspace(harness, operator, supplier.workspace_id))[
        "availabilityState"
    ] == "BUSY"
    data(await operator.post(f"/sessions/{one}/end"))
    assert (await _workspace(harness, operator, supplier.workspace_id))[
        "availabilityState"
    ] == "ONLINE"


async def test_cancel_all_cancels_assigned_oldest_first_and_leaves_live_alone(
    harness: Harness,
) -> None:
    supplier, operator, _, requester = await _setup(harness)
    ids = []
    for _ in range(3):
        ids.append((await harness.requested(requester))["id"])
        await harness.clock.advance(1)
    live, older, newer = ids
    for sid in (newer, older, live):  # accept order differs from creation order
        data(await operator.post(f"/sessions/{sid}/accept"))
    started = data(await operator.post(f"/sessions/{live}/start"))
    result = data(await operator.post("/sessions/cancel-all-assignments"))
    assert result == {"count": 2, "cancelled": [older, newer]}
    states = {sid: data(await operator.get(f"/sessions/{sid}"))["state"] for sid in ids}
    assert states == {live: "LIVE", older: "CANCELLED", newer: "CANCELLED"}
    assert (await _workspace(harness, operator, supplier.workspace_id))[
        "availabilityState"
    ] == "ONLINE"
    assert started["videoBackendRef"] not in harness.video.closed
    assert len(harness.video.closed) == 2
    again = data(await operator.post("/sessions/cancel-all-assignments"))
    assert again == {"count": 0, "cancelled": []}


async def test_expiry_sweep_at_created_plus_max_duration(harness: Harness) -> None:
    supplier, operator, _, requester = await _setup(harness)
    assigned = (await harness.requested(requester, duration=60))["id"]
    requested = (await harness.requested(requester, duration=120))["id"]
    data(await operator.post(f"/sessions/{assigned}/accept"))
    await harness.clock.advance(59.9)
    assert await harness.stub.sweep_once() == []
    await harness.clock.advance(0.1)
    assert await harness.stub.sweep_once() == [assigned]
    assert data(await operator.get(f"/sessions/{assigned}"))["state"] == "EXPIRED"
    assert len(harness.video.closed) == 1
    assert (await _workspace(harness, operator, supplier.workspace_id))[
        "availabilityState"
    ] == "ONLINE"
    await harness.clock.advance(60)
    assert await harness.stub.sweep_once() == [requested]


async def test_background_sweeper_runs_on_the_injected_clock(harness: Harness) -> None:
    _, operator, _, requester = await _setup(harness)
    sid = (await harness.requested(requester, duration=30))["id"]
    harness.stub.start()
    try:
        await harness.clock.advance(31)  # wakes the sweeper's sleep
        await harness.clock.advance(1)
        assert data(await requester.get(f"/sessions/{sid}"))["state"] == "EXPIRED"
    finally:
        await harness.stub.stop()
        await harness.stub.stop()  # safe twice


# ---- workspaces: availability and presence --------------------------------------------------


async def test_going_online_needs_full_coverage_and_supplier_role(harness: Harness) -> None:
    supplier, operator = await harness.supplier()
    data(
        await operator.patch(
            f"/workspaces/{supplier.workspace_id}", json={"availabilityState": "OFFLINE"}
        )
    )

    async def online_without_radius(slug: str, role: str) -> tuple[Actor, dict[str, Any]]:
        """A new logged-in workspace asks to go ONLINE with no radius: its 400 body."""
        actor = harness.actor()
        await actor.create_workspace(slug, [role])
        await actor.login()
        before = harness.snapshot()
        body = error(
            await actor.http.patch(
                f"/workspaces/{actor.workspace_id}",
                json={"availabilityState": "ONLINE", "coverageLat": 1, "coverageLng": 2},
            ),
            400,
            "INVALID_INPUT",
        )
        assert harness.snapshot() == before
        return actor, body

    _, body = await online_without_radius("viewer", "CONSUMER")
    assert "SUPPLIER" in body["message"]
    fresh, body = await online_without_radius("fresh", "SUPPLIER")
    before = harness.snapshot()
    assert body["message"] == "availabilityState: going ONLINE needs coverageRadiusMeters"
    error(
        await fresh.http.patch(
            f"/workspaces/{fresh.workspace_id}", json={"availabilityState": "BUSY"}
        ),
        400,
        "INVALID_INPUT",
    )
    assert harness.snapshot() == before


async def test_heartbeat_sequence_is_monotone(harness: Harness) -> None:
    supplier, operator = await harness.supplier()
    path = f"/workspaces/{supplier.workspace_id}/location"
    beat = {"lat": 4.711, "lng": -74.072, "accuracyMeters": 4, "sequence": 5}
    await harness.clock.advance(2)
    ws = data(await operator.post(path, json=beat))
    assert ws["lastSeenAt"] == "2026-05-13T08:00:02.000Z"
    before = harness.snapshot()
    error(await operator.post(path, json=beat), 409, "CONFLICT")  # replay
    error(await operator.post(path, json=beat | {"sequence": 4}), 409, "CONFLICT")
    assert harness.snapshot() == before
    data(await operator.post(path, json=beat | {"sequence": 6}))


async def test_accept_while_offline_is_invalid_state(harness: Harness) -> None:
    supplier, operator, _, requester = await _setup(harness)
    sid = (await harness.requested(requester))["id"]
    data(
        await operator.patch(
            f"/workspaces/{supplier.workspace_id}", json={"availabilityState": "OFFLINE"}
        )
    )
    before = harness.snapshot()
    error(await operator.post(f"/sessions/{sid}/accept"), 409, "INVALID_STATE")
    assert harness.snapshot() == before


# ---- input errors ---------------------------------------------------------------------------


async def test_malformed_json_is_invalid_input_and_changes_nothing(harness: Harness) -> None:
    supplier, operator, _, requester = await _setup(harness)
    before = harness.snapshot()
    response = await requester.post(
        "/sessions", content=b'{"lat": 4.7,', headers={"Content-Type": "application/json"}
    )
    assert error(response, 400, "INVALID_INPUT")["message"] == "malformed JSON body"
    response = await operator.patch(
        f"/workspaces/{supplier.workspace_id}",
        content=b"not json",
        headers={"Content-Type": "application/json"},
    )
    error(response, 400, "INVALID_INPUT")
    assert harness.snapshot() == before


async def test_validation_errors_name_the_field_in_one_line(harness: Harness) -> None:
    _, requester = await harness.consumer()
    before = harness.snapshot()
    body = error(
        await requester.post("/sessions", json={"lat": 95, "lng": 0, "maxDurationSeconds": 60}),
        400,
        "INVALID_INPUT",
    )
    assert body["message"].startswith("lat: ") and "\n" not in body["message"]
    body = error(
        await requester.post(
            "/sessions", json={"lat": 1, "lng": 0, "maxDurationSeconds": 60, "x": 1}
        ),
        400,
        "INVALID_INPUT",
    )
    assert body["message"].startswith("x: ")
    error(await requester.get("/nope"), 404, "NOT_FOUND")
    assert harness.snapshot() == before


async def test_openapi_and_public_endpoints(harness: Harness) -> None:
    client = harness.client()
    spec = (await client.get("/docs-json")).json()
    for path in (
        "/api/v1/sessions/cancel-all-assignments",
        "/api/v1/sessions/{session_id}/producer-token",
        "/api/v1/workspaces/{workspace_id}/location",
        "/api/v1/auth/wallet/login",
        "/api/v1/settlements/{session_id}",
    ):
        assert path in spec["paths"]
    assert data(await client.get("/health"))["status"] == "ok"
    config = data(await client.get("/config"))
    assert config["chainId"] == 8453 and config["feeBps"] == 1000 and config["meter"] == "wallclock"
