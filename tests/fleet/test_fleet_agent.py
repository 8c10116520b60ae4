"""One agent, one API key, N operators, against the real stub (a child process).

Every part is real: the stub over HTTP with its WHIP ingest, aiortc publishers
(testsrc 160x120), sim:// GPS, telemetry signed by each operator's own device
key and checked by the stub's meter through signature recovery.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from luxxon_agent.agent.config import AgentConfig
from luxxon_agent.agent.fleet_demo import FLEET_LAT, FLEET_LNG, Fleet, FleetOptions
from luxxon_agent.agent.supervisor import Supervisor
from luxxon_agent.api import RetryPolicy
from luxxon_agent.eip712 import KeySigner
from luxxon_agent.errors import ApiError
from luxxon_agent.models import AvailabilityState, Session, SessionState, UpdateOperatorRequest
from luxxon_agent.secret import Secret
from luxxon_agent.telemetry import TelemetryPayload, sign_sample
from tests.conftest import free_port
from tests.support import serve, wait_for

LIVE_TIMEOUT_S = 45.0
LUXXON = [sys.executable, "-c", "from luxxon_agent.cli.luxxon import main; main()"]


def _live(session: Session) -> bool:
    return session.state is SessionState.LIVE


def _over(session: Session) -> bool:
    return session.state.is_terminal


def _served_by(fleet: Fleet) -> dict[str, str]:
    """Server operator id -> the label of the agent's operator that is it."""
    assert fleet.supervisor is not None
    return {
        op.operator_id: op.label for op in fleet.supervisor.status().operators if op.operator_id
    }


def _device_signer(fleet: Fleet, label: str) -> KeySigner:
    return KeySigner(Secret((fleet.root / "keys" / label).read_text().strip()))


