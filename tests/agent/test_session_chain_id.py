"""Telemetry is signed for the server's chain id (GET /config), never for a made-up one."""

from __future__ import annotations

import asyncio
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace

from luxxon_agent.agent.config import AgentConfig, OnSigterm
from luxxon_agent.agent.context import (
    ApiHealth,
    ServerFacts,
    SessionContext,
    SessionPolicy,
)
from luxxon_agent.agent.operator import OperatorRunner
from luxxon_agent.agent.provision import new_private_key
from luxxon_agent.agent.session import SessionRun
from luxxon_agent.agent.statefile import StateFile
from luxxon_agent.clock import FakeClock
from luxxon_agent.eip712 import KeySigner
from luxxon_agent.errors import NetworkError
from luxxon_agent.models import MeterMode, ServerConfig, Session, SessionState
from luxxon_agent.position import Fix, SourceKind
from luxxon_agent.telemetry import Spool, TickOutcome, recover_signer

CHAIN_ID = 84532
"""Not the stub's default, so a sample signed for any other chain fails the check."""


class ConfigClient:
    """GET /config that fails first (the API away), then answers."""

    def __init__(self) -> None:
        self.calls = 0

    async def config(self) -> ServerConfig:
        self.calls += 1
        if self.calls == 1:
            raise NetworkError("connection refused")
        return ServerConfig(
            chain_id=CHAIN_ID, settlement_contract="0x" + "1" * 40, usdc_contract="0x" + "2" * 40,
            fee_bps=1000, meter=MeterMode.TELEMETRY, telemetry_max_future_skew_ms=2000,
            telemetry_freshness_seconds=2.0,
        )  # fmt: skip


def _session(started_at: datetime) -> Session:
    return Session(
        id="ses_chain", consumer_workspace_id="ws_c", operator_workspace_id="ws_op",
        state=SessionState.LIVE, max_duration_seconds=60, rate_per_second_micro_usdc=100,
        hold_micro_usdc=6000, created_at=started_at, started_at=started_at,
        requested_lat=10.0, requested_lng=20.0,
    )  # fmt: skip


async def test_samples_wait_for_and_are_signed_with_the_servers_chain_id(tmp_path: Path) -> None:
    config = AgentConfig.model_validate(
        {
            "agent": {"state_dir": str(tmp_path)},
            "operators": [{
                "label": "cam", "position": "fixed://?lat=10&lng=20", "video": "testsrc://",
                "coverage": {"lat": 10, "lng": 20, "radius_m": 1000},
            }],
        }
    )  # fmt: skip
    clock = FakeClock()
    runner = OperatorRunner(config.operators[0], config, clock)
    client = ConfigClient()
    health = ApiHealth(clock)
    server = ServerFacts(client, health)
    context = SessionContext(
        client=client,  # type: ignore[arg-type]
        clock=clock,
        state=StateFile(tmp_path / "s.json"),
        server=server,
        api_health=health,
        policy=SessionPolicy(poll_seconds=1.0, on_sigterm=OnSigterm.END),
        workspace_id="ws_op",
    )
    signer = KeySigner(new_private_key())
    with Spool(tmp_path / "telemetry.sqlite3") as spool:
        run = SessionRun(runner, context, _session(clock.now()), asyncio.Event(), spool, signer)
        run.uploader = SimpleNamespace(notify=lambda: None)  # type: ignore[assignment]
        try:
            await run._mind_sampling()  # GET /config fails: no sampler, nothing signed
            assert run.sampler is None and client.calls == 1
            assert health.last_error is not None
            await run._mind_sampling()  # the next poll asks again and starts sampling
            assert run.sampler is not None and client.calls == 2
            assert await server.chain_id() == CHAIN_ID and client.calls == 2  # kept per link

            now = clock.now()
            runner.latest.update(
                Fix(time=now, lat=10.0, lng=20.0, accuracy_m=3.0, source=SourceKind.FIXED)
            )
            assert await run.sampler.sample_at(now) is TickOutcome.SAMPLED
        finally:
            run.uploader = None
            await run._teardown()
        [spooled] = spool.samples("ses_chain")
    sample = spooled.sample()
    assert recover_signer("ses_chain", sample, CHAIN_ID) == signer.address
    assert recover_signer("ses_chain", sample, 0) != signer.address
