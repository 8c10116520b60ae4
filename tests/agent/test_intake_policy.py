"""Which offered sessions the link takes: coverage, minimum rate, maximum duration."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

from luxxon_agent.agent.config import AgentConfig
from luxxon_agent.agent.operator import OperatorRunner
from luxxon_agent.agent.statefile import StateFile
from luxxon_agent.agent.workspace import ApiHealth, WorkspaceLink
from luxxon_agent.clock import FakeClock
from luxxon_agent.models import Session, SessionState


class FakeClient:
    def __init__(self) -> None:
        self.accepted: list[str] = []

    async def accept(self, session_id: str, workspace_id: str | None = None) -> Session:
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


def _link(tmp_path: Path, policy: dict[str, object]) -> tuple[WorkspaceLink, list[str]]:
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
    runner.status.reason = None  # healthy
    taken: list[str] = []

    def serve(op: OperatorRunner, link: WorkspaceLink, session: Session) -> asyncio.Task[None]:
        taken.append(session.id)
        return asyncio.ensure_future(asyncio.sleep(0))

    link = WorkspaceLink(
        FakeClient(), [runner], config, StateFile(tmp_path / "s.json"), clock, ApiHealth(), serve
    )
    link.workspace_id = "ws_op"
    return link, taken


async def test_auto_accept_rules(tmp_path: Path) -> None:
    link, taken = _link(tmp_path, {"min_rate_micro_usdc": 50, "max_duration_seconds": 900})
    for refused in (
        _session("far", lat=10.1),  # ~11 km away, coverage 1 km
        _session("cheap", rate=49),
        _session("long", duration=901),
        _session("over", SessionState.ENDED),
    ):
        await link._consider(refused)
    assert taken == [] and link.client.accepted == []  # type: ignore[attr-defined]
    await link._consider(_session("good"))
    assert taken == ["good"] and link.client.accepted == ["good"]  # type: ignore[attr-defined]
    assert link.operators[0].session_id == "good"
    await link._consider(_session("second"))  # the only operator is busy now
    assert taken == ["good"]


async def test_disabled_policy_still_serves_assigned(tmp_path: Path) -> None:
    link, taken = _link(tmp_path, {"enabled": False})
    await link._consider(_session("offered"))
    assert taken == []
    # accepted by a person (luxxon sessions accept): the agent starts and serves it
    await link._consider(_session("accepted", SessionState.ASSIGNED, lat=10.1))
    assert taken == ["accepted"]