async def _luxxon(fleet: Fleet, home: Path, *args: str) -> tuple[int, str, str]:
    """`luxxon ARGS` in a process of its own, with the fleet's API key (not on argv)."""
    assert fleet.operator is not None and fleet.operator.api_key is not None
    env = {k: v for k, v in os.environ.items() if not k.startswith("LUXXON_")}
    env.update(
        HOME=str(home),
        XDG_CONFIG_HOME=str(home / "config"),
        XDG_DATA_HOME=str(home / "data"),
        PYTHON_KEYRING_BACKEND="keyring.backends.fail.Keyring",
        LUXXON_BASE_URL=fleet.base_url,
        LUXXON_API_KEY=fleet.operator.api_key.reveal(),
    )
    process = await asyncio.create_subprocess_exec(
        *LUXXON,
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(60):
        out, err = await process.communicate()
    assert fleet.operator.api_key.reveal() not in (out + err).decode()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def _luxxon_json(fleet: Fleet, home: Path, *args: str) -> Any:
    code, out, err = await _luxxon(fleet, home, "--json", *args)
    assert code == 0, err
    return json.loads(out)


@contextlib.asynccontextmanager
async def _agent(fleet: Fleet) -> AsyncIterator[Supervisor]:
    """The agent of `fleet.config_data` (as the test changed it), in this event loop."""
    assert fleet.operator is not None and fleet.operator.api_key is not None
    supervisor = Supervisor(
        AgentConfig.model_validate(fleet.config_data),
        env={"LUXXON_API_KEY": fleet.operator.api_key.reveal()},
    )
    fleet.supervisor = supervisor
    task = asyncio.create_task(supervisor.serve(), name="test-agent")
    try:
        yield supervisor
    finally:
        supervisor.request_exit()
        async with asyncio.timeout(30):
            await task


class OperatorListOutage:
    """A loopback HTTP proxy in front of the stub that answers 503 (as a load balancer
    would) to the first `failures` GETs of a workspace's operator list, forwarding the rest."""

    HOP_BY_HOP = frozenset(
        {"host", "content-length", "transfer-encoding", "connection", "content-encoding"}
    )

    def __init__(self, upstream: str, failures: int) -> None:
        self.upstream = upstream
        self.failures = failures
        self.refused = 0
        self._http = httpx.AsyncClient(base_url=upstream, timeout=30.0)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        response = await self._answer(Request(scope, receive))
        await response(scope, receive, send)

    async def _answer(self, request: Request) -> Response:
        path = request.url.path
        if request.method == "GET" and path.endswith("/operators") and self.refused < self.failures:
            self.refused += 1
            return PlainTextResponse("upstream unavailable", status_code=503)
        upstream = await self._http.request(
            request.method,
            path + (f"?{request.url.query}" if request.url.query else ""),
            headers={k: v for k, v in request.headers.items() if k not in self.HOP_BY_HOP},
            content=await request.body(),
        )
        headers = {k: v for k, v in upstream.headers.items() if k not in self.HOP_BY_HOP}
        return Response(upstream.content, status_code=upstream.status_code, headers=headers)

    async def aclose(self) -> None:
        await self._http.aclose()


async def test_a_failed_operator_list_at_connect_is_retried_not_fallen_back_from(
    tmp_path: Path,
) -> None:
    options = FleetOptions(operators=2, seconds=6, run_agent=False)
    async with Fleet(options, tmp_path) as fleet:
        assert fleet.supplier is not None
        # one failed list_operators call: every attempt of the client's retries refused
        failures = RetryPolicy().attempts
        outage = OperatorListOutage(fleet.base_url.removesuffix("/api/v1"), failures)
        port = free_port()
        fleet.config_data["api"]["base_url"] = f"http://127.0.0.1:{port}/api/v1"
        try:
            async with serve(outage, port), _agent(fleet) as supervisor:

                def per_operator_online() -> bool:
                    ops = supervisor.status().operators
                    return fleet.all_online() and all(op.operator_id for op in ops)

                await fleet.wait_for(per_operator_online, 45.0, "every operator ONLINE as itself")
                assert outage.refused == failures
                served_by = _served_by(fleet)
                assert sorted(served_by.values()) == fleet.labels
                session = await fleet.request()
                assert session.operator_id in served_by
                await fleet.wait_sessions([session.id], _live, LIVE_TIMEOUT_S, "LIVE")
        finally:
            await outage.aclose()


async def test_a_session_made_out_to_an_unhealthy_operator_is_not_accepted(
    tmp_path: Path,
) -> None:
    options = FleetOptions(operators=2, seconds=8, run_agent=False)
    async with Fleet(options, tmp_path) as fleet:
        assert fleet.supplier is not None and fleet.operator is not None
        healthy, unplugged = fleet.labels
        fleet.config_data["operators"][1]["video"] = f"file://{tmp_path / 'unplugged.mp4'}"
        async with _agent(fleet) as supervisor:

            def judged() -> bool:
                ops = {op.label: op for op in supervisor.status().operators}
                return (
                    len(ops) == 2
                    and ops[healthy].availability == "ONLINE"
                    and ops[unplugged].availability == "OFFLINE"
                    and "camera down" in (ops[unplugged].reason or "")
                    and all(op.operator_id for op in ops.values())
                )

            await fleet.wait_for(judged, 45.0, "one operator ONLINE, the other OFFLINE")
            ids = {label: op_id for op_id, label in _served_by(fleet).items()}
            workspace = fleet.operator.workspace_id
            # someone else sets the unplugged camera's operator ONLINE on the server
            table = fleet.config_data["operators"][1]["coverage"]
            await fleet.supplier.update_operator(
                workspace,
                ids[unplugged],
                UpdateOperatorRequest(
                    availability_state=AvailabilityState.ONLINE,
                    coverage_lat=table["lat"],
                    coverage_lng=table["lng"],
                    coverage_radius_meters=table["radius_m"],
                ),
            )
            sessions = [await fleet.request() for _ in range(2)]
            made_out = {s.operator_id: s.id for s in sessions}
            assert set(made_out) == {ids[healthy], ids[unplugged]}
            await fleet.wait_sessions(
                [made_out[ids[healthy]]], _live, LIVE_TIMEOUT_S, "the healthy one LIVE"
            )
            # many intake polls (0.5 s) later, the other is still only offered
            await asyncio.sleep(3)
            (offered,) = await fleet.sessions([made_out[ids[unplugged]]])
            assert offered.state is SessionState.REQUESTED, offered
            held = await fleet.supplier.get_operator(workspace, ids[unplugged])
            assert held.session_id is None
            status = {op.label: op for op in supervisor.status().operators}
            assert status[unplugged].session_id is None


async def test_a_revoke_or_a_hand_set_availability_is_noticed_on_the_next_heartbeat(
    tmp_path: Path,
) -> None:
    async with Fleet(FleetOptions(operators=2, seconds=6), tmp_path) as fleet:
        assert fleet.supplier is not None and fleet.operator is not None
        supervisor = fleet.supervisor
        assert supervisor is not None
        workspace = fleet.operator.workspace_id
        ids = {label: op_id for op_id, label in _served_by(fleet).items()}
        revoked, kept = fleet.labels
        # set OFFLINE behind the agent's back: it sends ONLINE again
        await fleet.supplier.update_operator(
            workspace,
            ids[kept],
            UpdateOperatorRequest(availability_state=AvailabilityState.OFFLINE),
        )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 15.0
        while (await fleet.supplier.get_operator(workspace, ids[kept])).availability_state is not (
            AvailabilityState.ONLINE
        ):
            assert loop.time() < deadline, "the agent never set the operator ONLINE again"
            await asyncio.sleep(0.25)
        # revoked on the server: the agent says so and stops claiming it ONLINE
        await fleet.supplier.revoke_operator(workspace, ids[revoked])

        def sees_revoke() -> bool:
            ops = {op.label: op for op in supervisor.status().operators}
            reason = ops[revoked].reason or ""
            return ops[revoked].availability == "OFFLINE" and "revoked" in reason

        await fleet.wait_for(sees_revoke, 15.0, "the agent knows the key was revoked")
        status = {op.label: op for op in supervisor.status().operators}
        assert status[revoked].operator_id is None
        assert status[kept].availability == "ONLINE"
        session = await fleet.request()
        assert session.operator_id == ids[kept]


@pytest_asyncio.fixture
async def four(tmp_path: Path) -> AsyncIterator[Fleet]:
    async with Fleet(FleetOptions(operators=4, seconds=10), tmp_path) as fleet:
        yield fleet


async def test_four_operators_serve_four_sessions_at_once_each_paid_on_its_own_key(
    four: Fleet,
) -> None:
    assert four.supplier is not None and four.operator is not None
    workspace = four.operator.workspace_id
    operators = {op.id: op for op in await four.supplier.list_operators(workspace)}
    served_by = _served_by(four)
    assert sorted(served_by.values()) == four.labels  # each runner found its own operator
    for operator_id, label in served_by.items():
        assert operators[operator_id].device_address.lower() == (
            four.device_addresses[label].lower()
        )
        assert operators[operator_id].availability_state is AvailabilityState.ONLINE

    ids = [(await four.request()).id for _ in range(4)]
    live = await four.wait_sessions(ids, _live, LIVE_TIMEOUT_S, "all four LIVE together")
    holders = [s.operator_id for s in live]
    assert None not in holders and len(set(holders)) == 4, holders
    assert set(holders) == set(served_by)
    busy = await four.supplier.list_operators(workspace)
    assert {op.id: op.session_id for op in busy} == {s.operator_id: s.id for s in live}
    assert all(op.availability_state is AvailabilityState.BUSY for op in busy)
    filtered = await four.supplier.list_sessions(operator_id=live[0].operator_id)
    assert [s.id for s in filtered] == [live[0].id]

    # the operator's own view: `luxxon operators list` and `sessions list --operator`
    home = four.root / "cli-home"
    rows = await _luxxon_json(four, home, "operators", "list", "--workspace", workspace)
    assert {row["id"]: (row["state"], row["sessionId"]) for row in rows} == {
        s.operator_id: ("BUSY", s.id) for s in live
    }

    # each operator's own heartbeat: one a second from its first fix, which on a loaded
    # machine can come after all four went LIVE (lastSeenAt is left out until then)
    async def all_seen() -> bool:
        listed = await _luxxon_json(four, home, "operators", "list", "--workspace", workspace)
        return all(row.get("lastSeenAt") for row in listed)

    await wait_for(all_seen, 15.0, "every operator's first heartbeat", interval=0.5)
    code, table, _ = await _luxxon(four, home, "operators", "list", "--workspace", workspace)
    assert code == 0 and all(s.id in table and "BUSY" in table for s in live)
    only = await _luxxon_json(
        four, home, "sessions", "list", "--operator", str(live[1].operator_id)
    )
    assert [row["id"] for row in only] == [live[1].id]

    # operator B's key cannot pay operator A's session
    first, second = live[0], live[1]
    assert first.operator_id is not None and second.operator_id is not None
    intruder = _device_signer(four, served_by[second.operator_id])
    server = await four.supplier.config()
    payload = TelemetryPayload.from_reading(
        first.id, datetime.now(UTC), FLEET_LAT, FLEET_LNG, 3.0, "gps"
    )
    with pytest.raises(ApiError) as refused:
        await four.supplier.post_telemetry(
            first.id, sign_sample(intruder, payload, server.chain_id)
        )
    assert (refused.value.status, refused.value.code) == (403, "OPERATOR_MISMATCH")

    ended = await four.wait_sessions(ids, _over, 60.0, "all four ended")
    for session in ended:
        assert session.state is SessionState.ENDED, session
        assert session.clean_seconds and session.clean_seconds >= 5, session
        settlement = await four.settlement(session.id)
        assert settlement.operator_earned_micro_usdc, settlement
    freed = await four.supplier.list_operators(workspace)
    assert all(op.availability_state is AvailabilityState.ONLINE for op in freed)
    assert all(op.session_id is None for op in freed)


async def test_an_operator_retired_mid_session_changes_only_its_own_availability(
    tmp_path: Path,
) -> None:
    async with Fleet(FleetOptions(operators=2, seconds=10), tmp_path) as fleet:
        assert fleet.supplier is not None and fleet.operator is not None
        assert fleet.supervisor is not None
        workspace = fleet.operator.workspace_id
        ids = [(await fleet.request()).id for _ in range(2)]
        live = await fleet.wait_sessions(ids, _live, LIVE_TIMEOUT_S, "both LIVE")
        retired_id, other_id = live[0].operator_id, live[1].operator_id
        assert retired_id is not None and other_id is not None and retired_id != other_id
        retired_label = _served_by(fleet)[retired_id]

        retired = await fleet.supplier.retire_operator(workspace, retired_id)
        assert retired.retired_at is not None
        assert retired.availability_state is AvailabilityState.OFFLINE
        other = await fleet.supplier.get_operator(workspace, other_id)
        assert other.availability_state is AvailabilityState.BUSY
        assert other.session_id == live[1].id

        ended = await fleet.wait_sessions(ids, _over, 60.0, "both ended")
        assert all(s.state is SessionState.ENDED and s.clean_seconds for s in ended), ended

        supervisor = fleet.supervisor

        def agent_sees_retirement() -> bool:
            ops = {op.label: op for op in supervisor.status().operators}
            reason = ops[retired_label].reason or ""
            return ops[retired_label].availability == "OFFLINE" and "retired" in reason

        await fleet.wait_for(agent_sees_retirement, 15.0, "the agent knows it was retired")
        after = {op.id: op for op in await fleet.supplier.list_operators(workspace)}
        assert after[retired_id].availability_state is AvailabilityState.OFFLINE
        assert after[other_id].availability_state is AvailabilityState.ONLINE

        # new work goes to the operator still in service
        again = await fleet.request(seconds=4)
        assert again.operator_id == other_id
        (done,) = await fleet.wait_sessions([again.id], _over, 40.0, "the next session ended")
        assert done.state is SessionState.ENDED and done.operator_id == other_id


async def test_without_per_operator_dispatch_the_agent_serves_one_session_at_a_time(
    tmp_path: Path,
) -> None:
    options = FleetOptions(operators=2, seconds=5, operator_dispatch=False)
    async with Fleet(options, tmp_path) as fleet:
        assert fleet.supplier is not None and fleet.supervisor is not None
        assert (await fleet.supplier.config()).features == []
        assert all(op.operator_id is None for op in fleet.supervisor.status().operators)
        home = fleet.root / "cli-home"
        code, out, err = await _luxxon(fleet, home, "sessions", "list", "--operator", "op_x")
        assert code != 0 and out == ""
        (line,) = err.strip().splitlines()
        assert "operatorId: this server has no per-operator dispatch" in line
        first = await fleet.request()
        assert first.operator_id is None
        (live,) = await fleet.wait_sessions([first.id], _live, LIVE_TIMEOUT_S, "first LIVE")
        assert live.operator_id is None
        # the workspace is BUSY while it serves one: nobody covers a second session
        with pytest.raises(ApiError) as busy:
            await fleet.request()
        assert busy.value.code == "NO_COVERAGE"
        await fleet.wait_sessions([first.id], _over, 40.0, "first ended")
        supervisor = fleet.supervisor
        await fleet.wait_for(
            lambda: any(op.availability == "ONLINE" for op in supervisor.status().operators),
            15.0,
            "ONLINE again",
        )
        second = await fleet.request()
        (done,) = await fleet.wait_sessions([second.id], _over, 40.0, "second ended")
        assert done.state is SessionState.ENDED and done.clean_seconds


async def test_demo_with_operators_prints_each_session_paid_on_its_own_device_key() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "from luxxon_agent.cli.agent import main; main()",
        "demo",
        "--operators",
        "2",
        "--seconds",
        "4",
        "--json",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(120):
        out, err = await process.communicate()
    assert process.returncode == 0, err.decode()[-2000:]
    result = json.loads(out)
    assert result["operators"] == 2 and result["meter"] == "telemetry"
    sessions = result["sessions"]
    assert len(sessions) == 2
    assert len({s["operatorId"] for s in sessions}) == 2
    assert len({s["deviceAddress"] for s in sessions}) == 2
    for session in sessions:
        assert session["state"] == "ENDED"
        assert session["cleanSeconds"] >= 3 and session["failedSeconds"] == 0
        assert session["operatorEarnedMicroUsdc"] > 0


async def test_a_restarted_agent_resumes_each_operators_own_session(tmp_path: Path) -> None:
    async with Fleet(FleetOptions(operators=2, seconds=14), tmp_path) as fleet:
        ids = [(await fleet.request()).id for _ in range(2)]
        live = await fleet.wait_sessions(ids, _live, LIVE_TIMEOUT_S, "both LIVE")
        before = {s.id: s.operator_id for s in live}
        await fleet.crash_and_restart_agent()
        supervisor = fleet.supervisor
        assert supervisor is not None

        def resumed() -> bool:
            ops = supervisor.status().operators
            return len(ops) == 2 and all(op.session_state == "LIVE" for op in ops)

        await fleet.wait_for(resumed, 30.0, "both sessions resumed by the new agent")
        held = {op.session_id: op.operator_id for op in supervisor.status().operators}
        assert held == before  # each operator took back its own session
        ended = await fleet.wait_sessions(ids, _over, 60.0, "both ended")
        for session in ended:
            assert session.state is SessionState.ENDED and session.operator_id == before[session.id]
            assert session.clean_seconds and session.clean_seconds >= 8, session
        await fleet.wait_for(fleet.all_online, 15.0, "both ONLINE again")
