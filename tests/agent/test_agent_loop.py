"""The agent end to end against the real stub: ONLINE -> session -> earnings, sd_notify."""

from __future__ import annotations

import asyncio
import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from luxxon_agent.agent.localstub import LocalStub, free_port
from luxxon_agent.agent.provision import create_account
from luxxon_agent.api import AsyncLuxxonClient
from luxxon_agent.eip712 import KeySigner
from luxxon_agent.models import Role, SessionState
from luxxon_agent.secret import Secret
from luxxon_agent.telemetry import Spool, recover_signer

from .conftest import (
    AGENT_COMMAND,
    Agents,
    Area,
    operator_account,
    operator_online,
    operator_table,
    request_session,
    wait_frame,
    wait_state,
    wait_until,
    write_config,
)


async def agent_cli(*args: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        *AGENT_COMMAND, *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    return out.decode()


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[Path, socket.socket]]:
    """A datagram socket standing in for systemd's $NOTIFY_SOCKET."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = tmp_path / "notify.sock"
    sock.bind(str(path))
    sock.setblocking(False)
    yield path, sock
    sock.close()


async def test_full_loop_online_session_earnings_and_sd_notify(
    stub: LocalStub,
    tmp_path: Path,
    agents: Agents,
    notify_socket: tuple[Path, socket.socket],
    area: Area,
) -> None:
    operator = await operator_account(stub, "op-one", "cam-1", tmp_path)
    consumer = await create_account(stub.base_url, "consumer-one", Role.CONSUMER)
    port = free_port()
    config = write_config(
        tmp_path,
        stub,
        operator_table("cam-1", "op-one", tmp_path, area),
        device_slug="op-one",
        status_port=port,
    )
    notify_path, notify = notify_socket
    messages: list[str] = []

    async def read_notify() -> None:
        loop = asyncio.get_running_loop()
        while True:
            messages.append((await loop.sock_recv(notify, 4096)).decode())

    reader = asyncio.create_task(read_notify())
    agent = await agents.start(
        config,
        tmp_path / "agent.log",
        env={"NOTIFY_SOCKET": str(notify_path), "WATCHDOG_USEC": "2000000"},
    )
    await wait_until(lambda: operator_online(port, "cam-1"), 30, "cam-1 ONLINE")

    async with AsyncLuxxonClient(stub.base_url, session_cookie=consumer.session_cookie) as buyer:
        server = await buyer.config()
        session = await request_session(buyer, seconds=8, area=area)
        live = await wait_state(buyer, session.id, {SessionState.LIVE}, 15)
        assert live.operator_workspace_id == operator.workspace_id
        frame = await wait_frame(buyer, session.id, 15)
        assert frame[:2] == b"\xff\xd8"  # a JPEG the stub decoded from our WHIP publish
        listen = f"127.0.0.1:{port}"
        shown = json.loads(await agent_cli("status", "--json", "--listen", listen))
        cam = shown["operators"][0]
        assert cam["session_id"] == session.id and cam["session_state"] == "LIVE"
        assert cam["gps"]["fix"] and cam["video"]["state"] == "publishing"
        assert cam["video"]["sent_kbps"] > 0  # the publisher's wire figures reach the status
        metrics = await agent_cli("status", "--metrics", "--listen", listen)
        assert 'luxxon_agent_live{operator="cam-1"} 1.0' in metrics
        assert "# TYPE luxxon_agent_video_frames_total counter" in metrics
        assert 'luxxon_agent_video_sent_kbps{operator="cam-1"}' in metrics
        table = await agent_cli("status", "--once", "--listen", listen)
        assert "cam-1" in table and session.id[:8] in table
        ended = await wait_state(buyer, session.id, {SessionState.ENDED}, 20)
        settlement = await buyer.settlement(session.id)

    # the agent ended it at maxDuration (the consumer never called /end)
    assert ended.clean_seconds is not None and ended.clean_seconds >= 5
    assert ended.failed_seconds is not None and ended.failed_seconds <= 2
    assert ended.charged_micro_usdc == ended.clean_seconds * ended.rate_per_second_micro_usdc
    assert settlement.operator_earned_micro_usdc is not None
    assert settlement.operator_earned_micro_usdc > 0
    await wait_until(lambda: operator_online(port, "cam-1"), 15, "cam-1 ONLINE again")
    assert await agent.stop() == 0

    with Spool(tmp_path / "agent-state" / "cam-1" / "telemetry.sqlite3") as spool:
        stats = spool.stats(session.id)
        samples = [s.sample() for s in spool.samples(session.id)]
    assert stats.pending == 0 and stats.delivered == stats.spooled >= 6
    # signed by the device key for the chain the server named in GET /config
    device = KeySigner(Secret((tmp_path / "op-one.device-key").read_text().strip())).address
    assert {recover_signer(session.id, s, server.chain_id) for s in samples} == {device}

    # the agent exited, so STOPPING=1 was sent; the reader task may still have it queued
    await wait_until(
        lambda: bool(messages) and messages[-1].startswith("STOPPING=1"), 5, "STOPPING=1"
    )
    reader.cancel()
    assert messages[0].startswith("READY=1\nSTATUS=")
    assert "WATCHDOG=1" in messages
    assert any("LIVE" in m and session.id in m for m in messages if m.startswith("STATUS="))
