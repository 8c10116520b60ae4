"""Which offered sessions the link takes: coverage, minimum rate, maximum duration."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest

from luxxon_agent.agent.config import AgentConfig
from luxxon_agent.agent.context import ApiHealth
from luxxon_agent.agent.operator import OperatorRunner
from luxxon_agent.agent.statefile import StateFile
from luxxon_agent.agent.status import Availability
from luxxon_agent.agent.workspace import SessionAssigned, WorkspaceLink
from luxxon_agent.clock import FakeClock
from luxxon_agent.models import Session, SessionState
from luxxon_agent.position import Fix, SourceKind


class FakeClient:
    def __init__(self) -> None:
        self.accepted: list[str] = []

    async def accept(
        self, session_id: str, workspace_id: str | None = None, *, operator_id: str | None = None
    ) -> Session:
        self.accepted.append(session_id)
        return _session(session_id, SessionState.ASSIGNED)


def _session(
    sid: str,
    state: SessionState = SessionState.REQUESTED,
    *,
    lat: float = 10.0,
    rate: int = 100,
    duration: int = 600,
) -> Session:
    return Session(
        id=sid, consumer_workspace_id="ws_c", operator_workspace_id="ws_op", state=state,
        max_duration_seconds=duration, rate_per_second_micro_usdc=rate,
        hold_micro_usdc=rate * duration, created_at=datetime(2026, 1, 1, tzinfo=UTC),
        requested_lat=lat, requested_lng=20.0,
    )  # fmt: skip


def _link(
    tmp_path: Path, policy: dict[str, object]
) -> tuple[WorkspaceLink, asyncio.Queue[SessionAssigned]]:
    config = AgentConfig.model_validate(
        {
            "agent": {"state_dir": str(tmp_path)},
            "operators": [{
                "label": "cam", "position": "fixed://?lat=10&lng=20", "video": "testsrc://",
                "coverage": {"lat": 10, "lng": 20, "radius_m": 1000}, "auto_accept": policy,
            }],
        }
    )  # fmt: skip
    clock = FakeClock()
    runner = OperatorRunner(config.operators[0], config, clock)
    runner.latest.update(
        Fix(time=clock.now(), lat=10.0, lng=20.0, accuracy_m=3.0, source=SourceKind.FIXED)
    )
    assignments: asyncio.Queue[SessionAssigned] = asyncio.Queue()
    link = WorkspaceLink(
        FakeClient(),  # type: ignore[arg-type]
        [runner],
        config,
        StateFile(tmp_path / "s.json"),
        clock,
        ApiHealth(clock),
        assignments,
    )
    link.workspace_id = "ws_op"
    link.assess_health()
    assert link.view("cam").availability is Availability.ONLINE  # a fresh fix: healthy
    return link, assignments


def _taken(assignments: asyncio.Queue[SessionAssigned]) -> list[str]:
    """The sessions handed to the supervisor so far."""
    taken = []
    while not assignments.empty():
        event = assignments.get_nowait()
        assert event.runner.label == "cam"
        taken.append(event.session.id)
    return taken


async def test_auto_accept_rules(tmp_path: Path) -> None:
    link, assignments = _link(tmp_path, {"min_rate_micro_usdc": 50, "max_duration_seconds": 900})
    for refused in (
        _session("far", lat=10.1),  # ~11 km away, coverage 1 km
        _session("cheap", rate=49),
        _session("long", duration=901),
        _session("over", SessionState.ENDED),
    ):
        await link._consider(refused)
    assert _taken(assignments) == [] and link.client.accepted == []  # type: ignore[attr-defined]
    await link._consider(_session("good"))
    assert _taken(assignments) == ["good"]
    assert link.client.accepted == ["good"]  # type: ignore[attr-defined]
    assert (
        link.view("cam").session_id == "good" and link.view("cam").availability is Availability.BUSY
    )
    await link._consider(_session("second"))  # the only operator is busy now
    assert _taken(assignments) == []
    link.release("cam")
    assert link.view("cam").session_id is None


async def test_disabled_policy_still_serves_assigned(tmp_path: Path) -> None:
    link, assignments = _link(tmp_path, {"enabled": False})
    await link._consider(_session("offered"))
    assert _taken(assignments) == []
    # accepted by a person (luxxon sessions accept): the agent starts and serves it
    await link._consider(_session("accepted", SessionState.ASSIGNED, lat=10.1))
    assert _taken(assignments) == ["accepted"]


class HangingClient(FakeClient):
    """An accept that never answers (the API stalls; the agent is stopped meanwhile)."""

    async def accept(
        self, session_id: str, workspace_id: str | None = None, *, operator_id: str | None = None
    ) -> Session:
        self.accepted.append(session_id)
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


class BuggyClient(FakeClient):
    async def accept(
        self, session_id: str, workspace_id: str | None = None, *, operator_id: str | None = None
    ) -> Session:
        raise KeyError("a bug")


async def test_a_cancelled_or_crashed_accept_leaves_the_operator_free(tmp_path: Path) -> None:
    link, assignments = _link(tmp_path, {})
    link.client = HangingClient()  # type: ignore[assignment]
    task = asyncio.create_task(link._consider(_session("stalled")))
    while not link.client.accepted:  # type: ignore[attr-defined]
        await asyncio.sleep(0)
    assert link.view("cam").availability is Availability.BUSY  # claimed while the accept is out
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert (
        link.view("cam").availability is Availability.ONLINE and link.view("cam").session_id is None
    )

    link.client = BuggyClient()  # type: ignore[assignment]
    with pytest.raises(KeyError):
        await link._consider(_session("buggy"))
    assert link.view("cam").availability is Availability.ONLINE
    assert _taken(assignments) == []
