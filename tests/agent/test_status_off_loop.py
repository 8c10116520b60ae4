"""Status assembly never touches SQLite: the spool's lock may be held by a slow fsync."""

from __future__ import annotations

import asyncio
import threading
from datetime import datetime
from pathlib import Path

from luxxon_agent.agent.config import AgentConfig, OnSigterm
from luxxon_agent.agent.context import ApiHealth, ServerFacts, SessionContext, SessionPolicy
from luxxon_agent.agent.operator import OperatorRunner
from luxxon_agent.agent.provision import new_private_key
from luxxon_agent.agent.session import SessionRun
from luxxon_agent.agent.statefile import StateFile
from luxxon_agent.api import AsyncLuxxonClient
from luxxon_agent.clock import FakeClock
from luxxon_agent.eip712 import KeySigner
from luxxon_agent.models import Session, SessionState, TelemetrySample
from luxxon_agent.telemetry import Spool


def _session(started_at: datetime) -> Session:
    return Session(
        id="ses_lock", consumer_workspace_id="ws_c", operator_workspace_id="ws_op",
        state=SessionState.LIVE, max_duration_seconds=60, rate_per_second_micro_usdc=100,
        hold_micro_usdc=6000, created_at=started_at, started_at=started_at,
        requested_lat=10.0, requested_lng=20.0,
    )  # fmt: skip


async def test_snapshot_reads_cached_counts_while_the_spool_is_locked(tmp_path: Path) -> None:
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
    health = ApiHealth(clock)
    # never called here: the run reads only its spool
    async with AsyncLuxxonClient("http://127.0.0.1:9", api_key="lx_unused") as client:
        context = SessionContext(
            client=client,
            clock=clock,
            state=StateFile(tmp_path / "s.json"),
            server=ServerFacts(client, health),
            api_health=health,
            policy=SessionPolicy(poll_seconds=1.0, on_sigterm=OnSigterm.END),
            workspace_id="ws_op",
        )
        runner = OperatorRunner(config.operators[0], config, clock)
        with Spool(tmp_path / "telemetry.sqlite3") as spool:
            sample = TelemetrySample.model_validate(
                {
                    "capturedAt": clock.now().isoformat(), "point": {"lat": 10.0, "lng": 20.0},
                    "accuracyMeters": 3.0, "source": "fixed", "signature": "0x" + "2" * 130,
                }
            )  # fmt: skip
            spool.append("ses_lock", sample)
            signer = KeySigner(new_private_key())
            run = SessionRun(runner, context, _session(clock.now()), asyncio.Event(), spool, signer)
            await run._refresh_telemetry()
            assert run.snapshot().telemetry.spooled == 1

            # the sampler's append holds this lock through its fsync (seconds on an SD card)
            release = threading.Event()
            locked = threading.Event()

            def hold() -> None:
                with spool._lock:
                    locked.set()
                    release.wait(10)

            holder = threading.Thread(target=hold)
            holder.start()
            locked.wait(5)
            figures: list[int] = []
            reader = threading.Thread(
                target=lambda: figures.append(run.snapshot().telemetry.pending)
            )
            reader.start()
            reader.join(2.0)
            blocked = reader.is_alive()
            release.set()
            holder.join()
            reader.join()
            assert not blocked, "snapshot() waited on the spool's lock"
            assert figures == [1]
