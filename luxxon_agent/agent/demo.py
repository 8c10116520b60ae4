"""`luxxon-agent demo`: the whole product on loopback, in well under a minute.

1. the stub as a child process on a free 127.0.0.1 port (temp DB, temp dirs);
2. an operator workspace (wallet, SIWE, API key), a device key, a consumer;
3. the real agent (the same `Supervisor` as `luxxon-agent run`) with `sim://`
   position and `testsrc://` video, ICE pinned to loopback;
4. the consumer requests and dispatches a session of `seconds`; the agent
   accepts, starts, publishes and signs telemetry, and at maxDuration drains
   the spool and ends it; the meter runs and settles;
5. the last frame the stub decoded is saved as a JPEG.

Everything lives in one temporary directory that is removed on the way out,
Ctrl-C included; the stub child dies with us.
"""

from __future__ import annotations

import asyncio
import logging
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from luxxon_agent.agent.config import AgentConfig
from luxxon_agent.agent.localstub import LocalStub
from luxxon_agent.agent.provision import Account, create_account, new_private_key
from luxxon_agent.agent.status import Availability
from luxxon_agent.errors import EXIT_INTERRUPTED, ApiError, LuxxonError
from luxxon_agent.files import write_atomic
from luxxon_agent.meter import session_seconds
from luxxon_agent.models import CreateSessionRequest, Role, Session, SessionState, Settlement
from luxxon_agent.secret import Secret
from luxxon_agent.wire import SPOOL_FILE_NAME

if TYPE_CHECKING:
    from luxxon_agent.agent.supervisor import Supervisor
    from luxxon_agent.api import AsyncLuxxonClient

logger = logging.getLogger(__name__)

DEMO_LAT, DEMO_LNG = 4.711, -74.072
"""Bogotá: the contract's example point."""
ONLINE_TIMEOUT_S = 30.0
FRAME_EVERY_S = 1.0


@dataclass(frozen=True)
class DemoOptions:
    seconds: int = 20
    meter: str = "wallclock"
    frame_path: Path = Path("luxxon-demo-frame.jpg")
    video: str = "testsrc://?size=640x360&fps=15"


@dataclass
class DemoResult:
    session: Session
    settlement: Settlement
    meter: dict[str, Any]
    frame_path: Path | None
    operator_workspace_id: str
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "session": self.session.to_wire(),
            "meter": self.meter,
            "settlement": self.settlement.to_wire(),
            "framePath": str(self.frame_path) if self.frame_path else None,
            "operatorWorkspaceId": self.operator_workspace_id,
        }


class DemoInterrupted(LuxxonError):
    exit_code = EXIT_INTERRUPTED


Step = Callable[[str], None]
Snapshot = Callable[[dict[str, Any]], None]


async def run_demo(
    options: DemoOptions,
    on_step: Step | None = None,
    on_snapshot: Snapshot | None = None,
) -> DemoResult:
    step = on_step or (lambda text: logger.info("%s", text))
    with tempfile.TemporaryDirectory(prefix="luxxon-demo-") as tmp:
        root = Path(tmp)
        stub = LocalStub(
            db=root / "stub.sqlite3", data_dir=root / "stub", meter=options.meter, env=os.environ
        )
        step(f"starting the stub on {stub.base_url} (meter: {options.meter})")
        await stub.start()
        try:
            return await _demo(options, stub, root, step, on_snapshot)
        finally:
            await stub.stop()


async def _demo(
    options: DemoOptions,
    stub: LocalStub,
    root: Path,
    step: Step,
    on_snapshot: Snapshot | None,
) -> DemoResult:
    from luxxon_agent.agent.supervisor import Supervisor
    from luxxon_agent.api import AsyncLuxxonClient

    base = stub.base_url
    operator, consumer = await asyncio.gather(
        create_account(base, "demo-operator", Role.SUPPLIER),
        create_account(base, "demo-consumer", Role.CONSUMER),
    )
    step(f"operator workspace {operator.workspace_id} (wallet {operator.wallet_address}), API key")
    step(f"consumer workspace {consumer.workspace_id}")
    device_file = root / "device-key"
    signer_key = await _device_key(base, operator)
    write_atomic(device_file, signer_key.reveal().encode())
    config = AgentConfig.model_validate(
        {
            "api": {"base_url": base},
            "agent": {
                "state_dir": str(root / "agent"),
                "ice_loopback": True,
                "poll_seconds": 0.5,
                "device_key_file": str(device_file),
                "on_sigterm": "end",
                "shutdown_timeout_seconds": 15,
            },
            "status": {"listen": "127.0.0.1:0"},
            "operators": [
                {
                    "label": "demo-cam",
                    "device_kind": "LAPTOP",
                    "position": f"sim://?lat={DEMO_LAT}&lng={DEMO_LNG}&radius_m=20&speed_mps=1",
                    "video": options.video,
                    "coverage": {"lat": DEMO_LAT, "lng": DEMO_LNG, "radius_m": 500},
                    "auto_accept": {"enabled": True, "max_duration_seconds": 3600},
                }
            ],
        }
    )
    assert operator.api_key is not None
    env = {"LUXXON_API_KEY": operator.api_key.reveal()}
    supervisor = Supervisor(config, env=env)
    agent_task = asyncio.create_task(supervisor.serve(), name="agent")
    consumer_client = AsyncLuxxonClient(base, session_cookie=consumer.session_cookie)
    try:
        async with consumer_client:
            await _wait_for(
                lambda: any(
                    op.availability is Availability.ONLINE for op in supervisor.status().operators
                ),
                agent_task,
                ONLINE_TIMEOUT_S,
                "the agent did not go ONLINE",
            )
            if supervisor.status_server is not None:
                step(f"agent ONLINE; status at {supervisor.status_server.address}")
            session = await consumer_client.create_session(
                CreateSessionRequest(
                    lat=DEMO_LAT, lng=DEMO_LNG, max_duration_seconds=options.seconds
                )
            )
            session = await consumer_client.dispatch(session.id)
            step(f"consumer requested session {session.id} ({options.seconds} s) and dispatched it")
            frame = await _follow(
                consumer_client, session.id, supervisor, agent_task, options, step, on_snapshot
            )
            ended = await consumer_client.get_session(session.id)
            settlement = await _settlement(consumer_client, session.id)
            snapshot = supervisor.snapshot()
    finally:
        supervisor.request_exit()
        try:
            async with asyncio.timeout(20):
                await agent_task
        except TimeoutError:
            agent_task.cancel()
    frame_path = None
    if frame is not None:
        try:
            write_atomic(options.frame_path, frame, mode=0o644)
        except OSError as exc:
            step(f"could not save the frame to {options.frame_path}: {exc.strerror}")
        else:
            frame_path = options.frame_path
    op_status = snapshot["operators"][0]
    meter = await _meter(options.meter, ended, op_status, config)
    step(f"session {ended.state.value}: {ended.clean_seconds} clean second(s)")
    return DemoResult(
        session=ended,
        settlement=settlement,
        meter=meter,
        frame_path=frame_path,
        operator_workspace_id=operator.workspace_id,
    )


