"""One agent, one API key, N operators, against the real stub (a child process).

Every part is real: the stub over HTTP with its WHIP ingest, aiortc publishers
(testsrc 160x120), sim:// GPS, telemetry signed by each operator's own device
key and checked by the stub's meter through signature recovery.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from luxxon_agent.agent.fleet_demo import FLEET_LAT, FLEET_LNG, Fleet, FleetOptions
from luxxon_agent.eip712 import KeySigner
from luxxon_agent.errors import ApiError
from luxxon_agent.models import AvailabilityState, Session, SessionState
from luxxon_agent.secret import Secret
from luxxon_agent.telemetry import TelemetryPayload, sign_sample

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
    assert all(row["lastSeenAt"] for row in rows)  # each operator's own heartbeat
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
