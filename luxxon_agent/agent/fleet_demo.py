"""A fleet on loopback: one workspace, one API key, N operators, N sessions at once.

`luxxon-agent demo --operators N` and the fleet tests use it:

1. the stub as a child process (`LocalStub`; per-operator dispatch on unless told off);
2. an operator workspace (wallet, SIWE, one API key) with N device keys, each
   registered as an operator (the wallet-signed delegation), and a consumer;
3. the real agent (`Supervisor`) with N `[[operators]]` tables, each with its
   own device key, `sim://` position and `testsrc://` video;
4. the consumer requests and dispatches sessions; each operator accepts,
   publishes and signs its own telemetry; the meter pays each on its own key.

`Fleet` is the running set-up (an async context manager); `run_fleet_demo`
drives it once end to end and summarises every session.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from luxxon_agent.agent.config import AgentConfig
from luxxon_agent.agent.localstub import LocalStub
from luxxon_agent.agent.provision import Account, create_account, new_private_key
from luxxon_agent.agent.status import Availability
from luxxon_agent.errors import LuxxonError
from luxxon_agent.files import write_atomic
from luxxon_agent.models import CreateSessionRequest, DeviceKind, Role, Session, Settlement
from luxxon_agent.secret import Secret

if TYPE_CHECKING:
    from luxxon_agent.agent.status import OperatorStatus
    from luxxon_agent.agent.supervisor import Supervisor
    from luxxon_agent.api import AsyncLuxxonClient

logger = logging.getLogger(__name__)

FLEET_LAT, FLEET_LNG = 4.711, -74.072
"""Bogotá: the contract's example point; every operator's coverage holds it."""
ONLINE_TIMEOUT_S = 45.0
POLL_S = 0.25


class FleetError(LuxxonError):
    """The fleet did not come up or a session did not get where it should."""


@dataclass(frozen=True)
class FleetOptions:
    operators: int = 4
    seconds: int = 20
    meter: str = "telemetry"
    video: str = "testsrc://?size=160x120&fps=10"
    operator_dispatch: bool = True
    """Start the stub with per-operator dispatch (off: `--no-operator-dispatch`)."""
    status_listen: str = "127.0.0.1:0"
    name: str = "fleet"
    """Workspace slugs and operator labels start with it (several fleets on one stub)."""
    run_agent: bool = True
    """False: provision only (`config_data`, `api_key`); the caller runs the agent, e.g.
    in a process of its own to measure it (benchmarks/bench_fleet.py)."""


@dataclass(frozen=True)
class FleetSession:
    """One session's outcome, as `demo --operators N --json` prints it."""

    session: Session
    settlement: Settlement
    device_address: str | None
    """The device key of the session's operator: the one whose samples were paid."""

    def to_json(self) -> dict[str, Any]:
        return {
            "sessionId": self.session.id,
            "operatorId": self.session.operator_id,
            "deviceAddress": self.device_address,
            "state": self.session.state.value,
            "cleanSeconds": self.session.clean_seconds,
            "failedSeconds": self.session.failed_seconds,
            "chargedMicroUsdc": self.session.charged_micro_usdc,
            "operatorEarnedMicroUsdc": self.settlement.operator_earned_micro_usdc,
            "settlement": self.settlement.state.value,
        }