async def _device_key(base: str, operator: Account) -> Secret:
    """A fresh device key registered for the operator; the wallet key if the server can't."""
    from luxxon_agent.agent import device_registration

    key = new_private_key()
    if await device_registration.register_device(base, operator, key, label="demo-cam"):
        return key
    logger.info("server has no operator registration: telemetry signed by the wallet")
    return operator.wallet_key


async def _follow(
    client: AsyncLuxxonClient,
    session_id: str,
    supervisor: Supervisor,
    agent_task: asyncio.Task[int],
    options: DemoOptions,
    step: Step,
    on_snapshot: Snapshot | None,
) -> bytes | None:
    """Until the session ends: dashboard updates and the latest frame, every second."""
    frame: bytes | None = None
    announced_live = False
    limit = options.seconds + ONLINE_TIMEOUT_S + 30
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while loop.time() < deadline:
        if agent_task.done():
            await agent_task  # an error in the agent surfaces here
            raise DemoInterrupted("interrupted: the agent stopped (Ctrl-C)")
        session = await client.get_session(session_id)
        if session.state is SessionState.LIVE:
            if not announced_live:
                step("session LIVE: video over WHIP, telemetry signed at 1 Hz")
                announced_live = True
            try:
                frame = await client.frame(session_id)
            except ApiError as exc:
                if exc.code != "FRAME_NOT_AVAILABLE":
                    raise
        elif session.state.is_terminal:
            return frame
        if on_snapshot is not None:
            on_snapshot(supervisor.snapshot())
        await asyncio.sleep(FRAME_EVERY_S)
    raise DemoInterrupted(f"the session did not end within {limit:.0f} s")


async def _wait_for(
    condition: Callable[[], Any], task: asyncio.Task[int], timeout: float, what: str
) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if task.done():
            await task
            raise DemoInterrupted(f"{what}: the agent stopped")
        if loop.time() > deadline:
            raise DemoInterrupted(f"{what} within {timeout:.0f} s")
        await asyncio.sleep(0.1)


async def _settlement(client: AsyncLuxxonClient, session_id: str) -> Settlement:
    """The settlement once it is past PENDING (bounded), else as it stands."""
    settlement = await client.settlement(session_id)
    for _ in range(50):
        if settlement.state.value in ("SUBMITTED", "CONFIRMED"):
            break
        await asyncio.sleep(0.1)
        settlement = await client.settlement(session_id)
    return settlement


async def _meter(
    mode: str, session: Session, op_status: dict[str, Any], config: AgentConfig
) -> dict[str, Any]:
    """The meter's figures next to what this agent's spool says it took and delivered."""
    from luxxon_agent.telemetry import Spool

    live = 0
    if session.started_at and session.ended_at:
        live = session_seconds(session.started_at, session.ended_at)
    op = config.operators[0]
    with Spool(config.agent.state_dir / op.label / SPOOL_FILE_NAME) as spool:
        stats = await asyncio.to_thread(spool.stats, session.id)
    tele = {"spooled": stats.spooled, "delivered": stats.delivered, "pending": stats.pending}
    return {
        "mode": mode,
        "liveSeconds": live,
        "cleanSeconds": session.clean_seconds,
        "failedSeconds": session.failed_seconds,
        "samplesTaken": tele["spooled"],
        "samplesDelivered": tele["delivered"],
        "samplesPending": tele["pending"],
        "framesSent": op_status["video"]["frames"],
        "videoReconnects": op_status["video"]["reconnects"],
    }
