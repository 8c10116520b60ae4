"""The agent's test bench: a real stub child process, real accounts, the real agent process."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from luxxon_agent.agent.config import AgentConfig
from luxxon_agent.agent.localstub import LocalStub
from luxxon_agent.agent.provision import Account, create_account, new_private_key
from luxxon_agent.agent.status import StatusEndpointError, fetch_status
from luxxon_agent.api import AsyncLuxxonClient
from luxxon_agent.models import CreateSessionRequest, Role, Session, SessionState
from luxxon_agent.secret import Secret

LAT, LNG = 4.711, -74.072
VIDEO = "testsrc://?size=320x240&fps=10"
AGENT_COMMAND = (sys.executable, "-m", "luxxon_agent.cli.agent")
"""`luxxon-agent` through its real entry point, with this interpreter."""


def one_camera_config(state_dir: Path) -> AgentConfig:
    """An agent config of one operator, "cam", at a fixed point (10, 20) covering 1 km."""
    return AgentConfig.model_validate(
        {
            "agent": {"state_dir": str(state_dir)},
            "operators": [{
                "label": "cam", "position": "fixed://?lat=10&lng=20", "video": "testsrc://",
                "coverage": {"lat": 10, "lng": 20, "radius_m": 1000},
            }],
        }
    )  # fmt: skip


def live_session(session_id: str, started_at: datetime) -> Session:
    """A LIVE 60 s session at (10, 20), as the API returns it."""
    return Session(
        id=session_id, consumer_workspace_id="ws_c", operator_workspace_id="ws_op",
        state=SessionState.LIVE, max_duration_seconds=60, rate_per_second_micro_usdc=100,
        hold_micro_usdc=6000, created_at=started_at, started_at=started_at,
        requested_lat=10.0, requested_lng=20.0,
    )  # fmt: skip


@dataclass(frozen=True)
class Area:
    """Where one test's operators cover and its consumer asks: its own part of the map."""

    lat: float
    lng: float


_areas = itertools.count()


@pytest.fixture
def area() -> Area:
    """A point ~5.5 km from every other test's, beyond each 500 m coverage.

    The stub is shared by the tests, and its dispatch offers a session to any
    ONLINE workspace covering the point: a test's session must not go to the
    workspace of an earlier test (one that crashed on purpose stays ONLINE).
    """
    return Area(LAT + 0.05 * next(_areas), LNG)


OPERATOR_DISPATCH = os.environ.get("LUXXON_TEST_OPERATOR_DISPATCH") == "1"
"""These tests are today's behaviour, so their stub runs without per-operator dispatch (what
production has); LUXXON_TEST_OPERATOR_DISPATCH=1 runs them all with it (tests/fleet always does)."""


async def _started_stub(root: Path) -> LocalStub:
    server = LocalStub(
        db=root / "stub.sqlite3",
        data_dir=root / "stub",
        meter="telemetry",
        env=os.environ,
        operator_dispatch=OPERATOR_DISPATCH,
    )
    await server.start()
    return server