class Fleet:
    """The stub, the accounts, N registered device keys and the agent, running."""

    def __init__(self, options: FleetOptions, root: Path, stub: LocalStub | None = None) -> None:
        """`stub`: a running stub to share (left running); default: a stub of its own."""
        if options.operators < 1:
            raise ValueError("a fleet needs at least one operator")
        self.options = options
        self.root = root
        self._owns_stub = stub is None
        self.stub = stub or LocalStub(
            db=root / "stub.sqlite3",
            data_dir=root / "stub",
            meter=options.meter,
            env=os.environ,
            operator_dispatch=options.operator_dispatch,
        )
        self.labels = [f"cam-{index + 1}" for index in range(options.operators)]
        if options.name != "fleet":
            self.labels = [f"{options.name}-{label}" for label in self.labels]
        self.device_addresses: dict[str, str] = {}
        """Operator label -> the address of its device key."""
        self.operator: Account | None = None
        self.supervisor: Supervisor | None = None
        self.consumer: AsyncLuxxonClient | None = None
        self.supplier: AsyncLuxxonClient | None = None
        """The operator workspace's API key, for looking at its operators."""
        self._agent_task: asyncio.Task[int] | None = None
        self.config_data: dict[str, Any] = {}
        """The agent's configuration (AgentConfig's shape), once provisioned."""

    async def __aenter__(self) -> Fleet:
        if self._owns_stub:
            await self.stub.start()
        try:
            await self._start()
        except BaseException:
            await self._stop()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._stop()

    @property
    def base_url(self) -> str:
        return self.stub.base_url

    async def _start(self) -> None:
        await self._provision()
        if self.options.run_agent:
            await self._start_agent()

    async def _provision(self) -> None:
        """The accounts, the device keys registered as operators, `config_data`."""
        from luxxon_agent.api import AsyncLuxxonClient

        base = self.stub.base_url
        operator, consumer = await asyncio.gather(
            create_account(base, f"{self.options.name}-operator", Role.SUPPLIER),
            create_account(base, f"{self.options.name}-consumer", Role.CONSUMER),
        )
        assert operator.api_key is not None
        self.operator = operator
        key_files = await asyncio.gather(*(self._device_key(label) for label in self.labels))
        self.consumer = AsyncLuxxonClient(base, session_cookie=consumer.session_cookie)
        self.supplier = AsyncLuxxonClient(base, api_key=operator.api_key)
        self.config_data = {
            "api": {"base_url": base},
            "agent": {
                "state_dir": str(self.root / "agent"),
                "ice_loopback": True,
                "poll_seconds": 0.5,
                "heartbeat_seconds": 1.0,
                "on_sigterm": "end",
                "shutdown_timeout_seconds": 15,
            },
            "status": {"listen": self.options.status_listen},
            "operators": [
                self._operator_table(index, label, key_file)
                for index, (label, key_file) in enumerate(zip(self.labels, key_files, strict=True))
            ],
        }

    async def _start_agent(self) -> None:
        self._spawn_agent()
        await self.wait_for(self.all_online, ONLINE_TIMEOUT_S, "every operator ONLINE")

    def _spawn_agent(self) -> None:
        from luxxon_agent.agent.supervisor import Supervisor

        assert self.operator is not None and self.operator.api_key is not None
        config = AgentConfig.model_validate(self.config_data)
        env = {"LUXXON_API_KEY": self.operator.api_key.reveal()}
        self.supervisor = Supervisor(config, env=env)
        self._agent_task = asyncio.create_task(self.supervisor.serve(), name="fleet-agent")

    async def crash_and_restart_agent(self) -> None:
        """The agent cancelled where it stands (no shutdown path: sessions stay LIVE on the
        server, the state file as it was), then a new one on the same state directory."""
        assert self._agent_task is not None
        self._agent_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._agent_task
        self._spawn_agent()

    def all_online(self) -> bool:
        """Every operator ONLINE, per the agent (none listed before its startup ran)."""
        ops = self._statuses()
        return len(ops) == len(self.labels) and all(
            op.availability is Availability.ONLINE for op in ops
        )

    def _operator_table(self, index: int, label: str, key_file: Path) -> dict[str, Any]:
        # each camera a few metres apart, every coverage holding the fleet's point
        lat = FLEET_LAT + 0.0001 * index
        return {
            "label": label,
            "device_kind": "FIXED",
            "device_key_file": str(key_file),
            "position": f"sim://?lat={lat}&lng={FLEET_LNG}&radius_m=5&speed_mps=0.5",
            "video": self.options.video,
            "coverage": {"lat": lat, "lng": FLEET_LNG, "radius_m": 1000},
            "auto_accept": {"enabled": True, "max_duration_seconds": 3600},
        }

    async def _device_key(self, label: str) -> Path:
        """A fresh device key for `label`, registered as an operator of the workspace."""
        from luxxon_agent.agent import device_registration
        from luxxon_agent.eip712 import KeySigner

        assert self.operator is not None
        key: Secret = new_private_key()
        registered = await device_registration.register_device(
            self.stub.base_url, self.operator, key, label=label, kind=DeviceKind.FIXED
        )
        if not registered:
            raise FleetError("the server has no operator registration")
        path = self.root / "keys" / label
        write_atomic(path, key.reveal().encode())
        self.device_addresses[label] = KeySigner(key).address
        return path

    async def _stop(self) -> None:
        if self.supervisor is not None and self._agent_task is not None:
            self.supervisor.request_exit()
            try:
                async with asyncio.timeout(30):
                    await self._agent_task
            except TimeoutError:
                self._agent_task.cancel()
        for client in (self.consumer, self.supplier):
            if client is not None:
                await client.aclose()
        if self._owns_stub:
            await self.stub.stop()

    def _statuses(self) -> list[OperatorStatus]:
        assert self.supervisor is not None
        return self.supervisor.status().operators

    async def wait_for(self, condition: Callable[[], Any], timeout: float, what: str) -> None:
        """Poll `condition` until true; FleetError after `timeout` or if the agent stopped."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not condition():
            if self._agent_task is not None and self._agent_task.done():
                await self._agent_task
                raise FleetError(f"waiting for {what}: the agent stopped")
            if loop.time() > deadline:
                raise FleetError(f"not reached within {timeout:.0f} s: {what}")
            await asyncio.sleep(POLL_S)

    async def request(self, seconds: int | None = None) -> Session:
        """A consumer session at the fleet's point, dispatched."""
        assert self.consumer is not None
        session = await self.consumer.create_session(
            CreateSessionRequest(
                lat=FLEET_LAT,
                lng=FLEET_LNG,
                max_duration_seconds=seconds or self.options.seconds,
            )
        )
        return await self.consumer.dispatch(session.id)

    async def sessions(self, ids: list[str]) -> list[Session]:
        assert self.consumer is not None
        return list(await asyncio.gather(*(self.consumer.get_session(i) for i in ids)))

    async def wait_sessions(
        self, ids: list[str], done: Callable[[Session], bool], timeout: float, what: str
    ) -> list[Session]:
        """The sessions once `done` holds for each of them (FleetError after `timeout`)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            sessions = await self.sessions(ids)
            if all(done(s) for s in sessions):
                return sessions
            if loop.time() > deadline:
                states = ", ".join(f"{s.id} {s.state.value}" for s in sessions)
                raise FleetError(f"not reached within {timeout:.0f} s: {what} ({states})")
            await asyncio.sleep(POLL_S)

    async def settlement(self, session_id: str) -> Settlement:
        """The settlement once past PENDING (bounded), else as it stands."""
        assert self.consumer is not None
        settlement = await self.consumer.settlement(session_id)
        for _ in range(50):
            if settlement.state.value in ("SUBMITTED", "CONFIRMED"):
                break
            await asyncio.sleep(0.1)
            settlement = await self.consumer.settlement(session_id)
        return settlement


async def run_fleet_demo(
    options: FleetOptions, on_step: Callable[[str], None] | None = None
) -> list[FleetSession]:
    """N sessions at once on N operators of one workspace, each to its end."""
    step = on_step or (lambda text: logger.info("%s", text))
    with tempfile.TemporaryDirectory(prefix="luxxon-fleet-") as tmp:
        step(f"starting a fleet of {options.operators} operator(s) under one API key")
        async with Fleet(options, Path(tmp)) as fleet:
            step(f"every operator ONLINE against {fleet.base_url}")
            sessions = [await fleet.request() for _ in range(options.operators)]
            ids = [s.id for s in sessions]
            step(f"{len(ids)} session(s) requested and dispatched at once")
            await fleet.wait_sessions(
                ids,
                lambda s: s.state.is_running or s.state.is_terminal,
                ONLINE_TIMEOUT_S,
                "every session LIVE",
            )
            step("every session LIVE: one operator each, telemetry on its own device key")
            ended = await fleet.wait_sessions(
                ids,
                lambda s: s.state.is_terminal,
                options.seconds + ONLINE_TIMEOUT_S + 30,
                "every session ended",
            )
            assert fleet.supplier is not None and fleet.operator is not None
            operators = await fleet.supplier.list_operators(fleet.operator.workspace_id)
            devices = {op.id: op.device_address for op in operators}
            results = [
                FleetSession(
                    s, await fleet.settlement(s.id), devices.get(s.operator_id or "", None)
                )
                for s in ended
            ]
            step("every session ended and settled")
            return results
