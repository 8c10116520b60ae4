"""OFFLINE with a reason when an operator cannot serve, ONLINE again by itself."""

from __future__ import annotations

from pathlib import Path

import pytest

from luxxon_agent.agent.localstub import LocalStub, free_port
from luxxon_agent.agent.provision import create_account
from luxxon_agent.api import AsyncLuxxonClient
from luxxon_agent.errors import ApiError
from luxxon_agent.models import Role

from .conftest import (
    VIDEO,
    Agents,
    Area,
    agent_status,
    operator_account,
    operator_online,
    operator_table,
    request_session,
    wait_until,
    write_config,
)


async def test_camera_unplugged_goes_offline_and_comes_back(
    stub: LocalStub, tmp_path: Path, agents: Agents, area: Area
) -> None:
    await operator_account(stub, "op-cam", "cam-1", tmp_path)
    consumer = await create_account(stub.base_url, "consumer-cam", Role.CONSUMER)
    camera = tmp_path / "dev" / "v4l" / "by-id" / "usb-Test_Camera-video-index0"
    table = operator_table("cam-1", "op-cam", tmp_path, area).replace(VIDEO, f"v4l2://{camera}")
    port = free_port()
    config = write_config(tmp_path, stub, table, device_slug="op-cam", status_port=port)
    agent = await agents.start(config, tmp_path / "agent.log")

    async def offline_reason() -> str | None:
        status = await agent_status(port)
        if status is None:
            return None
        op = status["operators"][0]
        return op["reason"] if op["availability"] == "OFFLINE" else None

    reason = await wait_until(offline_reason, 30, "cam-1 OFFLINE while its camera is missing")
    assert reason == f"camera down ({camera} missing)"
    async with AsyncLuxxonClient(stub.base_url, session_cookie=consumer.session_cookie) as buyer:
        with pytest.raises(ApiError) as info:  # OFFLINE at the API too: nobody to dispatch to
            await request_session(buyer, seconds=10, area=area)
        assert info.value.code == "NO_COVERAGE"
    camera.parent.mkdir(parents=True)
    camera.touch()  # replugged under its stable name
    await wait_until(lambda: operator_online(port, "cam-1"), 10, "cam-1 ONLINE again")
    records = agent.log_records()
    assert any("OFFLINE: cam-1: camera down" in r["msg"] for r in records)
    assert await agent.stop() == 0