@pytest_asyncio.fixture(scope="package", loop_scope="package")
async def stub(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[LocalStub]:
    """One stub for the tests that leave it running (each with its own accounts and `area`)."""
    server = await _started_stub(tmp_path_factory.mktemp("shared-stub"))
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
async def own_stub(tmp_path: Path) -> AsyncIterator[LocalStub]:
    """A stub of this test's own, for a test that stops and restarts it."""
    server = await _started_stub(tmp_path)
    try:
        yield server
    finally:
        await server.stop()


async def operator_account(
    stub: LocalStub, slug: str, label: str, tmp: Path, device: Secret | None = None
) -> Account:
    """A SUPPLIER workspace with an API key file, and a device key registered for `label`.

    The device key file is `<tmp>/<slug>.device-key` (pass `device` to share one key).
    """
    from luxxon_agent.agent.device_registration import register_device
    from luxxon_agent.files import write_atomic

    account = await create_account(stub.base_url, slug, Role.SUPPLIER)
    device = device or new_private_key()
    assert await register_device(stub.base_url, account, device, label=label)
    write_atomic(tmp / f"{slug}.device-key", device.reveal().encode())
    assert account.api_key is not None
    write_atomic(tmp / f"{slug}.api-key", account.api_key.reveal().encode())
    return account


def operator_table(
    label: str, slug: str, tmp: Path, area: Area, position: str | None = None
) -> str:
    sim = f"sim://?lat={area.lat}&lng={area.lng}&radius_m=10&speed_mps=1"
    return f"""
[[operators]]
label = "{label}"
device_kind = "LAPTOP"
position = "{position or sim}"
video = "{VIDEO}"
coverage = {{ lat = {area.lat}, lng = {area.lng}, radius_m = 500 }}
api_key_file = "{tmp / f"{slug}.api-key"}"
"""


def write_config(
    tmp: Path,
    stub: LocalStub,
    operators: str,
    *,
    device_slug: str,
    on_sigterm: str = "end",
    status_port: int,
) -> Path:
    path = tmp / "agent.toml"
    path.write_text(
        f"""
[api]
base_url = "{stub.base_url}"
timeout_seconds = 5

[agent]
state_dir = "{tmp / "agent-state"}"
poll_seconds = 0.5
heartbeat_seconds = 1
ice_loopback = true
on_sigterm = "{on_sigterm}"
shutdown_timeout_seconds = 15
device_key_file = "{tmp / f"{device_slug}.device-key"}"

[status]
listen = "127.0.0.1:{status_port}"
"""
        + operators
    )
    return path


class AgentProcess:
    """`luxxon-agent run` as a child process, its log in a file."""

    def __init__(self, config: Path, log: Path, env: dict[str, str] | None = None) -> None:
        self.config = config
        self.log = log
        self.env = env or {}
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        env = {**os.environ, **self.env}
        env.pop("LUXXON_API_KEY", None)
        with self.log.open("ab") as log:
            self.proc = await asyncio.create_subprocess_exec(
                *AGENT_COMMAND, "run", "--config", str(self.config),
                "--log-format", "json",
                stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log, env=env,
                start_new_session=True,
            )  # fmt: skip

    async def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        await self.proc.wait()

    async def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM and wait; SIGKILL (and fail) if it hangs."""
        assert self.proc is not None
        if self.proc.returncode is not None:
            return self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(timeout):
                return await self.proc.wait()
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()
            raise AssertionError(
                f"agent ignored SIGTERM for {timeout} s; log: {self.tail()}"
            ) from None

    def tail(self, lines: int = 30) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def log_records(self) -> list[dict[str, Any]]:
        records = []
        for line in self.log.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                records.append(json.loads(line))
        return records


class Agents:
    """The agent processes a test starts; the fixture kills any still running at its end."""

    def __init__(self) -> None:
        self.started: list[AgentProcess] = []

    async def start(
        self, config: Path, log: Path, env: dict[str, str] | None = None
    ) -> AgentProcess:
        agent = AgentProcess(config, log, env)
        self.started.append(agent)
        await agent.start()
        return agent


@pytest.fixture
async def agents() -> AsyncIterator[Agents]:
    fleet = Agents()
    yield fleet
    for agent in fleet.started:
        print(f"--- {agent.log.name} (last lines) ---\n{agent.tail(40)}")  # shown on failure
        if agent.proc is not None and agent.proc.returncode is None:
            agent.proc.kill()
            await agent.proc.wait()


async def wait_until(
    check: Callable[[], Any], timeout: float, what: str, every: float = 0.25
) -> Any:
    """Await `check()` (sync or async) until truthy; fail naming `what` after `timeout`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(every)


async def agent_status(port: int) -> dict[str, Any] | None:
    try:
        return json.loads(await fetch_status(f"127.0.0.1:{port}", timeout=2))
    except StatusEndpointError:  # not up yet, or restarting: the caller waits
        return None


async def operator_online(port: int, label: str) -> bool:
    status = await agent_status(port)
    if status is None:
        return False
    return any(o["label"] == label and o["availability"] == "ONLINE" for o in status["operators"])


async def request_session(consumer: AsyncLuxxonClient, seconds: int, area: Area) -> Session:
    session = await consumer.create_session(
        CreateSessionRequest(lat=area.lat, lng=area.lng, max_duration_seconds=seconds)
    )
    return await consumer.dispatch(session.id)


async def telemetry_delivered(port: int, label: str) -> int:
    """How many samples of its session the operator has delivered (0 while unknown)."""
    status = await agent_status(port)
    if status is None:
        return 0
    op = next(o for o in status["operators"] if o["label"] == label)
    return int(op["telemetry"]["delivered"])


async def wait_delivered(port: int, label: str, count: int, timeout: float) -> None:
    async def enough() -> bool:
        return await telemetry_delivered(port, label) >= count

    await wait_until(enough, timeout, f"{label} to deliver {count} telemetry sample(s)")


async def wait_state(
    client: AsyncLuxxonClient, session_id: str, states: set[SessionState], timeout: float
) -> Session:
    async def check() -> Session | None:
        session = await client.get_session(session_id)
        return session if session.state in states else None

    return await wait_until(check, timeout, f"session {session_id} in {states}")


async def wait_frame(client: AsyncLuxxonClient, session_id: str, timeout: float) -> bytes:
    from luxxon_agent.errors import ApiError

    async def check() -> bytes | None:
        try:
            return await client.frame(session_id)
        except ApiError as exc:
            if exc.code != "FRAME_NOT_AVAILABLE":
                raise
            return None

    return await wait_until(check, timeout, f"a video frame of {session_id}", every=0.5)
