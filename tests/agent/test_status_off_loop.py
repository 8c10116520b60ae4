"""Status assembly never touches SQLite: the spool's lock may be held by a slow fsync."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from luxxon_agent.agent.config import OnSigterm
from luxxon_agent.agent.context import ApiHealth, ServerFacts, SessionContext, SessionPolicy
from luxxon_agent.agent.operator import OperatorRunner
from luxxon_agent.agent.provision import new_private_key
from luxxon_agent.agent.session import SessionRun
from luxxon_agent.agent.statefile import StateFile
from luxxon_agent.api import AsyncLuxxonClient
from luxxon_agent.clock import FakeClock
from luxxon_agent.eip712 import KeySigner
from luxxon_agent.models import TelemetrySample
from luxxon_agent.telemetry import Spool

from .conftest import live_session, one_camera_config


async def test_snapshot_reads_cached_counts_while_the_spool_is_locked(tmp_path: Path) -> None:
    config = one_camera_config(tmp_path)
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
            run = SessionRun(
                runner,
                context,
                live_session("ses_lock", clock.now()),
                asyncio.Event(),
                spool,
                signer,
            )
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
