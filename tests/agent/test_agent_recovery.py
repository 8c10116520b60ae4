"""The agent rides through SIGKILL, a stub restart and a GPS outage, and serves two at once."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from functools import reduce
from pathlib import Path

import pytest

from luxxon_agent.agent.localstub import LocalStub, free_port
from luxxon_agent.agent.provision import create_account, new_private_key
from luxxon_agent.api import AsyncLuxxonClient
from luxxon_agent.errors import ApiError
from luxxon_agent.models import AvailabilityState, Role, SessionState, UpdateWorkspaceRequest
from luxxon_agent.telemetry import Spool

from .conftest import (
    Agents,
    Area,
    agent_status,
    operator_account,
    operator_online,
    operator_table,
    request_session,
    telemetry_delivered,
    wait_delivered,
    wait_frame,
    wait_state,
    wait_until,
    write_config,
)


def spool_stats(tmp: Path, label: str, session_id: str):  # type: ignore[no-untyped-def]
    with Spool(tmp / "agent-state" / label / "telemetry.sqlite3") as spool:
        return spool.stats(session_id), spool.samples(session_id)


async def test_sigkill_mid_live_resumes_same_session_and_whip_url(
    stub: LocalStub, tmp_path: Path, agents: Agents, area: Area
) -> None:
    """SIGKILL, restart, then SIGTERM with on_sigterm = "leave", restart again: one session."""
    operator = await operator_account(stub, "op-kill", "cam-1", tmp_path)
    consumer = await create_account(stub.base_url, "consumer-kill", Role.CONSUMER)
    port = free_port()
    config = write_config(
        tmp_path, stub, operator_table("cam-1", "op-kill", tmp_path, area),
        device_slug="op-kill", status_port=port, on_sigterm="leave",
    )  # fmt: skip

    async def resumed(session_id: str) -> bool:
        status = await agent_status(port)
        if status is None:
            return False
        op = status["operators"][0]
        return op["session_id"] == session_id and op["video"]["state"] == "publishing"

    first = await agents.start(config, tmp_path / "agent-1.log")
    await wait_until(lambda: operator_online(port, "cam-1"), 30, "cam-1 ONLINE")
    assert operator.api_key is not None
    async with (
        AsyncLuxxonClient(stub.base_url, session_cookie=consumer.session_cookie) as buyer,
        AsyncLuxxonClient(stub.base_url, api_key=operator.api_key) as seller,
    ):
        session = await request_session(buyer, seconds=18, area=area)  # room for 3 agents in turn
        await wait_state(buyer, session.id, {SessionState.LIVE}, 15)
        before = await wait_frame(buyer, session.id, 15)
        whip_before = (await seller.producer_token(session.id)).whip_url
        await wait_delivered(port, "cam-1", 2, 10)  # killed with telemetry under way

        await first.kill()  # SIGKILL: no cleanup, no /end
        assert (await buyer.get_session(session.id)).state is SessionState.LIVE
        second = await agents.start(config, tmp_path / "agent-2.log")
        await wait_until(lambda: resumed(session.id), 20, "the restarted agent publishing")
        # frames resume: the stub decodes new pictures after the restart
        await wait_until(
            lambda: _new_frame(buyer, session.id, before), 15, "a new frame after restart"
        )
        assert (await seller.producer_token(session.id)).whip_url == whip_before

        # the second agent samples and delivers too before it is told to leave
        await wait_delivered(port, "cam-1", await telemetry_delivered(port, "cam-1") + 2, 10)
        assert await second.stop() == 0  # SIGTERM with on_sigterm = "leave"
        assert (await buyer.get_session(session.id)).state is SessionState.LIVE
        third = await agents.start(config, tmp_path / "agent-3.log")
        await wait_until(lambda: resumed(session.id), 20, "the third agent publishing")
        assert (await seller.producer_token(session.id)).whip_url == whip_before
        ended = await wait_state(buyer, session.id, {SessionState.ENDED}, 30)

    assert await third.stop() == 0
    stats, samples = spool_stats(tmp_path, "cam-1", session.id)
    # no telemetry second lost at /end: everything taken was delivered before it
    assert stats.pending == 0 and stats.delivered == stats.spooled == len(samples)
    assert ended.started_at is not None and ended.ended_at is not None
    live = int((ended.ended_at - ended.started_at).total_seconds())
    # the seconds the meter failed are the seconds without a sample (the restarts), no more
    assert ended.failed_seconds is not None and ended.clean_seconds is not None
    assert ended.failed_seconds <= live - len(samples) + 2, (ended, len(samples))
    gaps = [b.captured_at_ms - a.captured_at_ms for a, b in itertools.pairwise(samples)]
    assert max(gaps) <= 10_000  # each restart cost seconds, not the session
    assert ended.clean_seconds >= live - 2 * 10 - 2
    records = second.log_records() + third.log_records()
    assert sum("resuming LIVE session on its whipUrl" in r["msg"] for r in records) == 2
    assert any("left LIVE for the restart" in r["msg"] for r in second.log_records())
    assert not any("auto-accepted" in r["msg"] for r in records)


async def _new_frame(client: AsyncLuxxonClient, session_id: str, old: bytes) -> bool:
    """The stub holds a frame, and not `old` (the test pattern's clock moves)."""
    try:
        return (await client.frame(session_id)) != old
    except ApiError as exc:
        if exc.code != "FRAME_NOT_AVAILABLE":
            raise
        return False  # a restarted stub has none until the publisher is back


RESTART_SESSION_S = 32
"""The outage session: long enough for the outage, an agent restart in it, and the reconnect."""
STALL_S = 3


class _NotifyListener:
    """A NOTIFY_SOCKET for the agent: every datagram, with when it arrived."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.setblocking(False)
        self.received: list[tuple[float, str]] = []
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> _NotifyListener:
        self._task = asyncio.create_task(self._read())
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self.sock.close()

    async def _read(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            data = await loop.sock_recv(self.sock, 4096)
            self.received.append((loop.time(), data.decode()))

    def pinged_after(self, moment: float) -> bool:
        return any(t > moment and "WATCHDOG=1" in m.split("\n") for t, m in self.received)


async def test_api_outage_across_agent_restart_keeps_sampling_and_the_watchdog_fed(
    own_stub: LocalStub, tmp_path: Path, agents: Agents, area: Area
) -> None:
    """The API goes away; the agent keeps sampling and pinging the watchdog, is SIGKILLed
    and restarted mid-outage, resumes sampling at once, and delivers it all afterwards."""
    stub = own_stub  # stopped and restarted below: not the stub the other tests share
    operator = await operator_account(stub, "op-restart", "cam-1", tmp_path)
    assert operator.api_key is not None
    consumer = await create_account(stub.base_url, "consumer-restart", Role.CONSUMER)
    port = free_port()
    config = write_config(
        tmp_path, stub, operator_table("cam-1", "op-restart", tmp_path, area),
        device_slug="op-restart", status_port=port,
    )  # fmt: skip
    loop = asyncio.get_running_loop()
    async with _NotifyListener(tmp_path / "notify.sock") as notify:
        env = {
            "NOTIFY_SOCKET": str(notify.path),
            "WATCHDOG_USEC": "2000000",  # a ping each second is due
            "LUXXON_AGENT_AGENT_STALL_SECONDS": str(STALL_S),
        }
        first = await agents.start(config, tmp_path / "agent-1.log", env)
        await wait_until(lambda: operator_online(port, "cam-1"), 30, "cam-1 ONLINE")
        async with (
            AsyncLuxxonClient(stub.base_url, session_cookie=consumer.session_cookie) as buyer,
            AsyncLuxxonClient(stub.base_url, api_key=operator.api_key) as seller,
        ):
            session = await request_session(buyer, seconds=RESTART_SESSION_S, area=area)
            await wait_state(buyer, session.id, {SessionState.LIVE}, 15)
            before = await wait_frame(buyer, session.id, 15)
            whip_before = (await seller.producer_token(session.id)).whip_url
            await wait_delivered(port, "cam-1", 2, 10)
            await stub.stop()  # the API and the WHIP ingest are gone...
            outage = loop.time()
            # ...which is no stall: WATCHDOG=1 keeps coming past stall_seconds
            await wait_until(
                lambda: notify.pinged_after(outage + STALL_S + 0.5), 10, "a watchdog ping"
            )
            await first.kill()  # SIGKILL in the outage
            at_kill, _ = spool_stats(tmp_path, "cam-1", session.id)
            assert at_kill.pending >= 2  # taken in the outage, not deliverable yet
            second = await agents.start(config, tmp_path / "agent-2.log", env)
            restarted = loop.time()

            def spooling() -> bool:
                stats, _ = spool_stats(tmp_path, "cam-1", session.id)
                return stats.spooled >= at_kill.spooled + 3

            # the restarted agent never reached the API, yet it samples and pings
            await wait_until(spooling, 15, "the restarted agent sampling in the outage")
            await wait_until(
                lambda: notify.pinged_after(restarted + STALL_S + 0.5), 10, "a watchdog ping"
            )
            stub_back_ms = int(datetime.now(UTC).timestamp() * 1000)
            await stub.start()  # ...and back on the same port with the same database
            assert (await buyer.get_session(session.id)).state is SessionState.LIVE
            await wait_until(
                lambda: _new_frame(buyer, session.id, before), 20, "frames after the outage"
            )
            assert (await seller.producer_token(session.id)).whip_url == whip_before
            ended = await wait_state(buyer, session.id, {SessionState.ENDED}, 40)

    assert not any("watchdog withheld" in r["msg"] for r in first.log_records())
    assert not any("watchdog withheld" in r["msg"] for r in second.log_records())
    assert any("resuming offline" in r["msg"] for r in second.log_records())
    stats, samples = spool_stats(tmp_path, "cam-1", session.id)
    assert stats.pending == 0 and stats.delivered == stats.spooled == len(samples)
    # the second agent's samples from the outage reached the stub afterwards
    in_outage = [s for s in samples[at_kill.spooled :] if s.captured_at_ms < stub_back_ms]
    assert len(in_outage) >= 3
    # only the seconds of the agent's own restart can be missing
    assert ended.clean_seconds is not None and ended.clean_seconds >= RESTART_SESSION_S - 10
    status = await agent_status(port)
    assert status is not None and status["operators"][0]["sessions_served"] == 1
    assert await second.stop() == 0


# ---- GPS outage: NMEA over TCP that the test can silence -------------------------------------


def _nmea(body: str) -> bytes:
    checksum = reduce(lambda a, c: a ^ ord(c), body, 0)
    return f"${body}*{checksum:02X}\r\n".encode()


def _epoch(now: datetime, lat: float, lng: float) -> bytes:
    t = now.strftime("%H%M%S.") + f"{now.microsecond // 10000:02d}"
    ns, ew = ("N" if lat >= 0 else "S"), ("E" if lng >= 0 else "W")
    la = f"{int(abs(lat)):02d}{(abs(lat) % 1) * 60:07.4f}"
    lo = f"{int(abs(lng)):03d}{(abs(lng) % 1) * 60:07.4f}"
    date = now.strftime("%d%m%y")
    return (
        _nmea(f"GPRMC,{t},A,{la},{ns},{lo},{ew},0.0,0.0,{date},,,A")
        + _nmea(f"GPGGA,{t},{la},{ns},{lo},{ew},1,10,0.9,100.0,M,0.0,M,,")
        + _nmea(f"GPGST,{t},1.0,2.0,1.5,0.0,1.8,1.6,3.0")
    )


class NmeaServer:
    """A receiver on tcp://127.0.0.1:PORT sending one epoch a second, unless silenced."""

    def __init__(self, area: Area) -> None:
        self.area = area
        self.silent = False
        self.port = 0
        self._server: asyncio.Server | None = None
        self._closing = asyncio.Event()
        self._handlers: set[asyncio.Task[None]] = set()

    async def _client(self, _r: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        with contextlib.suppress(ConnectionError):
            while not self._closing.is_set():
                now = datetime.now(UTC)
                if not self.silent:
                    writer.write(_epoch(now, self.area.lat, self.area.lng))
                    await writer.drain()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(1 - now.microsecond / 1e6 + 0.05):
                        await self._closing.wait()
        writer.close()

    async def __aenter__(self) -> NmeaServer:
        self._server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._closing.set()
        self._server.close()
        await asyncio.gather(*self._handlers)
        await self._server.wait_closed()


@pytest.fixture
async def nmea(area: Area) -> AsyncIterator[NmeaServer]:
    async with NmeaServer(area) as server:
        yield server


async def test_gps_gone_for_10_s_no_samples_and_session_carries_on(
    stub: LocalStub, tmp_path: Path, agents: Agents, nmea: NmeaServer, area: Area
) -> None:
    await operator_account(stub, "op-gps", "cam-1", tmp_path)
    consumer = await create_account(stub.base_url, "consumer-gps", Role.CONSUMER)
    port = free_port()
    gps = f"tcp://127.0.0.1:{nmea.port}"
    table = operator_table("cam-1", "op-gps", tmp_path, area, position=gps)
    config = write_config(tmp_path, stub, table, device_slug="op-gps", status_port=port)
    agent = await agents.start(config, tmp_path / "agent.log")
    await wait_until(lambda: operator_online(port, "cam-1"), 30, "cam-1 ONLINE on a TCP GPS")
    async with AsyncLuxxonClient(stub.base_url, session_cookie=consumer.session_cookie) as buyer:
        session = await request_session(buyer, seconds=20, area=area)
        await wait_state(buyer, session.id, {SessionState.LIVE}, 15)
        await wait_delivered(port, "cam-1", 3, 10)  # sampling from the receiver
        nmea.silent = True
        gone_at = datetime.now(UTC)
        # real time must pass: the receiver says nothing for 10 s
        await asyncio.sleep(10)
        assert (await buyer.get_session(session.id)).state is SessionState.LIVE
        nmea.silent = False
        back_at = datetime.now(UTC)
        ended = await wait_state(buyer, session.id, {SessionState.ENDED}, 25)

    stats, samples = spool_stats(tmp_path, "cam-1", session.id)
    assert stats.pending == 0 and stats.delivered == stats.spooled
    captured = [datetime.fromtimestamp(s.captured_at_ms / 1000, UTC) for s in samples]
    # freshness is 2 s: after that, and until the receiver talks again, not one sample
    blind = [t for t in captured if gone_at + timedelta(seconds=2.5) <= t < back_at]
    assert blind == []
    assert any(t < gone_at for t in captured) and any(t > back_at for t in captured)
    assert ended.failed_seconds is not None and 6 <= ended.failed_seconds <= 13
    assert ended.started_at is not None and ended.ended_at is not None
    assert (ended.ended_at - ended.started_at).total_seconds() >= 19  # carried on to the end
    assert await agent.stop() == 0


async def test_two_operators_serve_two_sessions_at_once(
    stub: LocalStub, tmp_path: Path, agents: Agents, area: Area
) -> None:
    """Two at once; then SIGTERM with on_sigterm = "end" ends both, paid up to now."""
    device = new_private_key()  # one box, one device key, registered in both workspaces
    await operator_account(stub, "op-a", "cam-a", tmp_path, device)
    await operator_account(stub, "op-b", "cam-b", tmp_path, device)
    consumer = await create_account(stub.base_url, "consumer-two", Role.CONSUMER)
    port = free_port()
    tables = operator_table("cam-a", "op-a", tmp_path, area) + operator_table(
        "cam-b", "op-b", tmp_path, area
    )
    config = write_config(tmp_path, stub, tables, device_slug="op-a", status_port=port)
    agent = await agents.start(config, tmp_path / "agent.log")
    for label in ("cam-a", "cam-b"):
        await wait_until(lambda label=label: operator_online(port, label), 30, f"{label} ONLINE")
    async with AsyncLuxxonClient(stub.base_url, session_cookie=consumer.session_cookie) as buyer:
        first = await request_session(buyer, seconds=120, area=area)
        second = await request_session(buyer, seconds=120, area=area)
        assert first.operator_workspace_id != second.operator_workspace_id

        async def both_live() -> bool:
            status = await agent_status(port)
            return status is not None and all(
                o["session_state"] == "LIVE" and o["video"]["state"] == "publishing"
                for o in status["operators"]
            )

        await wait_until(both_live, 20, "both operators LIVE at once")
        await wait_frame(buyer, first.id, 10)
        await wait_frame(buyer, second.id, 10)
        # enough paid seconds on each before SIGTERM: the wall-clock meter also takes
        # off the wait for the first frame, which is seconds on a loaded 2-core box
        for label in ("cam-a", "cam-b"):
            await wait_delivered(port, label, 8, 20)
        assert await agent.stop() == 0  # SIGTERM, on_sigterm = "end"
        ended = [await buyer.get_session(s.id) for s in (first, second)]
    for session in ended:
        assert session.state is SessionState.ENDED
        assert session.clean_seconds is not None and session.clean_seconds >= 3
        # which camera served which session is the dispatcher's choice: one of them did
        served = [spool_stats(tmp_path, label, session.id)[0] for label in ("cam-a", "cam-b")]
        stats = max(served, key=lambda s: s.spooled)
        assert min(s.spooled for s in served) == 0
        assert stats.pending == 0 and stats.delivered == stats.spooled >= 3
    records = agent.log_records()
    assert sum("ENDED" in r["msg"] for r in records) == 2


async def test_restart_starts_recorded_assigned_and_reclaims_leftovers(
    stub: LocalStub, tmp_path: Path, agents: Agents, area: Area
) -> None:
    from luxxon_agent.agent.statefile import StateFile

    operator = await operator_account(stub, "op-stuck", "cam-1", tmp_path)
    consumer = await create_account(stub.base_url, "consumer-stuck", Role.CONSUMER)
    assert operator.api_key is not None
    async with (
        AsyncLuxxonClient(stub.base_url, session_cookie=consumer.session_cookie) as buyer,
        AsyncLuxxonClient(stub.base_url, api_key=operator.api_key) as seller,
    ):
        await seller.update_workspace(
            operator.workspace_id,
            UpdateWorkspaceRequest(
                availability_state=AvailabilityState.ONLINE,
                coverage_lat=area.lat, coverage_lng=area.lng, coverage_radius_meters=500,
            ),
        )  # fmt: skip
        ours = await request_session(buyer, seconds=6, area=area)
        leftover = await request_session(buyer, seconds=6, area=area)
        # a previous run accepted both, recorded one, then crashed
        await seller.accept(ours.id, operator.workspace_id)
        await seller.accept(leftover.id, operator.workspace_id)
        state = StateFile(tmp_path / "agent-state" / "state.json")
        state.set_session("cam-1", ours.id, SessionState.ASSIGNED, operator.workspace_id)

        port = free_port()
        config = write_config(
            tmp_path, stub, operator_table("cam-1", "op-stuck", tmp_path, area),
            device_slug="op-stuck", status_port=port,
        )  # fmt: skip
        agent = await agents.start(config, tmp_path / "agent.log")
        await wait_state(buyer, leftover.id, {SessionState.CANCELLED}, 20)
        await wait_state(buyer, ours.id, {SessionState.LIVE}, 20)
        ended = await wait_state(buyer, ours.id, {SessionState.ENDED}, 20)
    assert ended.clean_seconds is not None and ended.clean_seconds >= 3
    assert await agent.stop() == 0
